"""Capacity from stepped load tests: how often the step reports a peak or a bound, and how good.

Simulates stepped load tests of systems that follow the Universal Scalability Law, with the
tested loads stopping at 25, 50, 75, 100 and 150 % of the true peak load, and hands the
per-window points to the capacity step's estimate (``metrics_pipeline.stats.capacity.
estimate_capacity``, the function ``stages.capacity.capacity_row`` calls, with its defaults:
95 % intervals, 200 bootstrap replicates). Scores per cell:

* **peak / bound / no fit**: share of replications where the step gives a point estimate, a
  lower bound ("at least X at N >= N_max"), or nothing;
* **bound holds**: share of bounds at or below the true peak throughput (the promise of a
  bound), and the median bound / true peak (how much of the peak the test showed);
* for point estimates: median and 90th percentile of the absolute relative error of the peak
  throughput and of the load at the peak, and the coverage of their 95 % intervals;
* **before**: the bare ``fit_usl`` on the same points (what existed before the step): the
  share of fits that dropped kappa, and the median relative error of its ``max_throughput``
  (Amdahl's asymptote lambda / sigma when kappa was dropped).

Model (one replication)
-----------------------
The true system: ``X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))`` with ``sigma``
log-uniform in [0.01, 0.3], ``kappa`` log-uniform in [1e-4, 3e-3] (true peak load
``N* = sqrt((1 - sigma) / kappa)`` between 10 and 100) and ``lambda = 1`` (the scale is set by
the requests per window below). The test: 8 load levels evenly spaced from ``N_max / 8`` to
``N_max = fraction x N*``, 4 windows per level (32 windows; the step aims at 30 per run).
Per window, as the step measures it from the requests: the request count is Poisson with mean
``X(N) w``, the throughput is count / ``w``; the mean latency is ``R = N / X(N)`` (Little's
law, closed test without think time) times ``1 + e``, ``e ~ Normal(0, 0.5 / sqrt(count))``
(the mean of ``count`` latencies whose coefficient of variation is 0.5); the load is
throughput x mean latency (so its noise is correlated with the throughput's, as in the step).
``w`` is chosen so that a window at the true peak holds 200 requests (``noisy``: throughput
noise about 7 % per window) or 2,000 (``quiet``: about 2 %).

``--requests`` instead generates every request of a few replications (Poisson arrivals at
``X(N)``, log-normal latencies of mean ``N / X(N)``, 20 s per level) and runs the step's own
windowing (``stages.capacity.windows_from_requests``) before the estimate: a check that the
Little's-law windows behave like the window model.

Usage
-----
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/capacity_bench.py             # ~10 min
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/capacity_bench.py --quick     # ~1 min
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/capacity_bench.py --requests  # ~15 s
    ... --reps 100     # replications per cell (default 300; 30 with --requests)

Prints a Markdown table per noise level (copied into ``bench/CAPACITY.md``).
"""

from __future__ import annotations

import os

# One thread: the machine has 2 shared cores and the fits are small (before numpy is imported).
for _var in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

import numpy as np  # noqa: E402

from metrics_pipeline.stats.capacity import (  # noqa: E402
    LOWER_BOUND,
    NO_FIT,
    PEAK,
    estimate_capacity,
    fit_usl,
)

FRACTIONS = (0.25, 0.50, 0.75, 1.00, 1.50)
LEVELS, WINDOWS_PER_LEVEL = 8, 4
LATENCY_CV = 0.5
NOISE = {"noisy": 200, "quiet": 2000}  # requests per window at the true peak
SEED = 20261215


def usl(n, lam, sigma, kappa):
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass
class System:
    sigma: float
    kappa: float
    lam: float = 1.0

    @property
    def peak_load(self) -> float:
        return math.sqrt((1 - self.sigma) / self.kappa)

    @property
    def peak(self) -> float:
        return usl(self.peak_load, self.lam, self.sigma, self.kappa)


def draw_system(rng: np.random.Generator) -> System:
    return System(
        sigma=float(np.exp(rng.uniform(np.log(0.01), np.log(0.3)))),
        kappa=float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3)))),
    )


def test_loads(system: System, fraction: float) -> np.ndarray:
    top = fraction * system.peak_load
    return np.repeat(np.linspace(top / LEVELS, top, LEVELS), WINDOWS_PER_LEVEL)


def window_points(
    system: System, fraction: float, per_window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(load, throughput) per window as Little's law measures them (see the module doc)."""
    n = test_loads(system, fraction)
    rate = usl(n, system.lam, system.sigma, system.kappa)
    width = per_window / system.peak  # seconds: a window at the peak holds per_window requests
    count = rng.poisson(rate * width)
    throughput = count / width
    mean_latency = n / rate * (1 + rng.normal(0, 1, n.size) * LATENCY_CV / np.sqrt(count))
    return throughput * mean_latency, throughput


def request_points(
    system: System, fraction: float, per_window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(load, throughput) per window from generated requests and the step's own windowing."""
    import polars as pl

    from metrics_pipeline.stages.capacity import windows_from_requests

    levels = np.linspace(fraction * system.peak_load / LEVELS, fraction * system.peak_load, LEVELS)
    # Seconds per level: the window model's 4 windows of per_window requests at the peak.
    step_s = WINDOWS_PER_LEVEL * per_window / system.peak
    shape = math.sqrt(math.log(1 + LATENCY_CV**2))
    offsets, latencies = [], []
    for i, n in enumerate(levels):
        rate = usl(n, system.lam, system.sigma, system.kappa)
        k = rng.poisson(rate * step_s)
        offsets.append(i * step_s + rng.uniform(0, step_s, k))
        latencies.append(rng.lognormal(math.log(n / rate) - shape**2 / 2, shape, k) * 1000)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    seconds = np.concatenate(offsets)
    frame = pl.DataFrame(
        {
            "ts": pl.Series(
                [start + timedelta(seconds=float(s)) for s in seconds], dtype=pl.Datetime("us")
            ),
            "endpoint": "/x",
            "ok": True,
            "latency_ms": np.concatenate(latencies),
        }
    )
    windows = windows_from_requests(frame)
    return windows.totals["load"].to_numpy(), windows.totals["throughput"].to_numpy()


@dataclass
class Cell:
    statuses: list[str] = field(default_factory=list)
    bound_holds: list[bool] = field(default_factory=list)
    bound_share: list[float] = field(default_factory=list)
    x_err: list[float] = field(default_factory=list)
    n_err: list[float] = field(default_factory=list)
    x_cover: list[bool] = field(default_factory=list)
    n_cover: list[bool] = field(default_factory=list)
    old_dropped: list[bool] = field(default_factory=list)
    old_err: list[float] = field(default_factory=list)

    def add(self, system: System, load: np.ndarray, throughput: np.ndarray) -> None:
        result = estimate_capacity(load, throughput)
        self.statuses.append(result.status)
        if result.status == LOWER_BOUND:
            self.bound_holds.append(result.peak_throughput_low <= system.peak)
            self.bound_share.append(result.peak_throughput_low / system.peak)
        elif result.status == PEAK:
            self.x_err.append(result.peak_throughput / system.peak - 1)
            self.n_err.append(result.peak_load / system.peak_load - 1)
            self.x_cover.append(
                result.peak_throughput_low <= system.peak <= result.peak_throughput_high
            )
            self.n_cover.append(result.peak_load_low <= system.peak_load <= result.peak_load_high)
        try:
            old = fit_usl(load, throughput)
        except ValueError:
            return
        self.old_dropped.append(old.kappa == 0)
        self.old_err.append(old.max_throughput / system.peak - 1)


def share(values: list[bool]) -> str:
    return f"{100 * np.mean(values):.0f} %" if values else "-"


def quantile(values: list[float], q: float, absolute: bool = True) -> str:
    """The q-quantile in per cent: of the absolute values, or signed."""
    if not values:
        return "-"
    value = 100 * np.quantile(np.abs(values) if absolute else values, q)
    return f"{value:.1f} %" if absolute else f"{value:+.1f} %"


def table(cells: dict[float, Cell]) -> str:
    lines = [
        "| tested up to | reps | peak | bound | no fit | bound holds | bound / peak (median) "
        "| peak error: median, p90 | load-at-peak error: median, p90 | peak CI cover "
        "| load CI cover | before: kappa dropped | before: max throughput error (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fraction, cell in cells.items():
        count = len(cell.statuses)
        by = {s: cell.statuses.count(s) / count for s in (PEAK, LOWER_BOUND, NO_FIT)}
        lines.append(
            f"| {fraction:.0%} of N* | {count} | {100 * by[PEAK]:.0f} % "
            f"| {100 * by[LOWER_BOUND]:.0f} % | {100 * by[NO_FIT]:.0f} % "
            f"| {share(cell.bound_holds)} "
            f"| {quantile(cell.bound_share, 0.5)} "
            f"| {quantile(cell.x_err, 0.5)}, {quantile(cell.x_err, 0.9)} "
            f"| {quantile(cell.n_err, 0.5)}, {quantile(cell.n_err, 0.9)} "
            f"| {share(cell.x_cover)} ({len(cell.x_cover)}) | {share(cell.n_cover)} "
            f"| {share(cell.old_dropped)} | {quantile(cell.old_err, 0.5, absolute=False)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reps", type=int, help="replications per cell (default 300; 30 with --requests)"
    )
    parser.add_argument("--quick", action="store_true", help="40 replications per cell")
    parser.add_argument(
        "--requests",
        action="store_true",
        help="generate every request (noisy level only)",
    )
    args = parser.parse_args()
    reps = args.reps or (40 if args.quick else 30 if args.requests else 300)
    points = request_points if args.requests else window_points
    noises = {"noisy": NOISE["noisy"]} if args.requests else NOISE
    started = time.perf_counter()
    for name, per_window in noises.items():
        cells = {}
        for fraction in FRACTIONS:
            # The same systems and noise stream for every fraction (common random numbers).
            rng = np.random.default_rng([SEED, per_window])
            cell = Cell()
            for _ in range(reps):
                system = draw_system(rng)
                cell.add(system, *points(system, fraction, per_window, rng))
            cells[fraction] = cell
        source = "requests, the step's windows" if args.requests else "window model"
        print(f"\n### {name}: {per_window} requests per window at the peak ({source})\n")
        print(table(cells))
    load = os.getloadavg()[0]
    print(f"\n{time.perf_counter() - started:.0f} s wall, load average {load:.1f}")


if __name__ == "__main__":
    main()
