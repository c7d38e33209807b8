"""False alarms and interval coverage when the candidate has more requests than its baseline runs.

A standalone simulation, numpy only: k baseline runs taken apart, each a log-scale statistic
(a p50, say) with sampling variance ``VB`` (a run of 200 requests) and a run effect
``N(0, log(1 + noise)^2)``; a candidate of ``m`` times the requests (sampling variance
``VB / m``) and its own run effect; nothing changed, then every value of the candidate 20 %
higher. Each is judged with ``compare_runs`` (``baseline_apart=True``: the measured spread
decides). Prints, per cell, the share of unchanged candidates with p < 0.05 (nominal 5 %)
and the share of intervals holding the true +20 % (nominal 95 %).

    OPENBLAS_NUM_THREADS=1 uv run python bench/larger_candidate.py [--reps 4000]   # ~1 min
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from metrics_pipeline.stats import RunStatistic, compare_runs

VB = 0.002  # the variance of a log p50 of 200 requests at sigma 0.5 is about 0.002


def cell(k: int, m: int, noise: float, reps: int) -> tuple[float, float]:
    rng, tau, vc = np.random.default_rng([k, m, int(noise * 100)]), math.log1p(noise), VB / m
    significant = covered = 0
    for _ in range(reps):
        yb = rng.normal(0, tau, k) + rng.normal(0, math.sqrt(VB), k)
        yc = rng.normal(0, tau) + rng.normal(0, math.sqrt(vc))
        base = [RunStatistic(100 * math.exp(y), VB, 200) for y in yb]
        same = RunStatistic(100 * math.exp(yc), vc, 200 * m)
        slower = RunStatistic(120 * math.exp(yc), vc, 200 * m)
        significant += compare_runs(base, same, statistic="p50", baseline_apart=True).p_value < 0.05
        result = compare_runs(base, slower, statistic="p50", baseline_apart=True)
        covered += result.ci_low <= 0.2 + 1e-9 and result.ci_high >= 0.2 - 1e-9
    return 100 * significant / reps, 100 * covered / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=4000)
    args = parser.parse_args()
    start, load = time.time(), os.getloadavg()[0]
    print("| k | candidate's requests | run noise | p < 0.05 % | holds +20 % |")
    print("|---|---|---|---|---|")
    for k in (3, 5):
        for m in (1, 10, 25):
            for noise in (0.0, 0.03, 0.10, 0.15, 0.30):
                significant, covered = cell(k, m, noise, args.reps)
                print(
                    f"| {k} | {m}x | {noise:.0%} | {significant:.1f} | {covered:.1f} |", flush=True
                )
    print(f"\n{time.time() - start:.0f} s, load average {load:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
