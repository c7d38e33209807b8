"""False alarms and CI coverage when a run's noise is pooled over its endpoints.

``analysis.verdicts`` steadies each endpoint's run-to-run spread with the same metric's spread
on the run's other endpoints (``stats.moderated_noise``). This script measures, on unchanged
candidates, the share of endpoints whose comparison is significant at 0.05 (nominal 5 %) and
the coverage of their 95 % intervals. The generator is written apart from the product: each
run's log statistic is a run effect (shared by the run's endpoints, or drawn per endpoint)
plus the endpoint's sampling error, N(0, pi/2 sigma^2 / n) for a median at sigma 0.5; the
product is only called through ``run_spread``, ``moderated_noise`` and ``compare_runs``.

    OPENBLAS_NUM_THREADS=1 uv run python bench/pooled_noise.py [--reps 600] [--seed 5]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from metrics_pipeline.stats import RunStatistic, compare_runs, moderated_noise, run_spread

# (baseline runs k, run effect sd, requests per endpoint, taken apart, effect shared)
CASES = [
    (3, 0.05, [50_000] * 10, True, True),
    (3, 0.05, [50_000] * 10, True, False),
    (3, 0.05, [50_000] * 9 + [30], True, True),
    (3, 0.15, [2_000] * 10, False, True),
    (5, 0.05, [50_000] * 10, True, True),
    (3, 0.05, [300] * 10, True, False),
]


def simulate(rng, k, tau, sizes, apart, shared, reps):
    """Share significant at 0.05 and 95 % coverage of 0, per endpoint."""
    sampling = [math.pi / 2 * 0.25 / n for n in sizes]
    flagged, covered = np.zeros(len(sizes)), np.zeros(len(sizes))
    # The pooled prior's sampling part, where the product takes it (older trees do not).
    takes_sampling = "sampling" in moderated_noise.__code__.co_varnames
    for _ in range(reps):
        effect = rng.normal(0, tau, k + 1)
        runs = []
        for v, n in zip(sampling, sizes, strict=True):
            u = effect if shared else rng.normal(0, tau, k + 1)
            runs.append(
                [RunStatistic(math.exp(4 + y), v, n) for y in u + rng.normal(0, v**0.5, k + 1)]
            )
        spreads = [run_spread(r[:k]) for r in runs]
        extra = {"sampling": [s[2] for s in spreads]} if takes_sampling else {}
        pooled = moderated_noise([s[0] for s in spreads], k - 1, source="endpoints", **extra)
        for j, r in enumerate(runs):
            c = compare_runs(r[:k], r[k], statistic="median", history=pooled, baseline_apart=apart)
            flagged[j] += c.p_value < 0.05
            covered[j] += c.ci_low <= 0 <= c.ci_high
    return flagged / reps, covered / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    print(
        "| k | run effect | requests per endpoint | apart | shared "
        "| significant (all but last) | last endpoint | coverage (all but last) |"
    )
    print("|---|---|---|---|---|---:|---:|---:|")
    for k, tau, sizes, apart, shared in CASES:
        flagged, covered = simulate(rng, k, tau, sizes, apart, shared, args.reps)
        size = f"{sizes[0]:,} x {sizes.count(sizes[0])}" + (
            f" + {sizes[-1]}" if sizes[-1] != sizes[0] else ""
        )
        print(
            f"| {k} | {tau:.0%} | {size} | {apart} | {shared} | {flagged[:-1].mean():.1%} "
            f"| {flagged[-1]:.1%} | {covered[:-1].mean():.1%} |"
        )
    print(
        f"\n{args.reps} replications, {time.perf_counter() - start:.0f} s, load {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()
