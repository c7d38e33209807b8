"""Baseline choice and per-run regression verdicts (the CI stage)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from metrics_pipeline.analysis.baselines import BASELINE_RUNS, accepted_runs, dynamic_baseline
from metrics_pipeline.analysis.series import RESOURCES
from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import conform, empty
from metrics_pipeline.formats.base import ALL_ENDPOINTS
from metrics_pipeline.stats import Comparison, benjamini_hochberg, compare_rates, compare_samples


@dataclass(frozen=True)
class MetricRule:
    """When a change of one metric counts as a degradation of ``threshold`` or more.

    A regression needs all of:

    - a Benjamini-Hochberg adjusted p below ``alpha`` (across all tests of the run; with
      several baseline runs the test includes the run-to-run noise, see
      :func:`~metrics_pipeline.stats.compare_samples`);
    - a worsening of at least ``min_effect`` in the metric's units (sub-millisecond endpoints
      move 15-30 % between identical runs on shared machines: flagging them is a false alarm);
    - evidence consistent with a worsening of ``threshold`` or more: the estimated change above
      ``estimate_share * threshold`` and the upper bound of its 95 % CI at or above
      ``threshold``. A true slowdown of exactly the threshold gives an estimate below it half
      of the time; requiring the estimate itself to exceed it (``estimate_share=1``, the
      classic "worse by more than 20 %" rule) would miss those.
    """

    threshold: float = 0.20
    alpha: float = 0.05
    min_effect: float = 0.0
    estimate_share: float = 0.75


DEFAULT_RULES = {
    "latency_p50": MetricRule(min_effect=1.0),
    "latency_p95": MetricRule(min_effect=1.0),
    "error_rate": MetricRule(min_effect=0.005),
    "throughput": MetricRule(min_effect=0.5),
    "resource": MetricRule(),
}


@dataclass(frozen=True)
class VerdictPolicy:
    """Per-metric rules (``resource`` covers every resource metric)."""

    rules: Mapping[str, MetricRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def rule(self, metric: str) -> MetricRule:
        return self.rules.get(metric) or self.rules["resource"]

    @classmethod
    def uniform(cls, threshold: float = 0.20, alpha: float = 0.05) -> VerdictPolicy:
        """The default absolute floors with one threshold and alpha for every metric."""
        return cls(
            {m: replace(r, threshold=threshold, alpha=alpha) for m, r in DEFAULT_RULES.items()}
        )


# metric -> the statistic compared on successful requests' latencies
LATENCY_METRICS = {"latency_p50": "median", "latency_p95": "p95"}
# Resource metrics where more is worse; a candidate using more of them is a regression, or a
# trade-off when its latency got better.
RESOURCE_METRICS = (
    "cpu_pct",
    "mem_pct",
    "mem_used_bytes",
    "rss_bytes",
    "proc_rss_bytes",
    "proc_cpu_pct",
    "gpu_pct",
    "spill_pct",
)
# (metric, comparison, note) of one endpoint
Judged = list[tuple[str, Comparison, str | None]]


def choose_baseline(
    runs: pl.DataFrame,
    candidate: dict,
    regressed: set[str],
    *,
    summaries: pl.DataFrame | None = None,
    pinned: list[str] | None = None,
    n: int = BASELINE_RUNS,
) -> list[str]:
    """Run ids to compare ``candidate`` (a ``runs`` row) with, in order of precedence:

    1. an explicit ``baseline`` run id in its manifest;
    2. the runs pinned for its combination in the baseline file (``pinned``), if known here;
    3. a rolling window: the last ``n`` accepted runs (valid, not judged a regression) of the
       same suite, scenario and environment that started before it, leaving out outlier runs
       (IQR rule on their relative p50 latency, given ``summaries``).
    """
    known = set(runs["run_id"])
    explicit = candidate.get("baseline")
    if explicit and explicit != "auto":
        return [explicit] if explicit in known else []
    if pinned and (
        chosen := [run for run in pinned if run in known and run != candidate["run_id"]]
    ):
        return chosen
    previous = accepted_runs(runs, regressed | {candidate["run_id"]}).filter(
        (pl.col("suite") == candidate["suite"])
        & (pl.col("scenario") == candidate["scenario"])
        & (pl.col("environment") == candidate["environment"])
        & (pl.col("started_at") < candidate["started_at"])
    )
    return dynamic_baseline(previous, _or_empty(summaries, "run_summary"), n)


def judge_run(
    candidate: pl.DataFrame,
    baseline: pl.DataFrame,
    baseline_runs: list[str],
    policy: VerdictPolicy = VerdictPolicy(),
    *,
    candidate_intervals: pl.DataFrame | None = None,
    baseline_intervals: pl.DataFrame | None = None,
    candidate_resources: pl.DataFrame | None = None,
    baseline_resources: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Compare a candidate run with the pooled data of its baseline runs.

    Per-request rows are compared where an endpoint has them on both sides (latency p50 and
    p95, error rate, throughput per second); otherwise the ``interval_stats`` rows of tools that
    only report aggregates. Resource usage is compared per metric over all hosts. Returns one
    row per endpoint x metric (``verdicts`` schema) with ``verdict`` one of ``regression``,
    ``trade-off`` (a resource got worse while latency got better: not a pass), ``ok``, or
    ``no baseline``.

    The baseline's ``run_id`` column tells its runs apart: latency, throughput and resource
    comparisons add the run-to-run variation of the statistic among the baseline runs to the
    CI and to the test (``compare_samples(..., baseline_runs=...)``), since the candidate is
    one more run with a run effect of its own. Each row is then judged by its metric's
    :class:`MetricRule` with Benjamini-Hochberg adjusted p-values.
    """
    candidate_intervals = _or_empty(candidate_intervals, "interval_stats")
    if candidate.height:
        # Per-request rows cover every endpoint; a tool's overall total would judge them twice.
        candidate_intervals = candidate_intervals.filter(pl.col("endpoint") != ALL_ENDPOINTS)
    baseline_intervals = _or_empty(baseline_intervals, "interval_stats")
    run_ids = pl.concat([candidate["run_id"], candidate_intervals["run_id"]]).drop_nulls()
    run_id = run_ids[0] if len(run_ids) else None
    request_endpoints = set(candidate["endpoint"]) & set(baseline["endpoint"])
    rows: list[dict] = []
    comparisons: list[Comparison | None] = []
    for endpoint in sorted(set(candidate["endpoint"]) | set(candidate_intervals["endpoint"])):
        if endpoint in request_endpoints:
            judged = _judge_requests(
                candidate.filter(pl.col("endpoint") == endpoint),
                baseline.filter(pl.col("endpoint") == endpoint),
                policy,
            )
        else:
            judged = _judge_intervals(
                _one_source(candidate_intervals.filter(pl.col("endpoint") == endpoint)),
                _one_source(baseline_intervals.filter(pl.col("endpoint") == endpoint)),
                policy,
            )
        if not judged:
            rows.append({"endpoint": endpoint, "metric": "all", "note": "no baseline data"})
            comparisons.append(None)
        for metric, result, note in judged:
            rows.append({"endpoint": endpoint, "metric": metric, "note": note})
            comparisons.append(result)
    for metric, result in _judge_resources(
        _or_empty(candidate_resources, "resources"),
        _or_empty(baseline_resources, "resources"),
        policy,
    ):
        rows.append({"endpoint": RESOURCES, "metric": metric, "note": None})
        comparisons.append(result)

    tested = [i for i, c in enumerate(comparisons) if c is not None and math.isfinite(c.p_value)]
    adjusted = benjamini_hochberg([comparisons[i].p_value for i in tested]) if tested else []
    p_adjusted = dict(zip(tested, adjusted, strict=True))
    for i, (row, result) in enumerate(zip(rows, comparisons, strict=True)):
        row["run_id"] = run_id
        row["baseline_runs"] = ",".join(baseline_runs)
        if result is None:
            row |= {"regression": False, "verdict": "no baseline"}
            continue
        adjusted_p = p_adjusted.get(i, math.nan)
        alpha = policy.rule(row["metric"]).alpha
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
            # must survive the multiple-testing adjustment across the run. Aggregates without
            # a test (one summary per side) are judged on size and floor alone.
            "regression": bool(result.regression and (adjusted_p < alpha or i not in p_adjusted)),
        }
    latency_better = any(
        row["metric"] in LATENCY_METRICS
        and row.get("change") is not None
        and row["change"] < 0
        and row.get("p_adjusted", 1.0) < policy.rule(row["metric"]).alpha
        for row in rows
    )
    for row in rows:
        if "verdict" not in row:
            trade_off = row["regression"] and row["endpoint"] == RESOURCES and latency_better
            row["verdict"] = (
                "trade-off" if trade_off else "regression" if row["regression"] else "ok"
            )
    return conform("verdicts", pl.DataFrame(rows, infer_schema_length=None))


def run_verdict(verdicts: pl.DataFrame) -> str:
    """One word for the whole run: regression, trade-off, pass, or no baseline."""
    kinds = set(verdicts["verdict"])
    if "regression" in kinds:
        return "regression"
    if "trade-off" in kinds:
        return "trade-off"
    return "pass" if "ok" in kinds else "no baseline"


def _judge_requests(cand: pl.DataFrame, base: pl.DataFrame, policy: VerdictPolicy) -> Judged:
    cand_ok = cand.filter(pl.col("ok"))["latency_ms"].to_numpy()
    base_good = base.filter(pl.col("ok"))
    base_ok = base_good["latency_ms"].to_numpy()
    runs = base_good["run_id"].to_numpy()
    judged: Judged = [
        (metric, _samples(base_ok, cand_ok, policy.rule(metric), statistic, runs=runs), None)
        for metric, statistic in LATENCY_METRICS.items()
    ]
    rule = policy.rule("error_rate")
    rate = compare_rates(
        int((~base["ok"]).sum()),
        base.height,
        int((~cand["ok"]).sum()),
        cand.height,
        threshold=rule.threshold,
        alpha=rule.alpha,
        min_effect=rule.min_effect,
        estimate_share=rule.estimate_share,
    )
    base_counts, base_runs = _per_second_by_run(base)
    throughput = _samples(
        base_counts,
        per_second(cand),
        policy.rule("throughput"),
        "median",
        higher_is_worse=False,
        runs=base_runs,
    )
    return [*judged, ("error_rate", rate, None), ("throughput", throughput, "requests per second")]


def per_second(requests: pl.DataFrame) -> np.ndarray:
    """Requests per whole second of each run (seconds without requests count as 0; the first
    and last, partial, seconds of a run are left out)."""
    return _per_second_by_run(requests)[0]


def _per_second_by_run(requests: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """:func:`per_second` and the run id of each count."""
    counts, labels = [], []
    for (run_id,), run in requests.group_by(["run_id"], maintain_order=True):
        seconds = (run["ts"] - run["ts"].min()).dt.total_microseconds().to_numpy() // 1_000_000
        counts.append(np.bincount(seconds)[1:-1])
        labels.append(np.full(counts[-1].size, run_id, dtype=object))
    if not counts:
        return np.array([]), np.array([], dtype=object)
    return np.concatenate(counts), np.concatenate(labels)


def _samples(
    base: np.ndarray,
    cand: np.ndarray,
    rule: MetricRule,
    statistic: str,
    higher_is_worse: bool = True,
    runs: np.ndarray | None = None,
) -> Comparison:
    return compare_samples(
        base,
        cand,
        threshold=rule.threshold,
        alpha=rule.alpha,
        statistic=statistic,
        higher_is_worse=higher_is_worse,
        min_effect=rule.min_effect,
        baseline_runs=runs,
        estimate_share=rule.estimate_share,
    )


def _judge_resources(
    cand: pl.DataFrame, base: pl.DataFrame, policy: VerdictPolicy
) -> list[tuple[str, Comparison]]:
    judged = []
    for metric in RESOURCE_METRICS:
        c = cand.filter(pl.col("metric") == metric)["value"].to_numpy()
        rows = base.filter(pl.col("metric") == metric)
        b = rows["value"].to_numpy()
        if len(c) >= 2 and len(b) >= 2:
            runs = rows["run_id"].to_numpy()
            judged.append((metric, _samples(b, c, policy.rule(metric), "median", runs=runs)))
    return judged


# Interval columns compared as latency metrics, and the fewest intervals a side needs for a
# rank test on the series (with 3 vs 3 values no test can reach p < 0.05).
INTERVAL_METRICS = {"latency_p50": "p50", "latency_p95": "p95"}
MIN_INTERVALS = 5


def _judge_intervals(cand: pl.DataFrame, base: pl.DataFrame, policy: VerdictPolicy) -> Judged:
    """Judge pre-aggregated rows: the series of per-interval percentiles when both sides have
    enough intervals (a rank test on the series), else the count-weighted aggregate of each
    side with no significance test (noted on the row)."""
    if cand.height == 0 or base.height == 0:
        return []
    series = min(cand.height, base.height) >= MIN_INTERVALS
    judged: Judged = []
    for metric, column in INTERVAL_METRICS.items():
        if cand[column].null_count() == cand.height or base[column].null_count() == base.height:
            continue
        if series:
            result = _samples(
                base[column].to_numpy(), cand[column].to_numpy(), policy.rule(metric), "median"
            )
            judged.append((metric, result, f"{column} of {cand.height} intervals"))
        else:
            result = _aggregate_change(
                _weighted(base, column), _weighted(cand, column), policy.rule(metric)
            )
            result = replace(result, n_baseline=base.height, n_candidate=cand.height)
            judged.append((metric, result, "aggregate only: no significance test"))
    if cand["errors"].null_count() == 0 and base["errors"].null_count() == 0:
        rule = policy.rule("error_rate")
        rate = compare_rates(
            int(base["errors"].sum()),
            int(base["count"].sum()),
            int(cand["errors"].sum()),
            int(cand["count"].sum()),
            threshold=rule.threshold,
            alpha=rule.alpha,
            min_effect=rule.min_effect,
            estimate_share=rule.estimate_share,
        )
        judged.append(("error_rate", rate, None))
    return judged


def _weighted(frame: pl.DataFrame, column: str) -> float:
    """Count-weighted mean of a per-interval statistic (an approximation for percentiles)."""
    valid = frame.filter(pl.col(column).is_not_null())
    weights = valid["count"].fill_null(1).cast(pl.Float64)
    if weights.sum() <= 0:
        return float(valid[column].mean())
    return float((valid[column] * weights).sum() / weights.sum())


def _aggregate_change(base: float, cand: float, rule: MetricRule) -> Comparison:
    change = cand / base - 1 if base > 0 else math.nan
    return Comparison(
        statistic="aggregate",
        baseline=base,
        candidate=cand,
        change=change,
        ci_low=math.nan,
        ci_high=math.nan,
        p_value=math.nan,
        n_baseline=1,
        n_candidate=1,
        regression=bool(change > rule.threshold and cand - base >= rule.min_effect),
    )


def _one_source(intervals: pl.DataFrame) -> pl.DataFrame:
    """The rows of the file with the longest series: files of one run that summarise the same
    requests (Locust writes three) must not be pooled."""
    if intervals.height == 0:
        return intervals
    best = (
        intervals.group_by("source_file")
        .len()
        .sort(["len", "source_file"], descending=[True, False], nulls_last=True)["source_file"][0]
    )
    return intervals.filter(pl.col("source_file").eq_missing(best))


def _or_empty(frame: pl.DataFrame | None, table: str) -> pl.DataFrame:
    return empty(table) if frame is None else frame


def verdicts_markdown(verdicts: pl.DataFrame) -> str:
    """The verdict table as markdown, regressions first, for the UI and the CLI."""
    lines = [
        "| endpoint | metric | baseline | candidate | change | 95% CI (+ = worse) | p (adj.) "
        "| verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for row in ordered(verdicts).iter_rows(named=True):
        cells = [md(row["endpoint"]), row["metric"], *formatted(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


UNITS = {
    "error_rate": "{:.2%}",
    "latency_p50": "{:.1f} ms",
    "latency_p95": "{:.1f} ms",
    "throughput": "{:.1f}/s",
}


def ordered(verdicts: pl.DataFrame) -> pl.DataFrame:
    return verdicts.sort(["regression", "endpoint", "metric"], descending=[True, False, False])


def formatted(row: dict) -> list[str]:
    """baseline, candidate, change, CI, adjusted p and verdict of one row, as text."""
    if row["baseline"] is None:
        return ["", "", "", "", "", row["note"] or ""]
    unit = UNITS.get(row["metric"], "{:.4g}")
    ci = (
        f"[{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]"
        if math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"])
        else "-"
    )
    p = f"{row['p_adjusted']:.2g}" if math.isfinite(row["p_adjusted"]) else "-"
    verdict = {"regression": "REGRESSION", "trade-off": "TRADE-OFF"}.get(row["verdict"], "ok")
    if row["note"]:
        verdict += f" ({row['note']})"
    change = change_words(row["change"])
    return [unit.format(row["baseline"]), unit.format(row["candidate"]), change, ci, p, verdict]


def change_words(change: float) -> str:
    """A relative change (+ = worse, whatever the metric's direction) in words that need no
    legend: ``5.0 % worse`` for 10.0/s -> 9.5/s and for 10 ms -> 10.5 ms alike."""
    if not math.isfinite(change):
        return "-"
    if abs(change) < 0.0005:
        return "no change"
    return f"{abs(change) * 100:.1f} % {'worse' if change > 0 else 'better'}"
