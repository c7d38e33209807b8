"""Verdicts when the candidate has fewer (or more) requests than its baseline runs.

A standalone simulation, its draws made here with numpy only: k baseline runs of ``Nb``
requests and a candidate of ``Nc``, latencies log-normal (median log-uniform 20-200 ms, sigma
0.3-0.8), every run's latencies times its own run effect ``exp(e)``, ``e ~ Normal(0, drift)``,
the candidate's further times ``1 + effect``. Each run is summarised with
``quantile_statistics`` and judged with ``compare_runs`` (p50 and p95, default threshold 20 %,
alpha 0.05, runs taken apart for k >= 2, the 10 % prior for k = 1). Prints, per cell, the
share of runs flagged a regression at effect 0 (false alarms), +30 % and +50 % (recall), and
the share of effect-0 intervals covering 0.

With ``--history``, one baseline run and a candidate of ``Nc`` requests are judged with the
run noise measured on a history of 10 earlier runs of ``Nh`` requests (their p50 and p95 by
numpy, as the warehouse's run summaries hold them; ``RunNoise.measured`` with each run's
requests, as ``history_noise`` passes them): a smoke run against a history of full nightly
runs, and the other way round.

    OPENBLAS_NUM_THREADS=1 uv run python bench/unequal_sizes.py --reps 100    # about 1 min
    OPENBLAS_NUM_THREADS=1 uv run python bench/unequal_sizes.py --history --reps 200
"""

from __future__ import annotations

import argparse

import numpy as np

from metrics_pipeline.stats.compare import RunNoise, compare_runs, quantile_statistics

STATISTICS = ("p50", "p95")
SIZES = ((2000, 200), (2000, 500), (2000, 2000), (200, 2000), (50000, 2000))
DRIFTS = (0.0, 0.03, 0.10)
EFFECTS = (0.0, 0.3, 0.5)
HISTORY_RUNS = 10
HISTORY_SIZES = ((5000, 200), (2000, 2000), (200, 5000))


def run(rng, n: int, drift: float, factor: float, mu: float, sigma: float) -> np.ndarray:
    return factor * np.exp(rng.normal(mu + rng.normal(0, drift), sigma, n))


def tally(rng, reps: int, judge) -> dict[float, tuple]:
    """Per effect, the percentages of runs flagged and of intervals holding the effect, per
    statistic, over ``reps`` scenarios; ``judge(effect, mu, sigma)`` draws the runs and returns
    a comparison per statistic."""
    out = {}
    for effect in EFFECTS:
        flagged, covered = np.zeros(len(STATISTICS)), np.zeros(len(STATISTICS))
        for _ in range(reps):
            mu, sigma = np.log(rng.uniform(20, 200)), rng.uniform(0.3, 0.8)
            for i, result in enumerate(judge(effect, mu, sigma)):
                flagged[i] += result.regression
                covered[i] += result.ci_low <= effect <= result.ci_high
        out[effect] = (100 * flagged / reps, 100 * covered / reps)
    return out


def cell(k: int, nb: int, nc: int, drift: float, reps: int) -> dict[float, tuple]:
    rng = np.random.default_rng([k, nb, nc, int(drift * 100)])

    def judge(effect: float, mu: float, sigma: float) -> list:
        base = [
            quantile_statistics(run(rng, nb, drift, 1, mu, sigma), STATISTICS) for _ in range(k)
        ]
        cand = quantile_statistics(run(rng, nc, drift, 1 + effect, mu, sigma), STATISTICS)
        return [
            compare_runs([b[i] for b in base], cand[i], statistic=name, baseline_apart=k > 1)
            for i, name in enumerate(STATISTICS)
        ]

    return tally(rng, reps, judge)


def history_cell(nh: int, nc: int, drift: float, reps: int) -> dict[float, tuple]:
    rng = np.random.default_rng([nh, nc, int(drift * 100), HISTORY_RUNS])
    levels = [0.5 if name == "p50" else float(name[1:]) / 100 for name in STATISTICS]

    def judge(effect: float, mu: float, sigma: float) -> list:
        earlier = [
            np.quantile(run(rng, nh, drift, 1, mu, sigma), levels) for _ in range(HISTORY_RUNS)
        ]
        base = quantile_statistics(run(rng, nc, drift, 1, mu, sigma), STATISTICS)
        cand = quantile_statistics(run(rng, nc, drift, 1 + effect, mu, sigma), STATISTICS)
        return [
            compare_runs(
                [base[i]],
                cand[i],
                statistic=name,
                history=RunNoise.measured(
                    [e[i] for e in earlier], source="history", counts=[nh] * HISTORY_RUNS
                ),
            )
            for i, name in enumerate(STATISTICS)
        ]

    return tally(rng, reps, judge)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=100, help="replications per cell")
    parser.add_argument("--history", action="store_true", help="a history of other sizes")
    args = parser.parse_args()
    if args.history:
        head = "| Nh | Nc | drift"
        cells = (
            ((nh, nc, d), history_cell(nh, nc, d, args.reps))
            for nh, nc in HISTORY_SIZES
            for d in DRIFTS
        )
    else:
        head = "| k | Nb | Nc | drift"
        cells = (
            ((k, nb, nc, d), cell(k, nb, nc, d, args.reps))
            for k in (1, 3, 5)
            for nb, nc in SIZES
            for d in DRIFTS
        )
    print(
        f"{head} | FA p50 / p95 % | +30 % p50 / p95 | +50 % p50 / p95 | coverage at 0 p50 / p95 |"
    )
    print("|---" * (head.count("|") + 4) + "|")
    for key, r in cells:
        *sizes, drift = key
        print(
            "| " + " | ".join(str(x) for x in sizes) + f" | {drift:.0%} | {_pair(r[0.0][0])} "
            f"| {_pair(r[0.3][0])} | {_pair(r[0.5][0])} | {_pair(r[0.0][1])} |",
            flush=True,
        )


def _pair(values) -> str:
    return " / ".join(f"{x:.0f}" for x in values)


if __name__ == "__main__":
    main()
