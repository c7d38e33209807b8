"""Tests of metrics_pipeline.stats.forecast against statsmodels fits and hand-computed values."""

import datetime as dt
import math
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
import statsmodels.api as sm
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from metrics_pipeline.stats.forecast import (
    MODELS,
    backtest_forecast,
    forecast,
    mape,
    time_to_threshold,
)

DAYS = 120
HOLDOUT = 30


def trend(seed: int, start: float, slope: float, noise: float, n: int = DAYS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start + slope * np.arange(n) + rng.normal(0, noise, n)


# A throughput-like and a CPU-%-like trend: 120 daily values, the last 30 held out.
TRENDS = {
    "throughput": trend(0, 200.0, 1.5, 8.0),
    "cpu_pct": trend(1, 40.0, 0.25, 3.0),
}


def aicc_by_hand(errors: np.ndarray, k: int) -> float:
    m = errors.size
    return m * math.log(np.sum(errors**2) / m) + 2 * k + 2 * k * (k + 1) / (m - k - 1)


@pytest.fixture(scope="module", params=sorted(TRENDS))
def held_out(request):
    series = TRENDS[request.param]
    return series, forecast(series[:-HOLDOUT], HOLDOUT)


def test_trend_forecast_meets_mape_target_and_interval_covers_held_out(held_out):
    series, result = held_out
    actual = series[-HOLDOUT:]
    by_hand = np.mean(np.abs(actual - result.mean) / actual)
    assert by_hand < 0.10
    assert mape(actual, result.mean) == pytest.approx(by_hand)
    inside = (actual >= result.lower) & (actual <= result.upper)
    assert inside.mean() >= 0.80
    assert all(len(a) == HOLDOUT for a in (result.mean, result.lower, result.upper, result.std))


def test_auto_keeps_the_candidate_with_the_lowest_criterion(held_out):
    _, result = held_out
    assert set(result.candidates) == set(MODELS)
    assert result.method == min(result.candidates, key=result.candidates.get)
    assert result.aicc == result.candidates[result.method]
    assert result.level == 0.95
    assert result.n_obs == DAYS - HOLDOUT


def test_backtest_is_mape_of_the_held_out_forecast():
    series = TRENDS["cpu_pct"][:60]
    held_out = forecast(series[:-20], 20, method="ets")
    assert backtest_forecast(series, 20, method="ets") == pytest.approx(
        mape(series[-20:], held_out.mean)
    )


def test_ets_equals_a_direct_statsmodels_fit():
    train = TRENDS["throughput"][:-HOLDOUT]
    result = forecast(train, HOLDOUT, method="ets")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ETSModel(pd.Series(train), error="add", trend="add").fit(disp=False)
        frame = fit.get_prediction(start=train.size, end=train.size + HOLDOUT - 1).summary_frame(
            alpha=0.05
        )
    assert result.method == "ets"
    # Criterion on the one-step errors after the first; k = alpha, beta, l0, b0, sigma^2.
    assert result.aicc == pytest.approx(aicc_by_hand(np.asarray(fit.resid)[1:], k=5))
    np.testing.assert_allclose(result.mean, fit.forecast(HOLDOUT).to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(result.lower, frame["pi_lower"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(result.upper, frame["pi_upper"].to_numpy(), rtol=1e-10)


def test_arima_equals_a_direct_statsmodels_fit():
    train = TRENDS["cpu_pct"][:-HOLDOUT]
    result = forecast(train, HOLDOUT, method="arima", level=0.80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ARIMA(train, order=(0, 1, 1), trend="t").fit()
        frame = fit.get_forecast(HOLDOUT).summary_frame(alpha=0.20)
    np.testing.assert_allclose(result.mean, frame["mean"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(result.lower, frame["mean_ci_lower"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(result.upper, frame["mean_ci_upper"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(result.std, frame["mean_se"].to_numpy(), rtol=1e-10)
    # k = theta, drift, sigma^2 and the diffuse initial level.
    assert result.aicc == pytest.approx(aicc_by_hand(fit.resid[1:], k=4))


def test_noisy_series_gets_wider_intervals_than_a_quiet_one():
    rng = np.random.default_rng(2)
    shape = rng.normal(0, 1, 90)
    quiet = forecast(100 + 1 * shape, 30, method="ets")
    noisy = forecast(100 + 10 * shape, 30, method="ets")
    assert np.all(noisy.upper - noisy.lower > 3 * (quiet.upper - quiet.lower))


def test_short_series_falls_back_to_ols_prediction_interval():
    y = np.array([10.0, 12.5, 13.1, 16.0, 17.2, 19.9])
    result = forecast(y, 4)
    assert result.method == "linear"
    assert result.df == 4
    assert any("linear trend" in note for note in result.notes)
    # Reference: statsmodels OLS, prediction interval of a new observation.
    x_new = sm.add_constant(np.arange(6.0, 10.0))
    frame = (
        sm.OLS(y, sm.add_constant(np.arange(6.0)))
        .fit()
        .get_prediction(x_new)
        .summary_frame(alpha=0.05)
    )
    np.testing.assert_allclose(result.mean, frame["mean"], rtol=1e-10)
    np.testing.assert_allclose(result.lower, frame["obs_ci_lower"], rtol=1e-10)
    np.testing.assert_allclose(result.upper, frame["obs_ci_upper"], rtol=1e-10)


def test_linear_trend_uses_only_observed_points():
    y = np.array([10.0, np.nan, 13.1, 16.0, np.nan, 19.9, 22.0])
    x = np.array([0.0, 2, 3, 5, 6])
    result = forecast(y, 2)
    ols = sm.OLS(y[~np.isnan(y)], sm.add_constant(x)).fit()
    np.testing.assert_allclose(result.mean, ols.params[0] + ols.params[1] * np.array([7, 8]))


def test_interior_missing_values_are_interpolated_for_ets():
    y = TRENDS["cpu_pct"][:60].copy()
    y[[10, 11, 40]] = np.nan
    filled = np.interp(np.arange(60), np.flatnonzero(~np.isnan(y)), y[~np.isnan(y)])
    result = forecast(y, 10, method="ets")
    np.testing.assert_allclose(result.mean, forecast(filled, 10, method="ets").mean)
    assert "3 missing values interpolated linearly" in result.notes


def test_leading_missing_values_are_dropped_and_trailing_ones_keep_alignment():
    short = np.array([3.0, 4.5, 4.9, 6.2, 7.1])
    np.testing.assert_allclose(forecast([np.nan, np.nan, *short], 4).mean, forecast(short, 4).mean)
    # The last 2 days missing: mean[0] is still the day after the input, i.e. 3 days after
    # the last value.
    y = TRENDS["cpu_pct"][:60]
    with_gap = forecast(np.r_[y, np.nan, np.nan], 10, method="ets")
    np.testing.assert_allclose(with_gap.mean, forecast(y, 12, method="ets").mean[2:])


def test_timestamps_place_missing_days_and_continue_the_calendar():
    days = pl.date_range(dt.date(2026, 1, 1), dt.date(2026, 1, 8), "1d", eager=True)
    values = np.array([5.0, 6.0, 7.5, 8.0, 9.0, 10.5, 11.0, 12.0])
    keep = np.array([True, True, False, True, True, False, True, True])
    # An extra, duplicate value on 2 Jan: averaged with the other one (6 and 8 -> 7).
    ts = pl.concat([days.filter(pl.Series(keep)), pl.Series([dt.date(2026, 1, 2)])])
    result = forecast(np.r_[values[keep], 8.0], 3, timestamps=ts)
    on_grid = np.where(keep, values, np.nan)
    on_grid[1] = 7.0
    np.testing.assert_allclose(result.mean, forecast(on_grid, 3).mean)
    expected = np.array(["2026-01-09", "2026-01-10", "2026-01-11"], dtype="datetime64[us]")
    np.testing.assert_array_equal(result.timestamps, expected)


def test_time_to_threshold_on_a_straight_line_is_exact():
    n = 40
    y = 50 + 0.5 * np.arange(n)  # crosses 80 at t = 60, i.e. 60 - (n - 1) = 21 steps ahead
    result = time_to_threshold(y, 80.0)
    assert result.steps == pytest.approx(60 - (n - 1))
    assert result.steps_earliest == pytest.approx(21.0)  # no noise: a zero-width interval
    assert result.steps_latest == pytest.approx(21.0)
    assert result.crossing_probability == 1.0
    assert result.horizon == 90
    # Between two steps the crossing is interpolated: 80.25 is reached at t = 60.5.
    assert time_to_threshold(y, 80.25).steps == pytest.approx(21.5)
    # Missing last days: steps still count from the end of the input.
    assert time_to_threshold(np.r_[y[:-2], np.nan, np.nan], 80.0).steps == pytest.approx(21.0)


def test_time_to_threshold_on_a_noisy_line():
    n = 40
    y = 50 + 0.5 * np.arange(n) + np.random.default_rng(4).normal(0, 0.5, n)
    result = time_to_threshold(y, 80.0, method="ets")
    assert result.steps == pytest.approx(21.0, abs=2.0)
    assert result.steps_earliest < result.steps < result.steps_latest
    assert result.crossing_probability > 0.99


def test_time_to_threshold_none_when_not_reached_and_zero_when_already_past():
    flat = 60 + np.random.default_rng(5).normal(0, 2, 60)
    result = time_to_threshold(flat, 80.0, horizon=30, method="ets")
    assert result.steps is None
    assert result.crossing_probability < 0.01
    assert len(result.forecast.mean) == 30
    assert time_to_threshold([70.0, 75.0, 81.0], 80.0).steps == 0.0


def test_time_to_threshold_for_a_falling_metric():
    y = 1000 - 5 * np.arange(8.0)  # falls to 700 at t = 60: 60 - 7 = 53 steps ahead
    result = time_to_threshold(y, 700.0, higher_is_worse=False)
    assert result.steps == pytest.approx(53.0)
    assert time_to_threshold(y, 1100.0).steps is None  # rising to 1100: never


def test_mape_by_hand():
    assert mape([100, 200], [110, 180]) == pytest.approx(0.10)  # (10/100 + 20/200) / 2
    assert mape([0, 100, np.nan], [5, 150, 1]) == pytest.approx(0.5)  # 0 and NaN left out
    assert math.isnan(mape([0.0], [1.0]))


def test_invalid_input():
    with pytest.raises(ValueError, match="at least 3 observed values"):
        forecast([1.0, np.nan, 2.0], 5)
    with pytest.raises(ValueError, match="at least 10"):
        forecast(np.arange(6.0), 5, method="ets")
    with pytest.raises(ValueError, match="unknown forecast method"):
        forecast(np.arange(20.0), 5, method="prophet")
