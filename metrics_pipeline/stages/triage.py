"""Triage as a step: list the findings with their marks, mark one, measure the detector.

The ``triage`` snapshot is read, changed and rewritten under the warehouse's lock on it, so
two people marking at once both keep their mark.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from metrics_pipeline.analysis.triage import mark, precision_by_month, with_ids
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.storage import Warehouse


class FindingNotFound(MetricsPipelineError, LookupError):
    """No current finding has this id."""


def findings_with_marks(warehouse: Warehouse, findings: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every current finding (``findings`` when the caller has just computed them) with its
    id and its mark (null: not triaged)."""
    if findings is None:
        findings = warehouse.read("findings")
    marks = warehouse.read("triage").select("finding_id", "mark", "note", "marked_by")
    return with_ids(findings).join(marks, on="finding_id", how="left")


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
    runs = warehouse.read("runs").filter(pl.col("run_id") == finding["run_id"])
    started_at = runs["started_at"][0] if runs.height else None
    with warehouse.lock("snapshot=triage-marks"):
        triage = mark(
            warehouse.read("triage"),
            finding,
            verdict,
            note=note,
            marked_by=marked_by,
            now=now,
            started_at=started_at,
        )
        warehouse.write_snapshot("triage", triage)
    return triage.filter(pl.col("finding_id") == finding_id).row(0, named=True)


def precision(warehouse: Warehouse) -> pl.DataFrame:
    """The detector's precision per month, from the marks."""
    return precision_by_month(warehouse.read("triage"))
