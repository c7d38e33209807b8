"""Error-rate verdicts when the baseline runs and the candidate differ in size.

A standalone simulation, its draws made here with numpy only: k baseline runs of ``Nb``
requests and a candidate of ``Nc``, each run's error rate drawn around ``p`` (run-to-run CV
0: the same ``p`` in every run; else ``Beta(kappa p, kappa (1 - p))`` with ``kappa + 1 =
(1 - p) / (p cv^2)``, the error rate's own 30 % prior being right at cv 0.3), the candidate's
times ``1 + effect``, its errors ``Binomial(n, rate)``. Each run is summarised with
``rate_statistic`` and judged with ``compare_runs`` as the verdicts judge an error rate
(arcsine scale, threshold 20 %, ``min_effect`` 0.5 points, the 30 % prior, runs taken apart
for k >= 2). Prints, per cell, the share of candidates significant at 0.05 either way, flagged
a regression, flagged an improvement, and whose interval holds 0; at ``--effect`` the share
flagged a regression and whose interval holds the true change ``p * effect``; and the share of
both kinds of candidate whose shown change (candidate less the baseline's mean rate) lies
outside the interval as the verdicts print them (to 0.01 percentage points). Fisher's exact
test on the pooled counts (no run noise; scipy) is shown beside the significant share where
cv is 0.

    OPENBLAS_NUM_THREADS=1 uv run python bench/rate_sizes.py [--reps 2000]   # about 2 min
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.stats import fisher_exact

from metrics_pipeline.common.noise import DEFAULT_ERROR_RATE_NOISE
from metrics_pipeline.stats import RunNoise, compare_runs, rate_statistic

# (k, Nb, Nc)
SIZES = [
    (3, 100, 50_000),
    (3, 500, 50_000),
    (1, 500, 50_000),
    (3, 2_000, 2_000),
    (3, 2_000, 50_000),
    (3, 50_000, 500),
    (1, 50_000, 500),
    (5, 200, 20_000),
]
RATES = (0.002, 0.008, 0.03)
CVS = (0.0, 0.3)
# What the verdicts pass for an error rate (analysis.verdicts.METRIC_RULES).
PRIOR = RunNoise.prior(DEFAULT_ERROR_RATE_NOISE)


def draw(rng, n: int, p: float, cv: float, factor: float = 1.0) -> tuple[int, int]:
    kappa = (1 - p) / (p * cv**2) - 1 if cv else 0.0
    rate = p if cv == 0 else rng.beta(kappa * p, kappa * (1 - p))
    return int(rng.binomial(n, min(rate * factor, 1.0))), n


def judge(base, cand):
    return compare_runs(
        [rate_statistic(*b) for b in base],
        rate_statistic(*cand),
        statistic="rate",
        scale="arcsine",
        threshold=0.20,
        min_effect=0.005,
        baseline_apart=len(base) > 1,
        prior=PRIOR,
    )


def _outside(c) -> bool:
    """The change shown lies outside the interval as the verdicts print them (percentage
    points to 2 decimals: by more than half of 0.01 pp)."""
    return not c.ci_low - 5e-5 <= c.change <= c.ci_high + 5e-5


def cell(k, nb, nc, p, cv, reps, effect, seed):
    rng = np.random.default_rng([seed, k, nb, nc, int(p * 1e4), int(cv * 100)])
    sig = reg = imp = cov = fisher = power = cov_effect = outside = 0
    for _ in range(reps):
        base = [draw(rng, nb, p, cv) for _ in range(k)]
        c = judge(base, draw(rng, nc, p, cv))
        sig += c.p_value < 0.05
        reg += c.regression
        imp += c.improvement
        cov += c.ci_low <= 0 <= c.ci_high
        if cv == 0:
            e, n = sum(b[0] for b in base), sum(b[1] for b in base)
            ec = c.candidate * nc
            fisher += fisher_exact([[e, n - e], [round(ec), nc - round(ec)]])[1] < 0.05
        outside += _outside(c)
        changed = judge(base, draw(rng, nc, p, cv, 1 + effect))
        power += changed.regression
        cov_effect += changed.ci_low <= p * effect <= changed.ci_high
        outside += _outside(changed)
    pct = [100 * x / reps for x in (sig, reg, imp, cov, power, cov_effect, outside / 2)]
    return pct, (100 * fisher / reps if cv == 0 else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--effect", type=float, default=1.0, help="relative (1.0: doubled)")
    args = parser.parse_args()
    start, load = time.time(), os.getloadavg()[0]
    print(
        f"| k | Nb | Nc | p | cv | significant % (Fisher) | regression % | improvement % "
        f"| CI holds 0 % | regression at +{args.effect:.0%} | CI holds the change % "
        "| shown change outside the CI % |"
    )
    print("|---" * 12 + "|")
    for k, nb, nc in SIZES:
        for p in RATES:
            for cv in CVS:
                (sig, reg, imp, cov, power, cov_effect, outside), fisher = cell(
                    k, nb, nc, p, cv, args.reps, args.effect, args.seed
                )
                f = "" if np.isnan(fisher) else f" ({fisher:.1f})"
                print(
                    f"| {k} | {nb} | {nc} | {p:.1%} | {cv:.0%} | {sig:.1f}{f} | {reg:.1f} "
                    f"| {imp:.1f} | {cov:.1f} | {power:.1f} | {cov_effect:.1f} | {outside:.1f} |",
                    flush=True,
                )
    print(f"\n{time.time() - start:.0f} s, load average {load:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
