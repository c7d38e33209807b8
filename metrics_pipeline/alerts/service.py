"""Alerts in the warehouse: read the state, apply an evaluation, deliver, write back.

The ``alerts`` and ``alert_deliveries`` snapshots are read, changed and rewritten under a file
lock in the warehouse folder: CI-stage runs of several partitions, the nightly job and the
delivery sensor may all evaluate at once, and a lost update would lose an alert.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from metrics_pipeline.alerts.config import AlertingConfig
from metrics_pipeline.alerts.delivery import Sender, deliver, pending, prune_delivered
from metrics_pipeline.alerts.lifecycle import Signals, acknowledge, evaluate_alerts, withdraw
from metrics_pipeline.common.severity import severity_rank
from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import SCHEMAS, empty
from metrics_pipeline.storage import Warehouse

ALERTS_LOCK = "alerts"


@dataclass
class Outcome:
    alerts: pl.DataFrame
    new_deliveries: pl.DataFrame
    outbox: pl.DataFrame

    @property
    def pending(self) -> pl.DataFrame:
        return pending(self.outbox)


def locked(warehouse: Warehouse) -> AbstractContextManager[None]:
    """The alerts' lock: one evaluation at a time reads, changes and writes the alerts and the
    outbox (across hosts when the warehouse has a Postgres mirror)."""
    return warehouse.lock(ALERTS_LOCK)


def _write_if_changed(warehouse: Warehouse, table: str, before: pl.DataFrame, after: pl.DataFrame):
    columns = list(SCHEMAS[table].names())
    key = columns[0]
    if not before.sort(key).select(columns).equals(after.sort(key).select(columns)):
        warehouse.write_snapshot(table, after)


def process(
    warehouse: Warehouse,
    config: AlertingConfig,
    signals: Signals,
    now: datetime,
    senders: dict[str, Sender],
    *,
    notify: bool = True,
    deliver_now: bool = True,
) -> Outcome:
    """Apply ``signals`` to the stored alerts, queue the notifications they owe, deliver
    everything due (including earlier failures), and store both tables.

    With ``notify`` false (a rebuild recomputing history) only the alerts change: what the
    evaluation would notify is not queued, and nothing is delivered. With ``deliver_now``
    false the notifications are queued for the next delivery pass (``alert_delivery_sensor``,
    every minute): a caller that must not wait on receivers (the upload sensor).
    """
    return _apply(
        warehouse,
        lambda current: evaluate_alerts(current, signals, now, config),
        config,
        now,
        senders,
        notify=notify,
        deliver_now=deliver_now,
    )


def withdraw_run(
    warehouse: Warehouse,
    config: AlertingConfig,
    run_id: str,
    now: datetime,
    senders: dict[str, Sender],
    *,
    notify: bool = True,
) -> Outcome:
    """Resolve the alerts only ``run_id`` showed (``lifecycle.withdraw``), queue and deliver
    as :func:`process` does."""
    return _apply(
        warehouse,
        lambda current: withdraw(current, run_id, now, config),
        config,
        now,
        senders,
        notify=notify,
    )


def _apply(
    warehouse: Warehouse,
    change: Callable[[pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]],
    config: AlertingConfig,
    now: datetime,
    senders: dict[str, Sender],
    *,
    notify: bool,
    deliver_now: bool = True,
) -> Outcome:
    with locked(warehouse):
        current = warehouse.read("alerts")
        outbox_before = warehouse.read("alert_deliveries")
        alerts, new = change(current)
        if not notify:
            # The past's notifications went out (or wait in the outbox a rebuild carries
            # over) when it happened: telling them again now would be news about old runs.
            _write_if_changed(warehouse, "alerts", current, alerts)
            return Outcome(alerts, empty("alert_deliveries"), outbox_before)
        outbox = pl.concat([outbox_before, new])
        if deliver_now:
            outbox = prune_delivered(deliver(outbox, senders, now, config.retry), now)
        _write_if_changed(warehouse, "alerts", current, alerts)
        _write_if_changed(warehouse, "alert_deliveries", outbox_before, outbox)
    return Outcome(alerts, new, outbox)


def acknowledge_alert(warehouse: Warehouse, alert_id: str, now: datetime) -> dict:
    """Acknowledge the alert whose id starts with ``alert_id``; returns its row."""
    with locked(warehouse):
        alerts, row = acknowledge(warehouse.read("alerts"), alert_id, now)
        warehouse.write_snapshot("alerts", alerts)
    return row


def alerts_markdown(alerts: pl.DataFrame, outbox: pl.DataFrame, limit: int = 50) -> str:
    """Active alerts (most severe first) with their delivery state, for the UI."""
    active = alerts.filter(pl.col("status") != "resolved").sort(severity_rank(), "opened_at")
    waiting = pending(outbox).group_by("alert_id").agg(pl.col("channel").unique().sort())
    lines = [
        "| id | severity | kind | status | summary | runs | waiting for |",
        "|---|---|---|---|---|---:|---|",
    ]
    for row in active.join(waiting, on="alert_id", how="left").head(limit).iter_rows(named=True):
        lines.append(
            f"| {row['alert_id']} | {row['severity']} | {row['kind']} | {row['status']} "
            f"| {md(row['summary'])} | {row['evaluations']} | {', '.join(row['channel'] or [])} |"
        )
    if active.height > limit:
        lines.append(f"\n... and {active.height - limit} more active alerts")
    return "\n".join(lines) if active.height else "No active alerts."
