"""Tests of metrics_pipeline.stats.forecast against closed forms, statsmodels fits, hand-computed
values and a small simulation of interval coverage."""

import datetime as dt
import math
import sys
import warnings

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.tsa.statespace.structural import UnobservedComponents

from metrics_pipeline.stats.forecast import (
    MIN_WEIGHT,
    MODELS,
    backtest_forecast,
    forecast,
    mape,
    time_to_threshold,
)

# The package re-exports the function ``forecast`` under the module's name: the module itself,
# for its private helpers, is in sys.modules.
module = sys.modules["metrics_pipeline.stats.forecast"]

DAYS = 120
HOLDOUT = 30


def trend(seed: int, start: float, slope: float, noise: float, n: int = DAYS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start + slope * np.arange(n) + rng.normal(0, noise, n)


def random_walk(seed: int, n: int, drift: float = 0.3, sd: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50 + np.cumsum(drift + rng.normal(0, sd, n))


# A throughput-like and a CPU-%-like trend: 120 daily values, the last 30 held out.
TRENDS = {
    "throughput": trend(0, 200.0, 1.5, 8.0),
    "cpu_pct": trend(1, 40.0, 0.25, 3.0),
}


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


def test_auto_averages_every_model_with_its_akaike_weight(held_out):
    _, result = held_out
    assert set(result.candidates) == set(result.weights) == set(MODELS)
    # Akaike weights by hand: exp(-delta/2), normalised; those below MIN_WEIGHT dropped.
    criteria = np.array([result.candidates[name] for name in MODELS])
    raw = np.exp(-(criteria - criteria.min()) / 2)
    raw /= raw.sum()
    expected = np.where(raw >= MIN_WEIGHT, raw, 0.0)
    expected /= expected.sum()
    np.testing.assert_allclose([result.weights[name] for name in MODELS], expected, atol=1e-12)
    assert result.method == max(result.weights, key=result.weights.get)
    assert result.aicc == result.candidates[result.method]
    # A trend without a weekly pattern: the six weekday effects do not pay for themselves.
    assert sum(w for name, w in result.weights.items() if name.endswith("_weekly")) < 0.01
    assert result.level == 0.95
    assert result.n_obs == DAYS - HOLDOUT


def test_backtest_is_mape_of_the_held_out_forecast():
    series = TRENDS["cpu_pct"][:60]
    held_out = forecast(series[:-20], 20, method="rw_drift")
    assert backtest_forecast(series, 20, method="rw_drift") == pytest.approx(
        mape(series[-20:], held_out.mean)
    )


def test_random_walk_with_drift_at_its_estimate_is_the_closed_form():
    # y_t = y_{t-1} + d + e_t: the drift is the mean difference, the variance the differences'
    # variance (n - 2 degrees of freedom: the exact diffuse likelihood leaves out the start).
    n, h = 60, 30
    y = random_walk(3, n)
    differences = np.diff(y)
    d, s2 = differences.mean(), differences.var(ddof=1)
    steps = np.arange(1, h + 1)
    scale = y.std()
    fit = module._fit_state_space((y - y.mean()) / scale, "rw_drift")
    assert fit.params[0] * scale**2 == pytest.approx(s2, rel=1e-4)  # optimiser tolerance
    mean, std = module._kalman_forecast(fit.model.filter(fit.params, return_ssm=True), h)
    np.testing.assert_allclose(y.mean() + scale * mean, y[-1] + steps * d, rtol=1e-12)
    sigma2 = fit.params[0] * scale**2
    np.testing.assert_allclose(
        (scale * std) ** 2, sigma2 * (steps + steps**2 / (n - 1)), rtol=1e-10
    )


def test_random_walk_interval_is_the_exact_student_t_one():
    # (y_{n+h} - y_n - h d) / (s sqrt(h + h^2 / (n - 1))) ~ t_{n-2} exactly. The forecast's
    # components are t_{n-3} (N - k = (n - 2) - 1) and its parameter draws carry the
    # uncertainty of s once more (sd(s)/s ~ 1/sqrt(2(n - 2)), about 9 % at n = 60): the
    # interval is a little wider. Scaled to unit variance every such series is the same
    # problem, so the ratio depends on n only: 1.008 at n = 60; it must stay in [1, 1.01].
    n, h = 60, 30
    y = random_walk(3, n)
    differences = np.diff(y)
    d, s = differences.mean(), differences.std(ddof=1)
    steps = np.arange(1, h + 1)
    mean = y[-1] + steps * d
    half = stats.t.ppf(0.975, n - 2) * s * np.sqrt(steps + steps**2 / (n - 1))
    result = forecast(y, h, method="rw_drift")
    np.testing.assert_allclose(result.mean, mean, rtol=1e-9)  # the mean does not depend on s
    for bound in (result.upper - mean, mean - result.lower):
        ratio = bound / half
        assert np.all(ratio > 1 - 1e-6) and np.all(ratio < 1.01)


@pytest.mark.parametrize("name", ["trend_ar1_weekly", "local_trend", "level_drift"])
def test_kalman_forecast_equals_statsmodels_get_forecast(name):
    y = trend(6, 10.0, 0.1, 1.0, n=70) + 2.0 * (np.arange(70) % 7 >= 5)
    y[[5, 33]] = np.nan
    z = (y - np.nanmean(y)) / np.nanstd(y)
    fit = module._fit_state_space(z, name)
    mean, std = module._kalman_forecast(fit.model.filter(fit.params, return_ssm=True), 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = fit.model.smooth(fit.params).get_forecast(20)
    np.testing.assert_allclose(mean, reference.predicted_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, reference.se_mean, rtol=1e-9)


def test_kalman_filter_fit_equals_a_direct_statsmodels_fit():
    train = TRENDS["throughput"][:-HOLDOUT]
    z = (train - train.mean()) / train.std()
    fit = module._fit_state_space(z, "level_drift")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = UnobservedComponents(z, "lldtrend", use_exact_diffuse=True).fit(disp=False)
    assert fit.model.loglike(fit.params) == pytest.approx(direct.llf, abs=1e-4)


def test_importance_weights_discard_draws_the_likelihood_rules_out(monkeypatch):
    # A flat Hessian (what an optimiser stuck on a boundary can leave) makes the normal
    # approximation far too wide: drawn with equal weights, slope variances of the order of
    # the series' variance would make the 30-step interval ~60 times wider. The importance
    # weights leave the draws near the estimate: no wider than with the true Hessian.
    y = trend(0, 20.0, 0.05, 1.0, n=100)
    usual = forecast(y, 30, method="local_trend")
    monkeypatch.setattr(module, "_hessian", lambda f, x, h=1e-4: np.zeros((x.size, x.size)))
    flat = forecast(y, 30, method="local_trend")
    assert np.all(flat.upper - flat.lower <= 1.05 * (usual.upper - usual.lower))


def test_missing_values_are_skipped_not_interpolated():
    # A random walk with drift observed at t_1 < ... < t_m: the drift estimate is
    # (y_m - y_1) / (t_m - t_1) whatever the gaps, the forecast starts from y_m.
    y = random_walk(8, 50)
    y[[10, 11, 12, 30]] = np.nan
    result = forecast(y, 5, method="rw_drift")
    np.testing.assert_allclose(result.mean, y[-1] + np.arange(1, 6) * (y[-1] - y[0]) / 49)
    assert "4 missing values: skipped by the Kalman filter" in result.notes[0]


def test_leading_missing_values_are_dropped_and_trailing_ones_keep_alignment():
    short = np.array([3.0, 4.5, 4.9, 6.2, 7.1])
    np.testing.assert_allclose(forecast([np.nan, np.nan, *short], 4).mean, forecast(short, 4).mean)
    # The last 2 days missing: mean[0] is still the day after the input, i.e. 3 days after
    # the last value.
    y = TRENDS["cpu_pct"][:60]
    with_gap = forecast(np.r_[y, np.nan, np.nan], 10, method="level_drift")
    longer = forecast(y, 12, method="level_drift")
    for a, b in [(with_gap.mean, longer.mean), (with_gap.upper, longer.upper)]:
        np.testing.assert_allclose(a, b[2:], rtol=1e-8)


def test_weekly_pattern_is_found_and_followed():
    # 12 weeks of a level with weekends 20 lower and noise of 2: the weekly models take the
    # weight, and the forecast is 20 lower on the forecast's weekend days.
    days = np.arange(84)
    weekend = days % 7 >= 5
    y = 100 - 20.0 * weekend + np.random.default_rng(9).normal(0, 2, 84)
    result = forecast(y, 14)
    assert sum(w for name, w in result.weights.items() if name.endswith("_weekly")) > 0.99
    future_weekend = np.arange(84, 98) % 7 >= 5
    gap = result.mean[~future_weekend].mean() - result.mean[future_weekend].mean()
    assert gap == pytest.approx(20.0, abs=2.0)  # the weekday effects' standard error is ~0.6
    # Intervals about the noise's width, not the weekend step's (2 x 1.96 x 2 = 7.8).
    assert np.all(result.upper[:7] - result.lower[:7] < 12)


def test_intervals_scale_with_the_series():
    # The models are fitted on the series scaled to unit variance: scaling the noise by 10
    # scales the interval by exactly 10 (up to the optimiser's tolerance).
    shape = np.random.default_rng(2).normal(0, 1, 90)
    quiet = forecast(100 + 1 * shape, 30)
    noisy = forecast(100 + 10 * shape, 30)
    np.testing.assert_allclose(noisy.upper - noisy.lower, 10 * (quiet.upper - quiet.lower), 1e-6)


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
    # The crossing probability of the Student t prediction, by hand: P(Y_h >= 25) at h = 4.
    crossing = time_to_threshold(y, 25.0, horizon=4)
    se = (frame["obs_ci_upper"] - frame["mean"]) / stats.t.ppf(0.975, 4)
    by_hand = stats.t.sf((25.0 - frame["mean"]) / se, 4).max()
    assert crossing.crossing_probability == pytest.approx(by_hand, rel=1e-9)


def test_linear_trend_uses_only_observed_points():
    y = np.array([10.0, np.nan, 13.1, 16.0, np.nan, 19.9, 22.0])
    x = np.array([0.0, 2, 3, 5, 6])
    result = forecast(y, 2)
    ols = sm.OLS(y[~np.isnan(y)], sm.add_constant(x)).fit()
    np.testing.assert_allclose(result.mean, ols.params[0] + ols.params[1] * np.array([7, 8]))


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
    result = time_to_threshold(y, 80.0)
    assert result.steps == pytest.approx(21.0, abs=2.0)
    assert result.steps_earliest < result.steps < result.steps_latest
    assert result.crossing_probability > 0.99


def test_time_to_threshold_none_when_not_reached_and_zero_when_already_past():
    flat = 60 + np.random.default_rng(5).normal(0, 2, 60)
    result = time_to_threshold(flat, 80.0, horizon=30)
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
        forecast(np.arange(6.0), 5, method="trend_ar1")
    with pytest.raises(ValueError, match="at least 21"):
        forecast(np.sin(np.arange(15.0)), 5, method="trend_ar1_weekly")
    with pytest.raises(ValueError, match="unknown forecast method"):
        forecast(np.arange(20.0), 5, method="prophet")


# --- coverage ---------------------------------------------------------------------------------


def _simulated(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """History, and the mean and sd of each future value given the truth; weekend flags."""
    rng = np.random.default_rng([17, seed])
    n, h = int(rng.integers(60, 121)), 14
    t = np.arange(n + h)
    steps = np.arange(1, h + 1)
    weekend = (t + int(rng.integers(7))) % 7 >= 5
    if kind == "trend_ar1":
        phi, innovation = 0.6, 1.0
        u = np.empty(n + h)
        u[0] = rng.normal(0, innovation / math.sqrt(1 - phi**2))
        for i in range(1, n + h):
            u[i] = phi * u[i - 1] + rng.normal(0, innovation)
        y = 20 + 0.05 * t + u
        mean = 20 + 0.05 * t[n:] + phi**steps * u[n - 1]
        sd = innovation * np.sqrt((1 - phi ** (2 * steps)) / (1 - phi**2))
    elif kind == "random_walk":
        y = 20 + np.cumsum(0.1 + rng.normal(0, 1.0, n + h))
        mean, sd = y[n - 1] + 0.1 * steps, np.sqrt(steps)
    else:  # weekends 10 noise standard deviations lower, trend, white noise
        y = 20 + 0.05 * t - 10.0 * weekend + rng.normal(0, 1.0, n + h)
        mean, sd = 20 + 0.05 * t[n:] - 10.0 * weekend[n:], np.ones(h)
    return y[:n], mean, sd, weekend[n:]


def _coverage(hits: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """Pooled coverage and its cluster standard error (the points of a series share a fit)."""
    p = hits.sum() / points.sum()
    s = hits.size
    return p, math.sqrt(s / (s - 1) * np.sum((hits - p * points) ** 2)) / points.sum()


def test_95_percent_intervals_cover_93_to_97_percent_on_simulated_series():
    # Per series, the expected coverage given its history is exact: the future is normal with
    # a known mean and sd, so P(lower <= Y <= upper) = Phi((upper - m)/sd) - Phi((lower -
    # m)/sd). Averaging it (rather than counting hits) removes the noise of the future draw.
    # The per-series values are independent, so the pooled coverage is within 3 cluster
    # standard errors of the true one with probability 0.997: the test fails only if the
    # acceptance band 93-97 % is that far away, overall, per kind and on weekend days. The
    # standard errors are checked too (< 1.5 points per kind, < 0.8 overall), so that the band
    # cannot stretch far. (Intervals of trend models without the weekly pattern fail here: on
    # the weekly series they are three times too wide and cover 99 %.)
    def check(hits, points, limit):
        p, se = _coverage(np.asarray(hits), np.asarray(points))
        assert se < limit
        assert 0.93 - 3 * se < p < 0.97 + 3 * se, (p, se)

    rows = []
    for number, kind in enumerate(("trend_ar1", "random_walk", "weekly")):
        hits, points, weekend_hits, weekend_points = [], [], [], []
        for seed in range(16):
            history, mean, sd, weekend = _simulated(kind, 100 * number + seed)
            result = forecast(history, mean.size)
            covered = stats.norm.cdf((result.upper - mean) / sd) - stats.norm.cdf(
                (result.lower - mean) / sd
            )
            hits.append(covered.sum())
            points.append(covered.size)
            weekend_hits.append(covered[weekend].sum())
            weekend_points.append(weekend.sum())
        check(hits, points, 0.015)
        if kind == "weekly":
            check(weekend_hits, weekend_points, 0.015)
        rows.append((hits, points))
    check(*(np.concatenate(parts) for parts in zip(*rows, strict=True)), 0.008)
