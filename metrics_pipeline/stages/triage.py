"""Triage as a step: list the findings with their marks, mark one (or an alert), measure the
detector.

The ``triage`` snapshot is read, changed and rewritten under the warehouse's lock on it, so
two people marking at once both keep their mark.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from metrics_pipeline.alerts.config import AlertingConfig
from metrics_pipeline.alerts.lifecycle import find_alert, resolve, resolved_notifications
from metrics_pipeline.alerts.service import locked
from metrics_pipeline.analysis.triage import (
    KEY,
    mark,
    precision_by_month,
    standing_steps,
    unmarked,
    with_ids,
    with_marks,
)
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.storage import Warehouse

# Held while the triage snapshot is read, changed and written (and while rebuild copies it).
TRIAGE_LOCK = "snapshot=triage-marks"


class FindingNotFound(MetricsPipelineError, LookupError):
    """No current finding has this id."""


def findings_with_marks(warehouse: Warehouse, findings: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every current finding (``findings`` when the caller has just computed them) with its
    id and its mark (null: not triaged)."""
    if findings is None:
        findings = warehouse.read("findings")
    return with_marks(findings, *_marking(warehouse))


def unmarked_findings(warehouse: Warehouse) -> pl.DataFrame:
    """The current findings no mark covers: those that alert."""
    return unmarked(warehouse.read("findings"), *_marking(warehouse))


def standing_change_points(warehouse: Warehouse) -> pl.DataFrame:
    """The stored change points but those a person marked invalid (``standing_steps``)."""
    return _marking(warehouse)[2]


def _marking(warehouse: Warehouse) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """What decides the marks of findings, each table read once: the marks, the catalog and
    the standing change points."""
    triage, runs = warehouse.read("triage"), warehouse.read("runs")
    return triage, runs, standing_steps(warehouse.read("change_points"), triage, runs)


def mark_finding(
    warehouse: Warehouse,
    finding_id: str,
    verdict: str,
    *,
    note: str | None,
    marked_by: str,
    now: datetime,
) -> dict:
    """Mark the current finding ``finding_id`` ``expected`` or ``invalid``; the marked row."""
    found = with_ids(warehouse.read("findings")).filter(pl.col("finding_id") == finding_id)
    if found.height == 0:
        raise FindingNotFound(
            f"no current finding has the id {finding_id!r} (metrics-pipeline triage list)"
        )
    finding = found.row(0, named=True)
    triage = _record(
        warehouse,
        finding,
        verdict,
        note=note,
        marked_by=marked_by,
        now=now,
        started_at=_started_at(warehouse, finding["run_id"]),
    )
    return triage.filter(pl.col("finding_id") == finding_id).row(0, named=True)


def _started_at(warehouse: Warehouse, run_id: str | None) -> datetime | None:
    if run_id is None:  # an alert about no run (one that did not come, a failed job)
        return None
    runs = warehouse.read("runs").filter(pl.col("run_id") == run_id)
    return runs["started_at"][0] if runs.height else None


def _record(warehouse: Warehouse, condition: dict, verdict: str, **details) -> pl.DataFrame:
    """Add the mark of ``condition`` to ``triage`` (read, changed and written under its lock);
    the new table."""
    with warehouse.lock(TRIAGE_LOCK):
        triage = mark(warehouse.read("triage"), condition, verdict, **details)
        warehouse.write_snapshot("triage", triage)
    return triage


def mark_alert(
    warehouse: Warehouse,
    alert_id: str,
    verdict: str,
    *,
    note: str | None,
    marked_by: str,
    now: datetime,
    config: AlertingConfig | None = None,
) -> dict:
    """Mark the alert whose id starts with ``alert_id`` ``expected`` or ``invalid`` and
    resolve it; returns the alert's row.

    The mark names the alert's condition from its first run on: the runs up to now no longer
    raise it, and an ``expected`` regression rebaselines its combination (see
    :mod:`metrics_pipeline.analysis.triage`). With the alerting ``config``, an active alert's
    ``resolved`` notifications are queued in the outbox for the channels told it opened
    (``alert_delivery_sensor`` or ``alerts deliver`` sends them).
    """
    with locked(warehouse):
        alerts = warehouse.read("alerts")
        row = find_alert(alerts, alert_id)
        active = row["status"] != "resolved"
        _record(
            warehouse,
            {k: row.get(k) for k in KEY}
            | {"run_id": row["first_run_id"], "severity": row["severity"]},
            verdict,
            note=note,
            marked_by=marked_by,
            now=now,
            started_at=_started_at(warehouse, row["first_run_id"]) or row["opened_at"],
        )
        alerts, row = resolve(alerts, row["alert_id"], now)
        warehouse.write_snapshot("alerts", alerts)
        if config is not None and active:
            owed = resolved_notifications(row, now, config)
            if owed.height:
                outbox = warehouse.read("alert_deliveries")
                warehouse.write_snapshot("alert_deliveries", pl.concat([outbox, owed]))
    warehouse.refresh_catalog()
    return row | {"mark": verdict}


def precision(warehouse: Warehouse) -> pl.DataFrame:
    """The detector's precision per month, from the marks."""
    return precision_by_month(warehouse.read("triage"))
