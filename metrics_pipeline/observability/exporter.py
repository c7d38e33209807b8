"""Prometheus exposition of the pipeline's findings, read from the warehouse at every scrape.

The collector reads only small tables (the run catalog, the latest runs' verdicts and SLA
evaluations, the SLA windows and the alert snapshot), so a scrape stays cheap however many
requests the warehouse holds. Per-endpoint series carry suite, scenario, environment, endpoint
and metric but never a run id: one series per combination, overwritten by each new run. Which
run that is says ``metrics_pipeline_latest_run_info`` (one series per combination).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIServer

import polars as pl
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metrics_pipeline.common.severity import change_severity, severity_rank
from metrics_pipeline.contracts.tables import empty
from metrics_pipeline.storage import Warehouse

PREFIX = "metrics_pipeline"
COMBINATION = ("suite", "scenario", "environment")
VERDICT_LABELS = (*COMBINATION, "endpoint", "metric")
SLA_LABELS = (*COMBINATION, "kpi", "endpoint")
OPEN_STATUSES = ("open", "acknowledged")


@dataclass(frozen=True)
class Snapshot:
    """What one scrape reads: the run catalog and the latest runs' rows of each table."""

    runs: pl.DataFrame
    latest_runs: pl.DataFrame  # one row per combination: its most recent valid run
    verdicts: pl.DataFrame  # of the latest runs only
    sla_evaluations: pl.DataFrame  # of the latest runs only
    sla_windows: pl.DataFrame
    alerts: pl.DataFrame
    # Triage marks of findings and alerts (expected / invalid).
    triage: pl.DataFrame = field(default_factory=lambda: empty("triage"))


def latest_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """The most recent run of every suite x scenario x environment that was not judged invalid
    (an invalid run gets no verdict, so the previous one still stands)."""
    return (
        runs.filter(pl.col("valid").fill_null(False))
        .sort("started_at", "run_id")
        .group_by(COMBINATION, maintain_order=True)
        .last()
    )


def read_snapshot(warehouse: Warehouse) -> Snapshot:
    """Read what the metrics need; per-run tables only for each combination's latest run."""
    runs = warehouse.read("runs")
    latest = latest_runs(runs)
    run_ids = latest["run_id"].to_list()
    return Snapshot(
        runs=runs,
        latest_runs=latest,
        verdicts=warehouse.read("verdicts", run_ids) if run_ids else empty("verdicts"),
        sla_evaluations=(
            warehouse.read("sla_evaluations", run_ids) if run_ids else empty("sla_evaluations")
        ),
        sla_windows=warehouse.read("sla_windows"),
        alerts=warehouse.read("alerts"),
        triage=warehouse.read("triage"),
    )


def _gauge(name: str, documentation: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def _label_values(row: dict, labels: Iterable[str]) -> list[str]:
    # Prometheus labels are strings; an absent value is the empty string, as PromQL reads it.
    return ["" if row[label] is None else str(row[label]) for label in labels]


def open_regressions(snapshot: Snapshot) -> pl.DataFrame:
    """Open regressions per combination and severity: from the alerts when the alerting stage
    has written any, else from the latest runs' verdicts (one per regressed endpoint)."""
    keys = [*COMBINATION, "severity"]
    if snapshot.alerts.height:
        return (
            snapshot.alerts.filter(
                (pl.col("kind") == "regression") & pl.col("status").is_in(OPEN_STATUSES)
            )
            .group_by(keys)
            .agg(pl.len().alias("count"))
        )
    regressed = snapshot.verdicts.filter(pl.col("regression").fill_null(False)).join(
        snapshot.latest_runs.select("run_id", *COMBINATION), on="run_id"
    )
    # Each endpoint at its worst metric's severity (an error rate's change is in points).
    severities = [change_severity(c, m) for c, m in regressed.select("change", "metric").rows()]
    worst = (
        regressed.with_columns(severity=pl.Series(severities, dtype=pl.String))
        .group_by(*COMBINATION, "endpoint")
        .agg(pl.col("severity").sort_by(severity_rank()).first())
    )
    return worst.group_by(keys).agg(pl.len().alias("count"))


def pipeline_metrics(snapshot: Snapshot, now: datetime) -> list[Metric]:
    """The findings as metric families (pure: the same snapshot gives the same samples)."""
    info = _gauge(
        "latest_run_info",
        "The run the per-endpoint series of a combination describe (always 1).",
        (*COMBINATION, "run_id", "service_version"),
    )
    for row in snapshot.latest_runs.iter_rows(named=True):
        info.add_metric(_label_values(row, (*COMBINATION, "run_id", "service_version")), 1)

    change = _gauge(
        "verdict_change_ratio",
        "Change of the latest run against its baseline, + = worse: relative (+0.25 = 25 % "
        "worse), for error rates in rate points (+0.02 = 2 percentage points worse).",
        VERDICT_LABELS,
    )
    regression = _gauge(
        "verdict_regression",
        "1 when the latest run's verdict for the endpoint and metric is a regression.",
        VERDICT_LABELS,
    )
    verdicts = snapshot.verdicts.join(
        snapshot.latest_runs.select("run_id", *COMBINATION), on="run_id"
    )
    for row in verdicts.iter_rows(named=True):
        labels = _label_values(row, VERDICT_LABELS)
        # An untested row's change (a p99 of a few hundred requests moves 20-100 % between
        # identical runs) would lead a dashboard's max; a suspect one is meant to be seen.
        tested = row["p_value"] is not None and not math.isnan(row["p_value"])
        if row["change"] is not None and (tested or row["verdict"] == "suspect"):
            change.add_metric(labels, row["change"])
        regression.add_metric(labels, float(bool(row["regression"])))

    compliance = _gauge(
        "sla_compliance_percent",
        "Share of the latest run's intervals meeting the SLA target (0-100).",
        SLA_LABELS,
    )
    budget = _gauge(
        "sla_error_budget_remaining_ratio",
        "Fraction of the latest run's error budget left (below 0 when blown).",
        SLA_LABELS,
    )
    breached = _gauge(
        "sla_breached",
        "1 when the latest run breached the SLA's alert threshold.",
        (*SLA_LABELS, "severity"),
    )
    for row in snapshot.sla_evaluations.iter_rows(named=True):
        labels = _label_values(row, SLA_LABELS)
        if row["compliance_pct"] is not None:
            compliance.add_metric(labels, row["compliance_pct"])
        if row["error_budget_remaining"] is not None:
            budget.add_metric(labels, row["error_budget_remaining"])
        breached.add_metric(
            _label_values(row, (*SLA_LABELS, "severity")), float(row["status"] == "breached")
        )

    window_labels = (*SLA_LABELS, "window_days")
    window_compliance = _gauge(
        "sla_window_compliance_percent",
        "SLA compliance over the rolling window: share of the window's intervals (of all its "
        "runs) that met the target (0-100), as of the last run or nightly job.",
        window_labels,
    )
    window_budget = _gauge(
        "sla_window_error_budget_remaining_ratio",
        "Fraction of the rolling window's error budget left (below 0 when blown).",
        window_labels,
    )
    for row in snapshot.sla_windows.iter_rows(named=True):
        labels = _label_values(row, window_labels)
        if row["compliance_pct"] is not None:
            window_compliance.add_metric(labels, row["compliance_pct"])
        if row["error_budget_remaining"] is not None:
            window_budget.add_metric(labels, row["error_budget_remaining"])

    alerts = _gauge(
        "open_alerts", "Alerts open or acknowledged, by kind and severity.", ("kind", "severity")
    )
    counts = (
        snapshot.alerts.filter(pl.col("status").is_in(OPEN_STATUSES))
        .group_by("kind", "severity")
        .agg(pl.len().alias("count"))
        .sort("kind", "severity")
    )
    for row in counts.iter_rows(named=True):
        alerts.add_metric(_label_values(row, ("kind", "severity")), row["count"])

    regressions = _gauge(
        "open_regressions",
        "Open regressions (regressed endpoints) per combination and severity.",
        (*COMBINATION, "severity"),
    )
    for row in open_regressions(snapshot).sort(*COMBINATION, "severity").iter_rows(named=True):
        regressions.add_metric(_label_values(row, (*COMBINATION, "severity")), row["count"])

    marks = _gauge(
        "triage_marks",
        "Findings and alerts a person marked, by kind and mark (expected: a real change; "
        "invalid: a false alarm).",
        ("kind", "mark"),
    )
    marked = (
        snapshot.triage.group_by("kind", "mark").agg(pl.len().alias("count")).sort("kind", "mark")
    )
    for row in marked.iter_rows(named=True):
        marks.add_metric(_label_values(row, ("kind", "mark")), row["count"])

    lag = _gauge("ingest_lag_seconds", "Time since the suite's last run was ingested.", ("suite",))
    last_ingest = (
        snapshot.runs.group_by("suite").agg(pl.col("ingested_at").max()).drop_nulls().sort("suite")
    )
    for row in last_ingest.iter_rows(named=True):
        lag.add_metric([row["suite"]], (now - row["ingested_at"]).total_seconds())

    return [
        info,
        change,
        regression,
        compliance,
        budget,
        breached,
        window_compliance,
        window_budget,
        alerts,
        regressions,
        marks,
        lag,
    ]


class WarehouseCollector(Collector):
    """Reads the warehouse on every scrape; a failed read is reported, never raised, so
    Prometheus keeps getting the exporter's own health."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.errors = 0
        self.last_success: float | None = None
        # Scrapes may overlap (one thread per request): the health state is shared.
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            families = pipeline_metrics(read_snapshot(self.warehouse), datetime.now(UTC))
            up = 1.0
            with self._lock:
                self.last_success = time.time()
        except Exception:
            families, up = [], 0.0
            with self._lock:
                self.errors += 1
        yield from families
        yield from self._health(up, time.perf_counter() - started)

    def _health(self, up: float, duration: float) -> Iterator[Metric]:
        with self._lock:
            errors, last_success = self.errors, self.last_success
        yield _single(f"{PREFIX}_exporter_up", "1 when the last warehouse read succeeded.", up)
        yield _single(
            f"{PREFIX}_exporter_scrape_duration_seconds",
            "Time this scrape spent reading the warehouse.",
            duration,
        )
        if last_success is not None:
            yield _single(
                f"{PREFIX}_exporter_last_success_timestamp_seconds",
                "When the warehouse was last read successfully (Unix time).",
                last_success,
            )
        yield CounterMetricFamily(
            f"{PREFIX}_exporter_errors",
            "Warehouse reads that failed since the exporter started.",
            value=errors,
        )


def _single(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def registry_for(warehouse: Warehouse) -> CollectorRegistry:
    """A registry with only the warehouse collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WarehouseCollector(warehouse))
    return registry


def serve(warehouse: Warehouse, port: int, addr: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread; ``server.shutdown()`` stops it."""
    return start_http_server(port, addr=addr, registry=registry_for(warehouse))
