"""Reports in four layers, per run and per week.

1. ``summary.md``: the executive summary (verdict, SLA status, top regressions and
   improvements, one paragraph to act on);
2. ``report.html``: the technical deep-dive with interactive charts, fully offline;
3. ``report.pdf``: the same content paginated, with contents and page numbers;
4. ``raw.jsonl``: the rows behind it, one JSON object per line tagged with its table.
"""

from metrics_pipeline.reports.output import (
    FILES,
    PublishedReport,
    publish,
    report_folder,
    write_jsonl,
)
from metrics_pipeline.reports.render import ReportRenderError, render_html, render_pdf
from metrics_pipeline.reports.run import (
    ReportInputError,
    RunData,
    executive_summary,
    gather_run,
    raw_tables,
    run_document,
)
from metrics_pipeline.reports.weekly import (
    Week,
    WeeklyData,
    default_week,
    gather_week,
    weekly_document,
    weekly_raw,
    weekly_summary,
)

__all__ = [
    "FILES",
    "PublishedReport",
    "ReportInputError",
    "ReportRenderError",
    "RunData",
    "Week",
    "WeeklyData",
    "default_week",
    "executive_summary",
    "gather_run",
    "gather_week",
    "publish",
    "raw_tables",
    "render_html",
    "render_pdf",
    "report_folder",
    "run_document",
    "weekly_document",
    "weekly_raw",
    "weekly_summary",
    "write_jsonl",
]
