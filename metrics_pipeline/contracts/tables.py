"""Every warehouse table, declared once: name, schema, partitioning, writer, retention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

TS = pl.Datetime("us", "UTC")
# Columns whose values rise row after row in every table that has them (a result file's
# timestamps and line numbers): the warehouse stores them as deltas.
SEQUENTIAL_COLUMNS = frozenset({"ts", "line_no"})

Partitioning = Literal["run", "snapshot"]
# raw: deleted after RetentionPolicy.raw_days; aggregate: after aggregate_days (both unless a
# baseline needs the run); kept: snapshots, rewritten whole, never aged.
RetentionClass = Literal["raw", "aggregate", "kept"]


@dataclass(frozen=True)
class Table:
    """Everything the code needs to know about one warehouse table, declared once.

    ``partitioning``: ``run`` tables have one Parquet partition per run (``run_id=<id>/``),
    replaced whole when the run is processed again; ``snapshot`` tables are rewritten whole.
    ``written_by``: the step of ``metrics_pipeline.stages`` (or ``alerts.service``) that writes
    it. ``canonical``: a record a result file can hold (``formats.read_results`` returns it).
    Every table is mirrored to Postgres when a mirror is configured.
    """

    name: str
    description: str
    schema: pl.Schema
    written_by: str
    partitioning: Partitioning = "run"
    retention: RetentionClass = "aggregate"
    canonical: bool = False


TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        Table(
            "requests",
            "One row per request: when, endpoint, status, latency, bytes.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "ts": TS,
                    "endpoint": pl.String,
                    "method": pl.String,
                    "status": pl.Int32,
                    "ok": pl.Boolean,
                    "latency_ms": pl.Float64,
                    "bytes_received": pl.Int64,
                    "bytes_sent": pl.Int64,
                    "error": pl.String,
                    "source_file": pl.String,
                    "line_no": pl.Int64,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="raw",
            canonical=True,
        ),
        Table(
            "resources",
            "System and process samples: CPU, memory, RSS, GPU, custom gauges.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "ts": TS,
                    "host": pl.String,
                    "metric": pl.String,
                    "value": pl.Float64,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="raw",
            canonical=True,
        ),
        Table(
            "events",
            "What happened in the run: failures, exceptions, thresholds, restarts.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "ts": TS,
                    "kind": pl.String,
                    "subject": pl.String,
                    "detail": pl.String,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="raw",
            canonical=True,
        ),
        Table(
            "interval_stats",
            "Per-interval aggregates of tools without per-request data.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "ts": TS,
                    "endpoint": pl.String,
                    "source_file": pl.String,
                    "interval_s": pl.Float64,  # the window the row covers; null when unknown
                    "count": pl.Int64,
                    "errors": pl.Int64,
                    "mean": pl.Float64,
                    "min": pl.Float64,
                    "p50": pl.Float64,
                    "p90": pl.Float64,
                    "p95": pl.Float64,
                    "p99": pl.Float64,
                    "max": pl.Float64,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="raw",
            canonical=True,
        ),
        Table(
            "kpi_points",
            "Business KPIs reported with the run (``kpi_points`` records).",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "ts": TS,
                    "metric": pl.String,
                    "value": pl.Float64,
                    "dims": pl.String,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="raw",
            canonical=True,
        ),
        Table(
            "quarantine",
            "Rows and files that could not be accepted, with the reason.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "source_file": pl.String,
                    "line_no": pl.Int64,
                    "reason": pl.String,
                    "raw": pl.String,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="raw",
            canonical=True,
        ),
        Table(
            "run_summary",
            "Per run x endpoint: volume, errors, throughput, latency percentiles.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "endpoint": pl.String,
                    "requests": pl.Int64,
                    "errors": pl.Int64,
                    "error_rate": pl.Float64,
                    "throughput_rps": pl.Float64,
                    "latency_mean": pl.Float64,
                    "latency_p50": pl.Float64,
                    "latency_p90": pl.Float64,
                    "latency_p95": pl.Float64,
                    "latency_p99": pl.Float64,
                    "latency_max": pl.Float64,
                }
            ),
            written_by="ci.summarise",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "verdicts",
            "Per run x endpoint x metric: change (relative; error_rate: difference of rates), CI, "
            "p-value, verdict.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "baseline": pl.Float64,
                    "candidate": pl.Float64,
                    "change": pl.Float64,
                    "ci_low": pl.Float64,
                    "ci_high": pl.Float64,
                    "p_value": pl.Float64,
                    "p_adjusted": pl.Float64,
                    "regression": pl.Boolean,
                    "verdict": pl.String,  # analysis.verdicts.VERDICTS
                    "n_baseline": pl.Int64,
                    "n_candidate": pl.Int64,
                    "baseline_runs": pl.String,  # the ones this row was compared with
                    "note": pl.String,
                    "noise": pl.String,  # where the run-to-run noise came from
                }
            ),
            written_by="ci.judge",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "change_points",
            "Steps in every per-run history.",
            pl.Schema(
                {
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "run_id": pl.String,  # the first run of the new segment
                    "started_at": TS,
                    "git_sha": pl.String,
                    "service_version": pl.String,
                    # The last run before it: what changed between the two versions.
                    "previous_run_id": pl.String,
                    "previous_git_sha": pl.String,
                    "previous_service_version": pl.String,
                    "before": pl.Float64,
                    "after": pl.Float64,
                    "change": pl.Float64,  # relative, + = worse
                    "change_low": pl.Float64,  # 95 % interval of change
                    "change_high": pl.Float64,
                    "p_value": pl.Float64,
                    "worse": pl.Boolean,
                }
            ),
            written_by="nightly.change_points",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "drifts",
            "Slow significant trends.",
            pl.Schema(
                {
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "runs": pl.Int64,
                    "first_run": pl.String,
                    "last_run": pl.String,
                    "slope_per_run": pl.Float64,
                    "total_change": pl.Float64,  # relative over the series, + = worse
                    "p_value": pl.Float64,
                    "worse": pl.Boolean,
                }
            ),
            written_by="nightly.drifts",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "forecasts",
            "30-day forecasts with prediction intervals.",
            pl.Schema(
                {
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "ts": TS,
                    "step": pl.Int32,
                    "mean": pl.Float64,
                    "lower": pl.Float64,
                    "upper": pl.Float64,
                    "method": pl.String,
                }
            ),
            written_by="nightly.forecasts",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "findings",
            "What to do: rollbacks, drifts, capacity, KPI anomalies.",
            pl.Schema(
                {
                    "kind": pl.String,  # change_point | drift | capacity | headroom | ...
                    "severity": pl.String,  # critical | warning | info
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "run_id": pl.String,
                    "git_sha": pl.String,
                    "service_version": pl.String,
                    "summary": pl.String,
                    "confidence": pl.String,
                    "action": pl.String,
                }
            ),
            written_by="nightly.find",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "triage",
            "Findings and change points a person marked expected or invalid: they stop "
            "alerting, an expected step rebaselines its combination.",
            pl.Schema(
                {
                    "finding_id": pl.String,
                    "kind": pl.String,
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "run_id": pl.String,
                    "started_at": TS,  # the run's: an expected step rebaselines from it
                    # The finding's severity when marked: a worse one is news again.
                    "severity": pl.String,
                    "mark": pl.String,  # expected | invalid
                    "note": pl.String,
                    "marked_by": pl.String,
                    "marked_at": TS,
                }
            ),
            written_by="stages.triage",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "latency_sketches",
            "Mergeable latency sketches per run x endpoint x minute.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "endpoint": pl.String,
                    "minute": TS,
                    "bucket": pl.Int32,  # DDSketch bucket index at 1 % relative accuracy
                    "count": pl.Int64,
                }
            ),
            written_by="ci.summarise",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "run_baselines",
            "The runs each run is compared with, in order, and the ingest of each that was "
            "compared (a baseline run ingested again since leaves the verdicts stale).",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "baseline_run_id": pl.String,
                    "position": pl.Int32,
                    # The baseline run's runs.ingested_at when it was chosen (null: chosen by
                    # a version that did not record it).
                    "baseline_ingested_at": TS,
                }
            ),
            written_by="ci.choose_baseline",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "runs",
            "The catalog: one row per run, its manifest, validity and why.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "started_at": TS,
                    "finished_at": TS,
                    "tool": pl.String,
                    "service_version": pl.String,
                    "git_sha": pl.String,
                    "baseline": pl.String,
                    "ingested_at": TS,
                    "valid": pl.Boolean,
                    "invalid_reason": pl.String,
                    "upload_version": pl.String,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "upload_versions",
            "Every upload of a run that was ingested: its version (a digest of the objects' "
            "keys, ETags and sizes), who uploaded it, when, and its files.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "version": pl.String,
                    "uploaded_by": pl.String,
                    "uploaded_at": TS,  # the newest object's last-modified time
                    "files": pl.String,  # JSON: [{"name", "size"}]
                    "file_count": pl.Int64,
                    "bytes": pl.Int64,
                    "ingested_at": TS,
                }
            ),
            written_by="ci.ingest",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "sla_evaluations",
            "One run against the KPI catalog: one row per KPI x endpoint.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "kpi": pl.String,  # catalog entry name, e.g. latency_p95
                    "endpoint": pl.String,  # "(all)" for run-level KPIs
                    "metric": pl.String,
                    "unit": pl.String,
                    "direction": pl.String,  # lower_is_better | higher_is_better
                    "target": pl.Float64,
                    "alert_threshold": pl.Float64,
                    "objective_pct": pl.Float64,  # share of intervals that must meet the target
                    "observed": pl.Float64,
                    "intervals": pl.Int32,  # how many intervals compliance_pct is over
                    "compliance_pct": pl.Float64,  # share of intervals meeting the target, 0-100
                    "error_budget_remaining": pl.Float64,  # budget fraction left, <0 when blown
                    "status": pl.String,  # met | missed | breached | no_data
                    "severity": pl.String,  # critical | warning | info
                    "evaluated_at": pl.Datetime("us", "UTC"),
                }
            ),
            written_by="ci.evaluate_slas",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "sla_windows",
            "Rolling-window SLA compliance per combination (rewritten at each evaluation).",
            pl.Schema(
                {
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "kpi": pl.String,
                    "endpoint": pl.String,
                    "window_days": pl.Int32,
                    "runs": pl.Int32,
                    "breaches": pl.Int32,
                    "compliance_pct": pl.Float64,
                    "error_budget_remaining": pl.Float64,
                    "evaluated_at": pl.Datetime("us", "UTC"),
                }
            ),
            written_by="ci.evaluate_slas",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "capacity",
            "Per run whose load varies (stepped or ramping test): the Universal Scalability Law "
            "fitted to (concurrency, throughput) per time window, the peak throughput and the "
            "load at the peak with intervals, or a lower bound when the peak lies outside the "
            "tested loads; the load at which p95 crosses its SLA; or why there is no fit.",
            pl.Schema(
                {
                    "run_id": pl.String,
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "status": pl.String,  # peak | lower_bound | no_fit
                    "reason": pl.String,  # why a bound or no fit; null for a peak
                    "summary": pl.String,  # one sentence for reports
                    # concurrency: mean requests in flight per window, by Little's law
                    "load_measure": pl.String,
                    "source": pl.String,  # requests | interval_stats
                    "window_s": pl.Float64,
                    "n_windows": pl.Int64,
                    "load_min": pl.Float64,  # the tested range
                    "load_max": pl.Float64,
                    "model": pl.String,  # usl | amdahl (kappa = 0 by the F test)
                    "usl_lambda": pl.Float64,  # requests/s per unit of load, no contention
                    "usl_sigma": pl.Float64,
                    "usl_kappa": pl.Float64,
                    "kappa_p_value": pl.Float64,
                    "r_squared": pl.Float64,
                    # True: the peak lies outside the tested loads, peak_rps_low is a lower bound
                    # and the point estimates are null.
                    "peak_is_bound": pl.Boolean,
                    "peak_rps": pl.Float64,  # successful requests/s at the peak
                    "peak_rps_low": pl.Float64,
                    "peak_rps_high": pl.Float64,  # null: not bounded above by the data
                    "peak_load": pl.Float64,
                    "peak_load_low": pl.Float64,
                    "peak_load_high": pl.Float64,
                    "confidence": pl.Float64,  # of the intervals and the bound
                    "sla_kpi": pl.String,  # the latency_p95 catalog entry crossed first
                    "sla_endpoint": pl.String,
                    "sla_target_ms": pl.Float64,
                    # crossed | not_reached | above_at_lowest_load | no_sla | no_data
                    "sla_status": pl.String,
                    "sla_load": pl.Float64,  # interpolated between tested loads, or null
                }
            ),
            written_by="capacity.fit_run",
            partitioning="run",
            retention="aggregate",
        ),
        Table(
            "alerts",
            "One row per alert, whatever its age: open -> acknowledged -> resolved.",
            pl.Schema(
                {
                    "alert_id": pl.String,  # stable fingerprint of what the alert is about
                    "kind": pl.String,  # regression, sla_breach, missing_run, missing_metric...
                    "severity": pl.String,  # critical | warning | info
                    "status": pl.String,  # open | acknowledged | resolved
                    "suite": pl.String,
                    "scenario": pl.String,
                    "environment": pl.String,
                    "endpoint": pl.String,
                    "metric": pl.String,
                    "first_run_id": pl.String,
                    "last_run_id": pl.String,
                    "summary": pl.String,
                    "details": pl.String,  # JSON
                    "evaluations": pl.Int32,
                    "opened_at": pl.Datetime("us", "UTC"),
                    "updated_at": pl.Datetime("us", "UTC"),
                    "acknowledged_at": pl.Datetime("us", "UTC"),
                    "escalated_at": pl.Datetime("us", "UTC"),
                    "resolved_at": pl.Datetime("us", "UTC"),
                    # The latest run (by started_at, then run_id) that evaluated the alert,
                    # found or cleared it: an older run uploaded later leaves the alert alone.
                    "evaluated_run_id": pl.String,
                    "evaluated_run_started_at": pl.Datetime("us", "UTC"),
                    # The channels told it opened (comma-separated): its "resolved" goes to
                    # them all, whatever its severity routes to by then.
                    "notified": pl.String,
                }
            ),
            written_by="alerts.service",
            partitioning="snapshot",
            retention="kept",
        ),
        Table(
            "alert_deliveries",
            "The outbox: every notification owed to a channel, kept until delivered.",
            pl.Schema(
                {
                    "delivery_id": pl.String,
                    "alert_id": pl.String,
                    "channel": pl.String,
                    "event": pl.String,  # opened | escalated | resolved
                    "payload": pl.String,  # JSON body as sent
                    "attempts": pl.Int32,
                    # When it was owed: an alert's notifications to a channel go in this order.
                    "queued_at": pl.Datetime("us", "UTC"),
                    "next_attempt_at": pl.Datetime("us", "UTC"),
                    "delivered_at": pl.Datetime("us", "UTC"),
                    "last_error": pl.String,
                }
            ),
            written_by="alerts.service",
            partitioning="snapshot",
            retention="kept",
        ),
    )
}

# Views of the declarations above, for the code that needs one aspect.
SCHEMAS: dict[str, pl.Schema] = {name: table.schema for name, table in TABLES.items()}
SNAPSHOT_TABLES = frozenset(t.name for t in TABLES.values() if t.partitioning == "snapshot")
CANONICAL_TABLES = tuple(t.name for t in TABLES.values() if t.canonical)
# The partitions one ingest of a run replaces together (its ``runs`` row included).
INGESTED_TABLES = tuple(t.name for t in TABLES.values() if t.written_by == "ci.ingest")
# The partitions later steps derive from a run's ingested rows (summary, baselines, verdicts,
# SLAs, capacity): an ingest empties them, so a new version that fails validation (whose steps
# then do not run) leaves none of the old version's results behind.
DERIVED_RUN_TABLES = tuple(
    t.name for t in TABLES.values() if t.partitioning == "run" and t.written_by != "ci.ingest"
)


def tables_with(retention: RetentionClass) -> tuple[str, ...]:
    """The per-run tables of a retention class."""
    return tuple(
        t.name for t in TABLES.values() if t.retention == retention and t.partitioning == "run"
    )


RAW_EXCERPT_BYTES = 4096


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


# PostgreSQL text cannot hold NUL: it is replaced in every store alike, so Parquet and the
# Postgres mirror keep the same rows (an endpoint with NUL used to fail the mirror forever).
NUL_REPLACEMENT = "\ufffd"


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Cast ``frame`` to the table's schema, adding absent columns as nulls, in schema order;
    NUL in text becomes U+FFFD."""
    schema = SCHEMAS[table]
    # with_columns broadcasts the null literals to the frame's height (select would not).
    missing = [
        pl.lit(None, dtype).alias(n) for n, dtype in schema.items() if n not in frame.columns
    ]
    frame = frame.with_columns(missing).select(
        [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    )
    # Looking for NUL is a byte search, replacing it rewrites every string of the column, and
    # rows are conformed two or three times on their way into a partition: replace where found.
    with_nul = [
        name
        for name, dtype in schema.items()
        if dtype == pl.String and frame[name].str.contains("\x00", literal=True).any()
    ]
    if not with_nul:
        return frame
    return frame.with_columns(
        pl.col(name).str.replace_all("\x00", NUL_REPLACEMENT, literal=True) for name in with_nul
    )
