"""Outputs group: the report of every run (after its verdict) and of every week.

Each report has four layers written under the reports folder and to ``reports/`` in the bucket:
``summary.md`` (executive summary, also shown in the UI), ``report.html`` (technical deep-dive,
works offline), ``report.pdf`` (paginated, contents with page numbers) and ``raw.jsonl``.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl
from pydantic import Field

from assets.analysis import VERDICTS
from assets.history import FORECASTS
from metrics_pipeline.ingest import RunNotFoundError, load_manifest
from metrics_pipeline.models import ManifestError
from metrics_pipeline.partitions import runs_partitions
from metrics_pipeline.reports import (
    PublishedReport,
    Week,
    default_week,
    executive_summary,
    gather_run,
    gather_week,
    publish,
    raw_tables,
    render_html,
    render_pdf,
    report_folder,
    run_document,
    weekly_document,
    weekly_raw,
    weekly_summary,
)
from metrics_pipeline.resources import ObjectStore, ReportsResource, WarehouseResource

RUN_REPORT = dg.AssetKey(["reports", "run_report"])
WEEKLY_REPORT = dg.AssetKey(["reports", "weekly_report"])
# The SLA evaluation of the run, when the deployment has one: the report states its status.
SLA = dg.AssetKey(["analysis", "sla"])


def _metadata(summary: str, published: PublishedReport) -> dict:
    return {
        "summary": dg.MetadataValue.md(summary),
        **{name: dg.MetadataValue.path(str(path)) for name, path in published.paths.items()},
        "bucket_prefix": next(iter(published.keys.values()), "").rsplit("/", 1)[0],
    }


@dg.asset(
    key=RUN_REPORT,
    deps=[VERDICTS, SLA],
    partitions_def=runs_partitions,
    group_name="outputs",
    kinds={"html", "pdf", "markdown"},
    description="The run's report: executive summary (Markdown), technical deep-dive (HTML), "
    "paginated PDF and raw rows (JSONL), in the reports folder and the bucket.",
)
def run_report(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    object_store: ObjectStore,
    reports: ReportsResource,
) -> dg.MaterializeResult:
    run_id = context.partition_key
    store = warehouse.get()
    try:
        tags = load_manifest(object_store, run_id)[1].tags
    except (RunNotFoundError, ManifestError):
        tags = {}  # a run ingested from local files has no manifest in the bucket
    data = gather_run(store, run_id, tags)
    summary = executive_summary(data)
    document = run_document(data)
    published = publish(
        reports.path(),
        report_folder("runs", run_id),
        {
            "summary.md": summary.encode(),
            "report.html": render_html(document).encode(),
            "report.pdf": render_pdf(document),
        },
        raw_tables(store, run_id),
        object_store,
    )
    return dg.MaterializeResult(metadata={"verdict": data.verdict, **_metadata(summary, published)})


class WeeklyReportConfig(dg.Config):
    week: str = Field(
        default="",
        description="ISO week to report, e.g. 2026-W45. Empty: the latest week with runs that "
        "has ended.",
    )


@dg.asset(
    key=WEEKLY_REPORT,
    deps=[FORECASTS],
    group_name="outputs",
    kinds={"html", "pdf", "markdown"},
    description="The week's report: KPIs week over week, regressions opened and fixed, "
    "capacity forecasts with their intervals; the same four layers as a run's report.",
)
def weekly_report(
    config: WeeklyReportConfig,
    warehouse: WarehouseResource,
    object_store: ObjectStore,
    reports: ReportsResource,
) -> dg.MaterializeResult:
    store = warehouse.get()
    week = (
        Week.parse(config.week)
        if config.week
        else default_week(
            store.read("runs").filter(pl.col("valid"))["started_at"], datetime.now(UTC)
        )
    )
    data = gather_week(store, week)
    summary = weekly_summary(data)
    document = weekly_document(data)
    published = publish(
        reports.path(),
        report_folder("weekly", str(week)),
        {
            "summary.md": summary.encode(),
            "report.html": render_html(document).encode(),
            "report.pdf": render_pdf(document),
        },
        weekly_raw(data),
        object_store,
    )
    return dg.MaterializeResult(
        metadata={"week": str(week), "runs": data.this_week.height, **_metadata(summary, published)}
    )
