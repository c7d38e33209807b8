"""Version comparisons: the same scenarios and endpoints measured under two service versions.

Two kinds of rows, each a Benjamini-Hochberg family:

* **pooled** (``endpoint`` null): every unit both versions ran, compared pair by pair (a
  paired test over units): did the version move the service as a whole;
* **per unit** (a suite x scenario x environment x endpoint): the candidate version's runs
  against the baseline version's, under the run-noise model of ``compare`` (see
  :func:`~metrics_pipeline.stats.compare_runs`): one endpoint 60 % slower is a regression
  even when the pooled median of all endpoints hardly moves.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from metrics_pipeline.analysis.verdict_rules import VerdictRules
from metrics_pipeline.stats import benjamini_hochberg, compare_paired
from metrics_pipeline.stats.compare import RunStatistic, compare_runs, resolution_of, taken_apart

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
    r"""How the candidate version compares on the units both versions ran: pooled rows, then
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
        ``candidate`` (a unit's geometric means over its runs; null on pooled rows),
        ``change`` (+ = worse), ``ci_low``, ``ci_high``, ``p_value``, ``p_adjusted`` (within
        the pooled rows, and within the units' rows), ``regression`` and ``alpha`` (the rule's
        level: the CI's is ``1 - alpha``).

    Notes
    -----
    On a pooled row a unit's value under a version is the median over that version's valid
    runs; the test is Wilcoxon's signed rank on the units' log ratios
    (:func:`compare_paired`). A unit's own row takes as candidate the geometric mean
    :math:`\exp(\overline{\ln x})` of the candidate version's runs, as baseline each run of
    the baseline version (no sampling variance: a summary holds none, so the whole spread is
    the run effect; ``compare_runs`` takes their geometric mean), compared like one candidate
    run of ``compare`` (conservative for a mean of several runs): with one baseline run under
    the policy's prior, with several on their own spread (the prior its floor unless they
    were taken on separate days and differ); a change of one step of whole-number values
    does not count.
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
            values = old[metric].fill_null(float("nan")).to_numpy()
            candidate = _geometric_mean(new[metric].fill_null(float("nan")).to_numpy())
            # Whole milliseconds (a tool's CSV) move by whole steps: one step is no evidence.
            step = resolution_of(np.append(values, candidate))
            result = compare_runs(
                [RunStatistic(float(value), 0.0, 1, step) for value in values],
                RunStatistic(candidate, 0.0, 1, step),
                statistic=metric,
                higher_is_worse=higher_is_worse,
                threshold=rule.threshold,
                alpha=rule.alpha,
                min_effect=rule.min_effect,
                prior=own.prior(name),
                # Runs days apart measure the noise on their own, unless they agree exactly:
                # a summary has no sampling variance to fall back on (p would be 0).
                baseline_apart=taken_apart(old["started_at"].to_list())
                and np.unique(values).size > 1,
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
    # Two families, each adjusted on its own: a slowdown of every endpoint (the pooled rows'
    # question) must not be diluted by dozens of endpoint rows, nor they by it.
    pooled = table["endpoint"].is_null().to_numpy()
    p_values = table["p_value"].to_numpy()
    adjusted = np.full(table.height, np.nan)
    for family in (pooled, ~pooled):
        adjusted[family] = benjamini_hochberg(p_values[family])
    return table.with_columns(p_adjusted=pl.Series(adjusted)).with_columns(
        regression=pl.col("regression") & (pl.col("p_adjusted") < pl.col("alpha"))
    )


def _geometric_mean(values: np.ndarray) -> float:
    r"""The geometric mean :math:`\exp(\overline{\ln x})` of the finite positive values
    (NaN when there is none): the level ``compare_runs`` takes for the baseline runs."""
    usable = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.log(usable).mean())) if usable.size else float("nan")
