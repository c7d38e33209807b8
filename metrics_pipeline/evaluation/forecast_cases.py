"""Forecast cases of the detector backtest: trending daily series (throughput, latency, CPU)
whose last horizon is held out and forecast by
:func:`~metrics_pipeline.stats.forecast.backtest_forecast`."""

from __future__ import annotations

import math

import numpy as np

from metrics_pipeline.evaluation.sampling import BacktestSize, _rng
from metrics_pipeline.evaluation.scoring import FORECAST_TARGET, Breakdown, DetectorScore
from metrics_pipeline.stats.forecast import PERFORMANCE_HORIZON, backtest_forecast


def _daily_series(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A trending daily series: 60-150 days of history plus the held-out horizon."""
    n = int(rng.integers(60, 151)) + PERFORMANCE_HORIZON
    days = np.arange(n)
    weekend = ((days + rng.integers(0, 7)) % 7) >= 5
    if kind == "throughput":
        # Requests per second: growing 0.2-1 %/day, quieter weekends, incident days.
        level = rng.uniform(200, 5000)
        values = level * (1 + rng.uniform(0.002, 0.01) * days)
        values *= 1 - rng.uniform(0, 0.08) * weekend
        values *= np.exp(rng.normal(0, rng.uniform(0.02, 0.05), n))
        incidents = rng.random(n) < 0.01
        values[incidents] *= rng.uniform(0.5, 0.8, int(incidents.sum()))
    elif kind == "latency":
        # Daily p95: creeping up 0.1-0.5 %/day, heavy-tailed noise, bad days 1.3-2x.
        level = rng.uniform(50, 400)
        values = level * (1 + rng.uniform(0.001, 0.005) * days)
        values *= np.exp(rng.uniform(0.03, 0.06) * rng.standard_t(4, n) / math.sqrt(2))
        bad = rng.random(n) < 0.02
        values[bad] *= rng.uniform(1.3, 2.0, int(bad.sum()))
    else:
        # CPU %: +0.05-0.3 points/day, weekly pattern, additive noise of 1-3 points.
        level = rng.uniform(20, 50)
        values = level + rng.uniform(0.05, 0.3) * days
        values *= 1 - rng.uniform(0, 0.10) * weekend
        values += rng.normal(0, rng.uniform(1, 3), n)
    values[rng.random(n) < 0.03] = np.nan
    return values


FORECAST_KINDS = ("throughput", "latency", "cpu")


def _score_forecasts(config: BacktestSize, seed: int) -> list[DetectorScore]:
    details = {
        "throughput": "requests/s growing +0.2..1 %/day, weekends up to 8 % lower, log-normal "
        "noise 2-5 %, 1 % incident days x0.5-0.8",
        "latency": "daily p95 growing +0.1..0.5 %/day, log Student-t(4) noise 3-6 %, 2 % bad "
        "days x1.3-2",
        "cpu": "CPU % growing +0.05..0.3 points/day from 20-50 %, weekends up to 10 % lower, "
        "noise 1-3 points",
    }
    scores = []
    for kind in FORECAST_KINDS:
        errors = np.array(
            [
                backtest_forecast(_daily_series(_rng(seed, f"forecast {kind}", i), kind))
                for i in range(config.forecast_series)
            ]
        )
        under = int(np.sum(errors < FORECAST_TARGET.max_mape))
        scores.append(
            DetectorScore(
                name=f"forecast ({kind})",
                cases=errors.size,
                positives=errors.size,
                negatives=0,
                precision=None,
                recall=None,
                false_positive_rate=None,
                mape=float(np.mean(errors)),
                target=FORECAST_TARGET,
                unit="series",
                detail=(
                    f"{details[kind]}; 60-150 days of history, 3 % missing days, MAPE on the "
                    f"held-out {PERFORMANCE_HORIZON} days (method auto); median MAPE "
                    f"{np.median(errors):.1%}, 90th percentile {np.quantile(errors, 0.9):.1%}"
                ),
                breakdown=(Breakdown("series with MAPE < 10 %", under, errors.size),),
            )
        )
    return scores
