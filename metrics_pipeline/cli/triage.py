"""``metrics-pipeline triage``: the history's findings with their marks; mark one expected or
invalid; the detector's precision from the marks."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.output import bad_input, command_group, console, fail
from metrics_pipeline.settings import Settings

triage_app = command_group(
    "Triage the history's findings: marked ones stop alerting while they stand; an expected "
    "step of latency or throughput rebaselines its combination."
)


def _warehouse():
    from metrics_pipeline.storage import open_warehouse

    return open_warehouse(Settings.from_env())


@triage_app.command("list")
def list_findings(
    everything: Annotated[
        bool, typer.Option("--all", help="Also the findings already marked.")
    ] = False,
) -> None:
    """The current findings, with the id to mark them by."""
    import polars as pl

    from metrics_pipeline.stages.triage import findings_with_marks

    rows = findings_with_marks(_warehouse())
    if not everything:
        rows = rows.filter(pl.col("mark").is_null())
    table = Table(title=f"{rows.height} finding(s)")
    for column in ("id", "severity", "kind", "summary", "mark"):
        table.add_column(column, overflow="fold")
    for row in rows.iter_rows(named=True):
        table.add_row(
            row["finding_id"],
            row["severity"],
            row["kind"],
            escape(row["summary"] or ""),
            row["mark"] or "",
        )
    console.print(table)


@triage_app.command("mark")
def mark(
    finding_id: Annotated[str, typer.Argument(help="The id `triage list` shows.")],
    verdict: Annotated[str, typer.Argument(help="expected or invalid.")],
    note: Annotated[str | None, typer.Option(help="Why (kept with the mark).")] = None,
) -> None:
    """Mark a finding expected (a real, intended change: an expected step of latency or
    throughput also rebaselines its combination) or invalid (not a real change). Either way it
    stops alerting while it stands (a new or worse one alerts). Exit 2 for an unknown id or
    mark."""
    from metrics_pipeline.analysis.triage import MARKS
    from metrics_pipeline.stages.triage import mark_finding
    from metrics_pipeline.upload.uploader import uploader_identity

    if verdict not in MARKS:
        fail(f"the mark is one of {', '.join(MARKS)}, not {verdict!r}")
    settings = Settings.from_env()
    with bad_input():
        row = mark_finding(
            _warehouse(),
            finding_id,
            verdict,
            note=note,
            marked_by=uploader_identity(),
            now=settings.clock(),
        )
    console.print(f"{row['finding_id']} marked {row['mark']} by {escape(row['marked_by'])}")


@triage_app.command("precision")
def precision() -> None:
    """The detector's precision per month: expected / (expected + invalid) of the marks."""
    from metrics_pipeline.stages.triage import precision as monthly

    table = Table(title="detector precision from the marks")
    for column in ("month", "expected", "invalid", "precision"):
        table.add_column(column)
    for row in monthly(_warehouse()).iter_rows(named=True):
        table.add_row(
            row["month"], str(row["expected"]), str(row["invalid"]), f"{row['precision']:.0%}"
        )
    console.print(table)
