"""A report end to end: gather, render the four layers, write them locally and to the bucket.

Shared by the report assets and the ``metrics-pipeline report`` command, so both write the
same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metrics_pipeline.analysis.verdict_rules import VerdictRules
from metrics_pipeline.contracts.manifest import ManifestError
from metrics_pipeline.ingest.files import RunNotFoundError, load_manifest
from metrics_pipeline.reports.output import PublishedReport, publish, report_folder
from metrics_pipeline.reports.render import render_html, render_pdf
from metrics_pipeline.reports.run import executive_summary, gather_run, raw_tables, run_document
from metrics_pipeline.reports.weekly import (
    Week,
    gather_week,
    weekly_document,
    weekly_raw,
    weekly_summary,
)
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import ObjectStore


@dataclass(frozen=True)
class BuiltReport:
    summary: str
    published: PublishedReport
    verdict: str | None = None
    runs: int | None = None


def manifest_tags(store: ObjectStore | None, run_id: str) -> dict[str, str]:
    """The tags of the run's manifest in the bucket; none for a run ingested from local files."""
    if store is None:
        return {}
    try:
        return load_manifest(store, run_id)[1].tags
    except (RunNotFoundError, ManifestError):
        return {}


def build_run_report(
    warehouse: Warehouse,
    run_id: str,
    root: Path,
    store: ObjectStore | None,
    rules: VerdictRules | None = None,
) -> BuiltReport:
    """Write the four layers of ``run_id``'s report under ``root/runs/<run_id>/`` and to the
    bucket (``rules``: the verdict rules the run was judged by); raises ``ReportInputError``
    when the run is not in the warehouse."""
    data = gather_run(warehouse, run_id, manifest_tags(store, run_id), rules)
    summary = executive_summary(data)
    document = run_document(data)
    published = publish(
        root,
        report_folder("runs", run_id),
        {
            "summary.md": summary.encode(),
            "report.html": render_html(document).encode(),
            "report.pdf": render_pdf(document),
        },
        raw_tables(warehouse, run_id),
        store,
    )
    return BuiltReport(summary, published, verdict=data.verdict)


def build_weekly_report(
    warehouse: Warehouse, week: Week, root: Path, store: ObjectStore | None
) -> BuiltReport:
    """Write the four layers of ``week``'s report under ``root/weekly/<week>/`` and to the
    bucket."""
    data = gather_week(warehouse, week)
    summary = weekly_summary(data)
    document = weekly_document(data)
    published = publish(
        root,
        report_folder("weekly", str(week)),
        {
            "summary.md": summary.encode(),
            "report.html": render_html(document).encode(),
            "report.pdf": render_pdf(document),
        },
        weekly_raw(data),
        store,
    )
    return BuiltReport(summary, published, runs=data.this_week.height)
