"""What every part of the detector backtest draws its cases with: the sizes (how many cases
of each kind), one generator per case, and the latency distributions of simulated endpoints."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from metrics_pipeline.evaluation.demo_data import OUTLIER_RATE, RUN_DRIFT

# Baseline runs per verdict case; here because the sizes name it in their default MDE cells.
BASELINE_RUNS = 5


# --- sizes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestSize:
    """How many cases each part of the backtest draws."""

    verdict_cases: int  # per class: degraded and unchanged candidate runs
    fixture_cases: int  # per class, runs bootstrapped from the fixtures
    fixture_share: float  # requests per bootstrapped run, as a share of the fixture's
    verdict_duration_s: float
    series_cases: int  # per class, change points and drift
    anomaly_series: int  # per noise kind
    forecast_series: int  # per kind of metric
    mde_series_cases: int
    mde_noise: tuple[float, ...]
    mde_runs: tuple[int, ...]
    mde_verdict_cases: int
    # (run-to-run drift, baseline runs, requests per endpoint per run) of each verdict cell
    mde_verdict_cells: tuple[tuple[float, int, int], ...]


SIZES = {
    # CI: well under a minute on two cores; enough cases to catch a broken detector.
    "small": BacktestSize(
        verdict_cases=10,
        fixture_cases=4,
        fixture_share=0.5,
        verdict_duration_s=10.0,
        series_cases=40,
        anomaly_series=6,
        forecast_series=4,
        mde_series_cases=20,
        mde_noise=(0.05,),
        mde_runs=(30, 120),
        mde_verdict_cases=10,
        mde_verdict_cells=((RUN_DRIFT, BASELINE_RUNS, 300),),
    ),
    # The numbers recorded in bench/BACKTEST.md.
    "full": BacktestSize(
        verdict_cases=100,
        fixture_cases=50,
        fixture_share=1.0,
        verdict_duration_s=20.0,
        series_cases=300,
        anomaly_series=50,
        forecast_series=100,
        mde_series_cases=200,
        mde_noise=(0.02, 0.05, 0.10),
        mde_runs=(30, 60, 120),
        mde_verdict_cases=40,
        mde_verdict_cells=(
            (RUN_DRIFT, BASELINE_RUNS, 100),
            (RUN_DRIFT, BASELINE_RUNS, 300),
            (RUN_DRIFT, BASELINE_RUNS, 1000),
            (RUN_DRIFT, 3, 300),
            (RUN_DRIFT, 10, 300),
            (0.01, BASELINE_RUNS, 300),
            (0.06, BASELINE_RUNS, 300),
        ),
    ),
}


# --- case generators and latency shapes -----------------------------------------------------


def _rng(seed: int, part: str, case: int) -> np.random.Generator:
    """A generator of its own for each case of each part."""
    return np.random.default_rng([seed, zlib.crc32(part.encode()), case])


@dataclass(frozen=True)
class _Shape:
    """Latency distribution of an endpoint: log-normal, or a mixture of a fast and a slow
    log-normal mode (cache hit / miss) when ``slow_share`` > 0."""

    median_ms: float
    sigma: float
    slow_share: float = 0.0
    slow_ratio: float = 1.0
    slow_sigma: float = 0.5

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Latencies (ms) of ``size`` requests of one run."""
        latency = rng.lognormal(math.log(self.median_ms), self.sigma, size)
        if self.slow_share > 0:
            # The miss rate itself moves from run to run (+-15 % of itself).
            share = self.slow_share * math.exp(rng.normal(0, 0.15))
            slow = rng.random(size) < share
            latency[slow] = rng.lognormal(
                math.log(self.median_ms * self.slow_ratio), self.slow_sigma, int(slow.sum())
            )
        outliers = rng.random(size) < OUTLIER_RATE
        latency[outliers] *= rng.uniform(5, 20, int(outliers.sum()))
        return latency

    def describe(self) -> str:
        body = f"log-normal {self.median_ms:g} ms, sigma {self.sigma:g}"
        if self.slow_share:
            body += f" + {self.slow_share:.0%} slow mode x{self.slow_ratio:g}"
        return body
