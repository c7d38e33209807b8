"""Version comparisons: the same scenarios and endpoints measured under two service versions.

Two kinds of rows, one Benjamini-Hochberg family:

* **pooled** (``endpoint`` null): every unit both versions ran, compared pair by pair (a
  paired test over units): did the version move the service as a whole;
* **per unit** (a suite x scenario x environment x endpoint): the candidate version's runs
  against the baseline version's, under the run-noise model of ``compare`` (see
  :func:`~metrics_pipeline.stats.compare_runs`): one endpoint 60 % slower is a regression
  even when the pooled median of all endpoints hardly moves.
"""

from __future__ import annotations

import polars as pl

from metrics_pipeline.analysis.verdict_rules import VerdictRules
from metrics_pipeline.stats import benjamini_hochberg, compare_paired
from metrics_pipeline.stats.compare import RunStatistic, compare_runs, taken_apart

UNIT = ["suite", "scenario", "environment", "endpoint"]
# run_summary column -> whether higher is worse, and the verdict rules' name of the metric.
METRICS = {
    "latency_p50": (True, "latency_p50"),
    "latency_p95": (True, "latency_p95"),
    "throughput_rps": (False, "throughput"),
}


def compare_versions(
    runs: pl.DataFrame,
    summaries: pl.DataFrame,
    baseline_version: str,
    candidate_version: str,
    *,
    rules: VerdictRules | None = None,
    threshold: float | None = None,
) -> pl.DataFrame:
    """How the candidate version compares on the units both versions ran: pooled rows, then
    one row per unit and metric (see the module's docstring).

    Parameters
    ----------
    runs, summaries : polars.DataFrame
        The warehouse's ``runs`` (valid runs count) and ``run_summary``.
    baseline_version, candidate_version : str
        The ``service_version`` values compared.
    rules : VerdictRules, optional
        Threshold, alpha, minimum effect and run-noise prior per metric of each unit's suite,
        scenario and environment (default: the built-in rules); the pooled rows take the
        rules that name none, as ``compare`` without ``--suite``.
    threshold : float, optional
        Overrides every rule's threshold.

    Returns
    -------
    polars.DataFrame
        ``suite``, ``scenario``, ``environment``, ``endpoint`` (null on pooled rows),
        ``metric``, ``pairs`` (units on a pooled row; baseline runs on a unit's), ``baseline``,
        ``candidate`` (a unit's run medians; null on pooled rows), ``change`` (+ = worse),
        ``ci_low``, ``ci_high``, ``p_value``, ``p_adjusted`` (across all rows) and
        ``regression``.

    Notes
    -----
    A unit's value under a version is the median over that version's valid runs. The pooled
    test is Wilcoxon's signed rank on the units' log ratios (:func:`compare_paired`). A unit's
    candidate is the median of the candidate version's runs, its baseline each run of the
    baseline version (no sampling variance: a summary holds none, so the whole spread is the
    run effect), compared like one candidate run of ``compare``: with one baseline run under
    the policy's prior, with several on their own spread.
    """
    rules = rules or VerdictRules()
    policy = rules.policy("", "", "").overridden(threshold=threshold)
    tagged = summaries.join(
        runs.filter(pl.col("valid")).select("run_id", *UNIT[:3], "service_version", "started_at"),
        on="run_id",
    ).filter(pl.col("service_version").is_in([baseline_version, candidate_version]))
    per_version = tagged.group_by(*UNIT, "service_version").agg(
        [pl.col(metric).median() for metric in METRICS]
    )
    base = per_version.filter(pl.col("service_version") == baseline_version).drop("service_version")
    cand = per_version.filter(pl.col("service_version") == candidate_version).drop(
        "service_version"
    )
    pairs = base.join(cand, on=UNIT, suffix="_candidate")
    rows = []
    for metric, (higher_is_worse, name) in METRICS.items():
        rule = policy.rule(name)
        result = compare_paired(
            pairs[metric].to_numpy(),
            pairs[f"{metric}_candidate"].to_numpy(),
            threshold=rule.threshold,
            alpha=rule.alpha,
            higher_is_worse=higher_is_worse,
        )
        rows.append(
            dict.fromkeys(UNIT)
            | {"metric": metric, "pairs": result.n_baseline, "alpha": rule.alpha}
            | result.as_dict()
        )
    for unit, frame in tagged.sort("started_at").group_by(UNIT, maintain_order=True):
        old = frame.filter(pl.col("service_version") == baseline_version)
        new = frame.filter(pl.col("service_version") == candidate_version)
        if old.height == 0 or new.height == 0:
            continue
        own = rules.policy(*unit[:3]).overridden(threshold=threshold)
        for metric, (higher_is_worse, name) in METRICS.items():
            rule = own.rule(name)
            values = old[metric].fill_null(float("nan")).to_list()
            candidate = new[metric].median()
            result = compare_runs(
                [RunStatistic(value, 0.0, 1) for value in values],
                RunStatistic(float("nan") if candidate is None else float(candidate), 0.0, 1),
                statistic=metric,
                higher_is_worse=higher_is_worse,
                threshold=rule.threshold,
                alpha=rule.alpha,
                min_effect=rule.min_effect,
                prior=own.prior(name),
                baseline_apart=taken_apart(old["started_at"].to_list()),
            )
            rows.append(
                dict(zip(UNIT, unit, strict=True))
                | {"metric": metric, "pairs": old.height, "alpha": rule.alpha}
                | result.as_dict()
            )
    table = pl.DataFrame(rows, infer_schema_length=None).select(
        *UNIT,
        "metric",
        "pairs",
        "baseline",
        "candidate",
        "change",
        "ci_low",
        "ci_high",
        "p_value",
        "regression",
        "alpha",
    )
    table = table.with_columns(
        pl.when(pl.col("endpoint").is_null()).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("baseline", "candidate")
    )
    adjusted = pl.Series(benjamini_hochberg(table["p_value"].to_numpy()))
    return table.with_columns(
        p_adjusted=adjusted, regression=pl.col("regression") & (adjusted < pl.col("alpha"))
    ).drop("alpha")
