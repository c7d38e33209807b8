"""SLA evaluation of each run against the KPI catalog, and the alerts that follow from it."""

import dagster as dg
import polars as pl

from assets.analysis import VERDICTS
from assets.history import FINDINGS
from metrics_pipeline.alerts.service import Outcome, alerts_markdown
from metrics_pipeline.alerts.signals import (
    finding_signals,
    missing_run_signals,
)
from metrics_pipeline.analysis.sla import budget_words, evaluations_markdown
from metrics_pipeline.common.text import md
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    ClockResource,
    WarehouseResource,
)
from metrics_pipeline.stages import ci
from metrics_pipeline.stages.triage import unmarked_findings

SLA = dg.AssetKey(["analysis", "sla"])
ALERTS = dg.AssetKey(["alerts", "alerts"])
FINDING_ALERTS = dg.AssetKey(["alerts", "findings"])


@dg.asset(
    key=SLA,
    deps=[VERDICTS],
    partitions_def=runs_partitions,
    group_name="analysis",
    kinds={"polars", "parquet"},
    description="The run against the KPI / SLA catalog: per KPI and endpoint the observed "
    "value, compliance (share of intervals meeting the target), error budget left and status; "
    "then the 7- and 30-day rolling windows of every combination.",
)
def sla(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    result = ci.evaluate_slas(
        warehouse.get(), context.partition_key, alerting.catalog(), now=clock.now()
    )
    table = result.evaluations
    counts = table["status"].value_counts()
    by_status = dict(zip(counts["status"], counts["count"], strict=True))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "breached": by_status.get("breached", 0),
            "missed": by_status.get("missed", 0),
            "met": by_status.get("met", 0),
            "no_data": by_status.get("no_data", 0),
            "catalog": alerting.catalog_path,
            "sla": dg.MetadataValue.md(evaluations_markdown(table)),
            "windows": dg.MetadataValue.md(_windows_markdown(result.windows)),
        }
    )


def _windows_markdown(windows: pl.DataFrame) -> str:
    lines = [
        "| KPI | endpoint | days | runs | breaches | compliance | error budget |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in windows.head(60).iter_rows(named=True):
        lines.append(
            f"| {md(row['kpi'])} | {md(row['endpoint'])} | {row['window_days']} | {row['runs']} "
            f"| {row['breaches']} | {row['compliance_pct']:.1f} % "
            f"| {budget_words(row['error_budget_remaining'])} |"
        )
    if windows.height > 60:
        lines.append(f"\n... and {windows.height - 60} more rows in the sla_windows table")
    return "\n".join(lines) if windows.height else "No evaluated runs in the windows."


def _metadata(outcome: Outcome) -> dict:
    new = outcome.new_deliveries
    return {
        "active": outcome.alerts.filter(pl.col("status") != "resolved").height,
        "notifications_queued": new.height,
        "opened": new.filter(pl.col("event") == "opened")["alert_id"].n_unique(),
        "resolved": new.filter(pl.col("event") == "resolved")["alert_id"].n_unique(),
        "waiting_in_outbox": outcome.pending.height,
        "alerts": dg.MetadataValue.md(alerts_markdown(outcome.alerts, outcome.outbox)),
    }


@dg.asset(
    key=ALERTS,
    deps=[SLA],
    partitions_def=runs_partitions,
    group_name="outputs",
    kinds={"python"},
    description="Alerts from the run: regressions of its verdicts, SLA breaches, endpoints or "
    "metrics its history always had and it lacks (overdue expected runs are judged over all "
    "runs, by alert_delivery_sensor every minute and the nightly job). Opens, updates or "
    "resolves one alert per condition and delivers the notifications (the outbox keeps what "
    "a receiver did not accept).",
)
def alerts(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    config = alerting.config()
    outcome = ci.raise_alerts(
        warehouse.get(),
        context.partition_key,
        config,
        alerting.senders(config),
        now=clock.now(),
        notify=alerting.notify,
    )
    waiting = outcome.pending.filter(pl.col("last_error").is_not_null())
    # A receiver that failed is worth a warning; a channel nobody configured (no attempt was
    # made, the notification waits as "would send") is the expected state of a fresh install.
    for row in waiting.filter(pl.col("attempts") > 0).iter_rows(named=True):
        context.log.warning(
            f"alert {row['alert_id']} not yet sent to {row['channel']}: {row['last_error']}"
        )
    unconfigured = waiting.filter(pl.col("attempts") == 0)
    if unconfigured.height:
        channels = ", ".join(sorted(set(unconfigured["channel"])))
        context.log.info(
            f"{unconfigured.height} notification(s) wait for unconfigured channel(s) {channels}"
        )
    return dg.MaterializeResult(metadata=_metadata(outcome))


@dg.asset(
    key=FINDING_ALERTS,
    deps=[FINDINGS],
    group_name="outputs",
    kinds={"python"},
    description="Alerts from the history analyses: one per finding (change point, drift, "
    "capacity, KPI anomaly) at or above the configured severity, resolved when the finding "
    "goes away; also overdue expected runs. First, the SLA windows as of now (they move on "
    "without runs too).",
)
def finding_alerts(
    warehouse: WarehouseResource, alerting: AlertingResource, clock: ClockResource
) -> dg.MaterializeResult:
    store = warehouse.get()
    # The SLA windows move on with the clock, also on days without runs.
    ci.refresh_sla_windows(store, alerting.catalog(), now=clock.now())
    outcome = alerting.apply(
        store,
        lambda config, now: (
            # Findings a person marked expected or invalid no longer alert (and resolve).
            finding_signals(unmarked_findings(store), config)
            + missing_run_signals(store.read("runs"), config, now, store.read("triage"))
        ),
        clock.now(),
    )
    store.refresh_catalog()
    return dg.MaterializeResult(metadata=_metadata(outcome))
