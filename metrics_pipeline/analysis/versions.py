"""Version comparisons: the same scenarios and endpoints measured under two service versions,
compared pair by pair (a paired test), one verdict per metric."""

from __future__ import annotations

import polars as pl

from metrics_pipeline.stats import benjamini_hochberg, compare_paired

UNIT = ["suite", "scenario", "environment", "endpoint"]
METRICS = {"latency_p50": True, "latency_p95": True, "throughput_rps": False}


def compare_versions(
    runs: pl.DataFrame,
    summaries: pl.DataFrame,
    baseline_version: str,
    candidate_version: str,
    *,
    threshold: float = 0.20,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per metric: how the candidate version compares on the units both versions ran.

    A unit is a suite x scenario x environment x endpoint; its value under a version is the
    median over that version's valid runs. Benjamini-Hochberg across the metrics.
    """
    tagged = summaries.join(
        runs.filter(pl.col("valid")).select("run_id", *UNIT[:3], "service_version"), on="run_id"
    )
    per_version = (
        tagged.filter(pl.col("service_version").is_in([baseline_version, candidate_version]))
        .group_by(*UNIT, "service_version")
        .agg([pl.col(metric).median() for metric in METRICS])
    )
    base = per_version.filter(pl.col("service_version") == baseline_version).drop("service_version")
    cand = per_version.filter(pl.col("service_version") == candidate_version).drop(
        "service_version"
    )
    pairs = base.join(cand, on=UNIT, suffix="_candidate")
    rows = []
    for metric, higher_is_worse in METRICS.items():
        result = compare_paired(
            pairs[metric].to_numpy(),
            pairs[f"{metric}_candidate"].to_numpy(),
            threshold=threshold,
            alpha=alpha,
            higher_is_worse=higher_is_worse,
        )
        rows.append({"metric": metric, "pairs": result.n_baseline} | result.as_dict())
    table = pl.DataFrame(rows).drop("statistic", "n_baseline", "n_candidate")
    adjusted = benjamini_hochberg(table["p_value"].to_numpy())
    return table.with_columns(
        p_adjusted=pl.Series(adjusted),
        regression=pl.col("regression") & (pl.Series(adjusted) < alpha),
    )
