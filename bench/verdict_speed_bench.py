"""How long the CI stage's verdicts take for a 50 MB run, against the cost of sorting its data.

A 50 MB canonical request NDJSON run is about 450,000 requests (about 115 bytes a line). The
candidate and ``--baseline-runs`` baseline runs of that size are generated in memory (five
endpoints, log-normal latencies, 1 % errors, the shape of ``bench/ingest_bench.py``), then:

* ``reference``: polars sorts every run's latencies per endpoint (any quantile needs at least
  that), the work a verdict cannot avoid;
* ``judge_run``: the production verdicts (``analysis.verdicts.judge_run``) on the same frames.

Prints one markdown table: seconds (best of ``--repeat``), the ratio to the reference, peak RSS
and the load average, for bench/README.md.

    OPENBLAS_NUM_THREADS=1 uv run python bench/verdict_speed_bench.py
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl

from metrics_pipeline.analysis.verdicts import judge_run
from metrics_pipeline.contracts.tables import conform

BYTES_PER_REQUEST = 115
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
# name, median ms, log-normal sigma, share of the traffic
ENDPOINTS = (
    ("/health", 0.6, 0.35, 20),
    ("/api/items", 12.0, 0.45, 40),
    ("/api/search", 35.0, 0.55, 15),
    ("/api/orders", 48.0, 0.40, 10),
    ("/api/cart", 9.0, 0.50, 25),
)
RPS = 500.0


def run(run_id: str, n: int, seed: int) -> pl.DataFrame:
    """One run of ``n`` requests at ``RPS`` requests per second."""
    rng = np.random.default_rng(seed)
    share = np.array([e[3] for e in ENDPOINTS], float)
    which = rng.choice(len(ENDPOINTS), n, p=share / share.sum())
    median = np.array([e[1] for e in ENDPOINTS])[which]
    sigma = np.array([e[2] for e in ENDPOINTS])[which]
    offsets_us = np.cumsum(rng.exponential(1e6 / RPS, n)).astype(np.int64)
    return conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": run_id,
                "ts": pl.Series(offsets_us).cast(pl.Duration("us")) + START,
                "endpoint": np.array([e[0] for e in ENDPOINTS])[which],
                "ok": rng.random(n) > 0.01,
                "latency_ms": rng.lognormal(np.log(median), sigma),
            }
        ),
    )


def reference(frames: list[pl.DataFrame]) -> None:
    for frame in frames:
        frame.group_by("endpoint").agg(pl.col("latency_ms").sort())


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = int(args.size_mb * 1024 * 1024 / BYTES_PER_REQUEST)
    candidate = run("candidate", n, seed=0)
    ids = [f"base-{i}" for i in range(args.baseline_runs)]
    baseline = pl.concat([run(r, n, seed=i + 1) for i, r in enumerate(ids)])
    ref = best_of(args.repeat, lambda: reference([candidate, baseline]))
    ours = best_of(args.repeat, lambda: judge_run(candidate, baseline, ids))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.size_mb:g} MB run ({n:,} requests), {args.baseline_runs} baseline runs of the "
        f"same size, best of {args.repeat}\n"
    )
    print("| step | seconds | / reference | peak RSS (MB) | load average (1, 5, 15 min) |")
    print("|---|---:|---:|---:|---|")
    print(f"| reference: sort latencies per run x endpoint | {ref:.2f} | 1.0 | | {load} |")
    print(f"| judge_run | {ours:.2f} | {ours / ref:.1f} | {peak_mb:.0f} | {load} |")


if __name__ == "__main__":
    main()
