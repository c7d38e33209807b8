"""SLA evaluation: one run against the KPI catalog, and rolling windows over many runs.

For each catalog entry that applies to the run, the run is cut into intervals of the entry's
``frequency`` (per-minute buckets of requests by default; the tool's own intervals for
``interval_stats``), the measure is computed per interval, and

* ``compliance_pct`` = 100 x (intervals meeting the target) / intervals,
* ``error_budget_remaining`` = 1 - (100 - compliance_pct) / (100 - objective_pct), the share
  of the allowed bad intervals still unused (negative when the budget is blown),
* ``observed`` = the measure over the whole run (for resource and business KPIs: the mean of
  the per-interval values),
* ``status`` = ``breached`` when observed is beyond the alert threshold, else ``missed`` when
  observed is worse than the target or compliance is below the objective, else ``met``;
  ``no_data`` when the run has nothing to measure it with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

import polars as pl

from metrics_pipeline.analysis.intervals import one_source, percentiles_by_endpoint
from metrics_pipeline.analysis.kpi_catalog import (
    KPI_PREFIX,
    LATENCY_QUANTILES,
    RESOURCE_PREFIX,
    KpiCatalog,
    KpiEntry,
)
from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import conform, empty
from metrics_pipeline.formats.base import ALL_ENDPOINTS

DEFAULT_WINDOWS = (7, 30)
# Per-interval values and the run's value of one measure, both with an ``endpoint`` column.
Measured = tuple[pl.DataFrame, pl.DataFrame]


def error_budget_remaining(compliance_pct: float, objective_pct: float) -> float:
    """Share of the error budget left: 1 when every interval met the target, 0 when exactly
    the allowed share (100 - objective) missed it, negative beyond."""
    return 1.0 - (100.0 - compliance_pct) / (100.0 - objective_pct)


def evaluate_run(
    catalog: KpiCatalog,
    run: dict,
    *,
    requests: pl.DataFrame,
    intervals: pl.DataFrame,
    resources: pl.DataFrame,
    kpi_points: pl.DataFrame,
    now: datetime,
) -> pl.DataFrame:
    """Every applicable catalog entry evaluated on one run (``sla_evaluations`` rows).

    ``run`` is the run's row of ``runs`` (run_id, suite, scenario, environment); the frames are
    its partitions of the canonical tables.
    """
    rows = []
    for name, entry in catalog.kpis.items():
        if not entry.scope.matches_run(run["suite"], run["scenario"], run["environment"]):
            continue
        per_interval, observed = _measure(entry, requests, intervals, resources, kpi_points)
        if entry.per_endpoint:
            keep = [e for e in set(observed["endpoint"]) if entry.scope.matches_endpoint(e)]
            observed = observed.filter(pl.col("endpoint").is_in(keep))
        base = {
            "run_id": run["run_id"],
            "suite": run["suite"],
            "scenario": run["scenario"],
            "environment": run["environment"],
            "kpi": name,
            "metric": entry.metric,
            "unit": entry.unit,
            "direction": entry.direction,
            "target": entry.target,
            "alert_threshold": entry.alert_threshold,
            "objective_pct": entry.objective_pct,
            "severity": entry.severity,
            "evaluated_at": now,
        }
        if observed.filter(pl.col("observed").is_not_null()).height == 0:
            rows.append(base | {"endpoint": ALL_ENDPOINTS, "status": "no_data"})
            continue
        for endpoint, value in sorted(observed.select("endpoint", "observed").iter_rows()):
            values = per_interval.filter(pl.col("endpoint") == endpoint)["value"].drop_nulls()
            rows.append(base | {"endpoint": endpoint} | _judge(entry, value, values.to_list()))
    if not rows:
        return empty("sla_evaluations")
    return conform("sla_evaluations", pl.DataFrame(rows, infer_schema_length=None)).sort(
        "kpi", "endpoint"
    )


def _judge(entry: KpiEntry, observed: float, values: list[float]) -> dict:
    good = sum(entry.meets(v, entry.target) for v in values)
    compliance = 100.0 * good / len(values) if values else None
    if not entry.meets(observed, entry.alert_threshold):
        status = "breached"
    elif not entry.meets(observed, entry.target) or (
        compliance is not None and compliance < entry.objective_pct
    ):
        status = "missed"
    else:
        status = "met"
    return {
        "observed": observed,
        "intervals": len(values),
        "compliance_pct": compliance,
        "error_budget_remaining": None
        if compliance is None
        else error_budget_remaining(compliance, entry.objective_pct),
        "status": status,
    }


def _measure(
    entry: KpiEntry,
    requests: pl.DataFrame,
    intervals: pl.DataFrame,
    resources: pl.DataFrame,
    kpi_points: pl.DataFrame,
) -> Measured:
    every = f"{int(entry.frequency.total_seconds())}s"
    if entry.metric.startswith(RESOURCE_PREFIX):
        points = resources.filter(pl.col("metric") == entry.metric.removeprefix(RESOURCE_PREFIX))
        return _bucketed(points, every, entry.aggregate)
    if entry.metric.startswith(KPI_PREFIX):
        points = kpi_points.filter(pl.col("metric") == entry.metric.removeprefix(KPI_PREFIX))
        return _bucketed(points, every, entry.aggregate)
    if requests.height:
        return _from_requests(entry.metric, requests, every, entry.frequency)
    return _from_intervals(entry.metric, intervals)


def _bucketed(points: pl.DataFrame, every: str, aggregate: str) -> Measured:
    """Resource samples or KPI points (over all hosts / dims) per interval; the run's value is
    the mean of the interval values."""
    combine = {"mean": pl.col("value").mean(), "sum": pl.col("value").sum()}.get(
        aggregate, pl.col("value").max()
    )
    per_interval = (
        points.group_by(pl.col("ts").dt.truncate(every))
        .agg(value=combine)
        .select(endpoint=pl.lit(ALL_ENDPOINTS), value="value")
    )
    observed = per_interval.group_by("endpoint").agg(observed=pl.col("value").mean())
    return per_interval, observed


def _request_value(metric: str) -> pl.Expr:
    if metric in LATENCY_QUANTILES:
        return (
            pl.col("latency_ms")
            .filter(pl.col("ok"))
            .quantile(LATENCY_QUANTILES[metric], interpolation="linear")
        )
    error_rate = (~pl.col("ok")).mean()
    return error_rate if metric == "error_rate" else 100.0 * (1.0 - error_rate)


def _from_requests(metric: str, requests: pl.DataFrame, every: str, width: timedelta) -> Measured:
    r"""The run's intervals (``every`` wide) and its whole: for each, the metric over the
    requests that ended in it (throughput: per second of the part of the interval the run
    covers, :math:`n / c`).

    An interval counts when the run covers at least half of it,
    :math:`c = \min(b + w, t_\text{last}) - \max(b, t_\text{first}) \ge w / 2`, unless an
    endpoint has no such interval: a sliver at either end of the run holds a few requests (a
    straggler answered after the last minute began) and, counted as a whole interval, decided
    compliance alone (one slow request: half the intervals missed, the error budget spent 50
    times over), and says nothing about the rate the run sustained.
    """
    bucket = pl.col("ts").dt.truncate(every).alias("bucket")
    first, last = requests["ts"].min(), requests["ts"].max()
    covered = (
        pl.min_horizontal(pl.col("bucket") + width, pl.lit(last))
        - pl.max_horizontal(pl.col("bucket"), pl.lit(first))
    ).dt.total_microseconds() / 1e6
    if metric != "throughput":
        value = _request_value(metric)
        per_interval = requests.group_by("endpoint", bucket).agg(value=value)
        observed = requests.group_by("endpoint").agg(observed=value)
    else:
        counts = requests.group_by(bucket).agg(n=pl.len())
        per_interval = counts.select(
            "bucket",
            endpoint=pl.lit(ALL_ENDPOINTS),
            value=pl.col("n") / covered.clip(lower_bound=1.0),
        )
        span = max((last - first).total_seconds(), 1.0)
        observed = pl.DataFrame({"endpoint": [ALL_ENDPOINTS], "observed": [requests.height / span]})
    whole = covered >= width.total_seconds() / 2
    per_interval = per_interval.filter(whole | ~whole.any().over("endpoint"))
    return per_interval, observed


def _from_intervals(metric: str, intervals: pl.DataFrame) -> Measured:
    """Tools without per-request data: each interval_stats row is one interval."""
    if intervals.height == 0:
        return pl.DataFrame({"endpoint": [], "value": []}), pl.DataFrame(
            {"endpoint": [], "observed": []}, schema={"endpoint": pl.String, "observed": pl.Float64}
        )
    rows = one_source(intervals, by=("run_id", "endpoint"))
    if metric == "throughput":
        rows = rows.filter(pl.col("interval_s").is_not_null())
        if ALL_ENDPOINTS in set(rows["endpoint"]):
            rows = rows.filter(pl.col("endpoint") == ALL_ENDPOINTS)
        per_ts = rows.group_by("ts").agg(n=pl.col("count").sum(), s=pl.col("interval_s").first())
        per_interval = per_ts.select(
            endpoint=pl.lit(ALL_ENDPOINTS), value=pl.col("n") / pl.col("s")
        )
        observed = per_ts.select(
            endpoint=pl.lit(ALL_ENDPOINTS), observed=pl.col("n").sum() / pl.col("s").sum()
        ).head(1 if per_ts.height else 0)
        return per_interval, observed
    if metric in LATENCY_QUANTILES:
        column = metric.removeprefix("latency_")
        # The run's value is the percentile of all its intervals' requests (as its summary
        # and verdicts take it): percentiles do not average.
        observed = percentiles_by_endpoint(rows, {"observed": column}).drop_nulls("observed")
        rows = rows.filter(pl.col(column).is_not_null())
        return rows.select("endpoint", value=pl.col(column)), observed.drop("run_id")
    rate = pl.col("errors") / pl.col("count")
    total = pl.col("errors").sum() / pl.col("count").sum()
    if metric == "availability":
        rate, total = 100.0 * (1.0 - rate), 100.0 * (1.0 - total)
    rows = rows.filter(pl.col("count") > 0)
    return rows.select("endpoint", value=rate), rows.group_by("endpoint").agg(observed=total)


def rolling_windows(
    evaluations: pl.DataFrame,
    runs: pl.DataFrame,
    catalog: KpiCatalog,
    as_of: datetime,
    windows: Iterable[int] = DEFAULT_WINDOWS,
) -> pl.DataFrame:
    """Compliance over the runs started in the last ``windows`` days before ``as_of`` (rows of
    ``sla_windows``), per combination x KPI x endpoint.

    Compliance pools the intervals of every run (a run with more intervals weighs more); the
    error budget is that compliance against the entry's objective. Windows longer than an
    entry's retention are left out: the evaluations they would need are gone.
    """
    judged = evaluations.filter(pl.col("intervals") > 0).join(
        runs.select("run_id", "started_at"), on="run_id"
    )
    keys = ["suite", "scenario", "environment", "kpi", "endpoint"]
    frames = []
    for days in windows:
        kept = [
            name for name, entry in catalog.kpis.items() if entry.retention >= timedelta(days=days)
        ]
        recent = judged.filter(
            pl.col("kpi").is_in(kept)
            & (pl.col("started_at") > as_of - timedelta(days=days))
            & (pl.col("started_at") <= as_of)
        )
        good = (pl.col("compliance_pct") * pl.col("intervals")).sum()
        compliance = good / pl.col("intervals").sum()
        frames.append(
            recent.group_by(keys)
            .agg(
                runs=pl.col("run_id").n_unique(),
                breaches=(pl.col("status") == "breached").sum(),
                compliance_pct=compliance,
                objective=pl.col("objective_pct").last(),
            )
            .with_columns(
                window_days=pl.lit(days),
                error_budget_remaining=1.0
                - (100.0 - pl.col("compliance_pct")) / (100.0 - pl.col("objective")),
                evaluated_at=pl.lit(as_of),
            )
        )
    if not frames:
        return empty("sla_windows")
    return conform("sla_windows", pl.concat(frames, how="diagonal_relaxed")).sort(
        [*keys, "window_days"]
    )


STATUS_MARK = {"breached": "BREACHED", "missed": "missed", "met": "met", "no_data": "no data"}


def evaluations_markdown(evaluations: pl.DataFrame, limit: int = 60) -> str:
    """The run's SLA table for the UI, breaches first."""
    order = {"breached": 0, "missed": 1, "met": 2, "no_data": 3}
    lines = [
        "| KPI | endpoint | observed | target | alert at | compliance | budget left | status |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    shown = evaluations.sort(
        pl.col("status").replace_strict(order, return_dtype=pl.Int8), "kpi", "endpoint"
    )
    for row in shown.head(limit).iter_rows(named=True):
        observed = "" if row["observed"] is None else f"{row['observed']:.4g} {row['unit']}"
        compliance = "" if row["compliance_pct"] is None else f"{row['compliance_pct']:.1f} %"
        unit = row["unit"] or ""
        lines.append(
            f"| {md(row['kpi'])} | {md(row['endpoint'])} | {observed} "
            f"| {row['target']:.4g} {unit} | {row['alert_threshold']:.4g} {unit} | {compliance} "
            f"| {budget_words(row['error_budget_remaining'])} | {STATUS_MARK[row['status']]} |"
        )
    if evaluations.height > limit:
        lines.append(f"\n... and {evaluations.height - limit} more rows in sla_evaluations")
    return "\n".join(lines)


def budget_words(remaining: float | None) -> str:
    """The error budget left, in words: ``63 % left``, ``spent``, or ``spent 20x over`` for a
    budget overrun 20-fold (remaining = -19), never ``-1900 %``."""
    if remaining is None or not math.isfinite(remaining):
        return ""
    if remaining > 0:
        return f"{remaining * 100:.0f} % left"
    overrun = 1 - remaining
    return "spent" if overrun < 1.05 else f"spent {overrun:.3g}x over"
