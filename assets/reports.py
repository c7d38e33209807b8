"""Outputs group: the report of every run (after its verdict and alerts) and of every week.

A run's report is the last step of its ``ci_stage`` run: it depends on the run's alerts, so
the verdict is judged and the alerts delivered before the seconds of HTML and PDF rendering
(and the chart and template imports) begin.

Each report has four layers written under the reports folder and to ``reports/`` in the bucket:
``summary.md`` (executive summary, also shown in the UI), ``report.html`` (technical deep-dive,
works offline), ``report.pdf`` (paginated, contents with page numbers) and ``raw.jsonl``.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from assets.alerting import ALERTS
from assets.analysis import VERDICTS
from assets.capacity import CAPACITY
from assets.history import FORECASTS
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import (
    ClockResource,
    ObjectStoreResource,
    ReportsResource,
    VerdictRulesResource,
    WarehouseResource,
    launchpad_input_error,
)

RUN_REPORT = dg.AssetKey(["reports", "run_report"])
WEEKLY_REPORT = dg.AssetKey(["reports", "weekly_report"])
# The SLA evaluation of the run, when the deployment has one: the report states its status.
SLA = dg.AssetKey(["analysis", "sla"])


def report_metadata(summary: str, published) -> dict:
    """What the UI shows of a report: its summary, where its files are (``published``: a
    ``reports.PublishedReport``)."""
    return {
        "summary": dg.MetadataValue.md(summary),
        **{name: dg.MetadataValue.path(str(path)) for name, path in published.paths.items()},
        "bucket_prefix": next(iter(published.keys.values()), "").rsplit("/", 1)[0],
    }


@dg.asset(
    key=RUN_REPORT,
    # After the alerts: the verdict reaches its receivers first, the documents follow. The
    # capacity table is in the report too (a process per step must not render it before).
    deps=[VERDICTS, SLA, ALERTS, CAPACITY],
    partitions_def=runs_partitions,
    group_name="outputs",
    kinds={"html", "pdf", "markdown"},
    description="The run's report: executive summary (Markdown), technical deep-dive (HTML), "
    "paginated PDF and raw rows (JSONL), in the reports folder and the bucket.",
)
def run_report(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    object_store: ObjectStoreResource,
    reports: ReportsResource,
    verdict_rules: VerdictRulesResource,
) -> dg.MaterializeResult:
    # Imported here, not at the top: the code location (the daemon, the webserver, every run's
    # process) loads without the charts and templates (altair, jinja2, WeasyPrint); only this
    # step pays for them.
    from metrics_pipeline.reports.build import build_run_report

    run_id = context.partition_key
    store = warehouse.get()
    report = build_run_report(
        store, run_id, reports.path(), reports.store(object_store), verdict_rules.get()
    )
    return dg.MaterializeResult(
        metadata={"verdict": report.verdict, **report_metadata(report.summary, report.published)}
    )


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
    object_store: ObjectStoreResource,
    reports: ReportsResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    from metrics_pipeline.reports import Week, default_week
    from metrics_pipeline.reports.build import build_weekly_report

    store = warehouse.get()
    try:
        week = (
            Week.parse(config.week)
            if config.week
            else default_week(store.read("runs").filter(pl.col("valid"))["started_at"], clock.now())
        )
    except ValueError as exc:  # a week typed in the Launchpad
        raise launchpad_input_error(exc) from exc
    report = build_weekly_report(store, week, reports.path(), reports.store(object_store))
    return dg.MaterializeResult(
        metadata={
            "week": str(week),
            "runs": report.runs,
            **report_metadata(report.summary, report.published),
        }
    )
