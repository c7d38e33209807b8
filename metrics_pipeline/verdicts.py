"""Baseline choice and per-run regression verdicts (the CI stage)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from metrics_pipeline.models import conform
from metrics_pipeline.stats import Comparison, benjamini_hochberg, compare_rates, compare_samples
from metrics_pipeline.summary import escape_md

BASELINE_RUNS = 5


@dataclass(frozen=True)
class VerdictPolicy:
    """When a change counts as a regression.

    A change must be large (relative ``threshold``), significant (Benjamini-Hochberg adjusted
    p below ``alpha`` across every endpoint x metric of the run) and above an absolute floor:
    sub-millisecond endpoints move 15-30 % between identical runs on shared machines.
    """

    threshold: float = 0.20
    alpha: float = 0.05
    min_latency_ms: float = 1.0
    min_error_rate: float = 0.005


# metric -> the statistic compared on successful requests' latencies
LATENCY_METRICS = {"latency_p50": "median", "latency_p95": "p95"}


def choose_baseline(
    runs: pl.DataFrame,
    candidate: dict,
    regressed: set[str],
    n: int = BASELINE_RUNS,
) -> list[str]:
    """Run ids to compare ``candidate`` (a ``runs`` row) with.

    An explicit ``baseline`` run id in the manifest wins. Otherwise: the last ``n`` accepted
    runs (valid, not judged a regression) of the same suite, scenario and environment that
    started before the candidate.
    """
    explicit = candidate.get("baseline")
    if explicit and explicit != "auto":
        return [explicit] if explicit in set(runs["run_id"]) else []
    started: datetime = candidate["started_at"]
    previous = runs.filter(
        (pl.col("suite") == candidate["suite"])
        & (pl.col("scenario") == candidate["scenario"])
        & (pl.col("environment") == candidate["environment"])
        & (pl.col("started_at") < started)
        & pl.col("valid")
        & ~pl.col("run_id").is_in(sorted(regressed | {candidate["run_id"]}))
    )
    return previous.sort("started_at", "run_id").tail(n)["run_id"].to_list()


def judge_run(
    candidate: pl.DataFrame,
    baseline: pl.DataFrame,
    baseline_runs: list[str],
    policy: VerdictPolicy = VerdictPolicy(),
) -> pl.DataFrame:
    """Compare a candidate run's requests with the pooled requests of its baseline runs.

    Returns one row per endpoint x metric (``verdicts`` schema). Endpoints without baseline
    data get a row with a note and no verdict.
    """
    run_id = candidate["run_id"][0] if candidate.height else None
    rows: list[dict] = []
    comparisons: list[Comparison | None] = []
    for endpoint in sorted(candidate["endpoint"].unique()):
        cand = candidate.filter(pl.col("endpoint") == endpoint)
        base = baseline.filter(pl.col("endpoint") == endpoint)
        if base.height == 0:
            rows.append({"endpoint": endpoint, "metric": "all", "note": "no baseline data"})
            comparisons.append(None)
            continue
        cand_ok = cand.filter(pl.col("ok"))["latency_ms"].to_numpy()
        base_ok = base.filter(pl.col("ok"))["latency_ms"].to_numpy()
        for metric, statistic in LATENCY_METRICS.items():
            result = compare_samples(
                base_ok,
                cand_ok,
                threshold=policy.threshold,
                alpha=policy.alpha,
                statistic=statistic,
                min_effect=policy.min_latency_ms,
            )
            rows.append({"endpoint": endpoint, "metric": metric})
            comparisons.append(result)
        result = compare_rates(
            int((~base["ok"]).sum()),
            base.height,
            int((~cand["ok"]).sum()),
            cand.height,
            threshold=policy.threshold,
            alpha=policy.alpha,
            min_effect=policy.min_error_rate,
        )
        rows.append({"endpoint": endpoint, "metric": "error_rate"})
        comparisons.append(result)

    tested = [i for i, c in enumerate(comparisons) if c is not None and math.isfinite(c.p_value)]
    adjusted = benjamini_hochberg([comparisons[i].p_value for i in tested]) if tested else []
    p_adjusted = dict(zip(tested, adjusted, strict=True))
    for i, (row, result) in enumerate(zip(rows, comparisons, strict=True)):
        row["run_id"] = run_id
        row["baseline_runs"] = ",".join(baseline_runs)
        if result is None:
            row["regression"] = False
            continue
        adjusted_p = p_adjusted.get(i, math.nan)
        row |= {
            "baseline": result.baseline,
            "candidate": result.candidate,
            "change": result.change,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "p_value": result.p_value,
            "p_adjusted": adjusted_p,
            "n_baseline": result.n_baseline,
            "n_candidate": result.n_candidate,
            # compare_* already required the size and the absolute floor; the significance
            # must survive the multiple-testing adjustment across the run.
            "regression": bool(result.regression and adjusted_p < policy.alpha),
        }
    return conform("verdicts", pl.DataFrame(rows, infer_schema_length=None))


def verdicts_markdown(verdicts: pl.DataFrame) -> str:
    """The verdict table as markdown, regressions first, for the UI and the CLI."""
    lines = [
        "| endpoint | metric | baseline | candidate | change | 95% CI | p (adj.) | verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    ordered = verdicts.sort(["regression", "endpoint", "metric"], descending=[True, False, False])
    for row in ordered.iter_rows(named=True):
        if row["note"]:
            lines.append(
                f"| {escape_md(row['endpoint'])} | {row['metric']} | | | | | | {row['note']} |"
            )
            continue
        metric = row["metric"]
        lines.append(
            f"| {escape_md(row['endpoint'])} | {metric} | {_fmt(row['baseline'], metric)} "
            f"| {_fmt(row['candidate'], metric)} | {row['change']:+.1%} "
            f"| [{row['ci_low']:+.1%}, {row['ci_high']:+.1%}] | {row['p_adjusted']:.2g} "
            f"| {'**REGRESSION**' if row['regression'] else 'ok'} |"
        )
    return "\n".join(lines)


def _fmt(value: float, metric: str) -> str:
    return f"{value:.2%}" if metric == "error_rate" else f"{value:.1f} ms"
