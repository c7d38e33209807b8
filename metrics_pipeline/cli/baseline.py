"""``metrics-pipeline baseline``: the version-controlled baseline file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.output import bad_input, command_group, console, fail
from metrics_pipeline.settings import Settings

baseline_app = command_group(
    "The version-controlled baseline file: show it, propose updates, see what changed."
)
BaselineFile = Annotated[
    Path | None,
    typer.Option("--file", help="Baseline YAML (default: METRICS_BASELINES or config/...)."),
]


def _baseline_inputs(file: Path | None, *, must_exist: bool = True):
    """The file (``--file`` or the configured one), its baselines and the warehouse. A file
    named by ``--file`` must exist unless the command writes it (``update``, and ``diff``, its
    preview): showing a mistyped path as "no baselines" would hide the mistake."""
    from metrics_pipeline.analysis.baselines import load_baselines
    from metrics_pipeline.storage import open_warehouse

    if must_exist and file is not None and not file.is_file():
        fail(f"no baselines file {file}")
    settings = Settings.from_env()
    path = file or settings.baselines_file
    with bad_input():
        current = load_baselines(path)
    return path, current, open_warehouse(settings)


def _proposed(warehouse, runs: int):
    from metrics_pipeline.analysis.baselines import compute_baselines
    from metrics_pipeline.stages.ci import rejected

    return compute_baselines(
        warehouse.read("runs"),
        warehouse.read("run_summary"),
        rejected(warehouse),
        n=runs,
        now=Settings.from_env().clock(),  # METRICS_NOW too, as every stamp the pipeline makes
    )


@baseline_app.command("show")
def baseline_show(file: BaselineFile = None) -> None:
    """Print the baselines in the file."""
    path, current, _ = _baseline_inputs(file)
    table = Table(title=f"baselines in {path}")
    for column in ("suite", "scenario", "env", "endpoint", "metric", "value", "runs", "updated"):
        table.add_column(column)
    for e in current:
        table.add_row(
            e.suite,
            e.scenario,
            e.environment,
            escape(e.endpoint),
            e.metric,
            f"{e.value:.4g}",
            str(len(e.runs)),
            f"{e.updated_at:%Y-%m-%d}",
        )
    console.print(table)


@baseline_app.command("update")
def baseline_update(
    file: BaselineFile = None,
    runs: Annotated[int, typer.Option(help="Accepted runs per combination.")] = 5,
) -> None:
    """Recompute the baselines from the warehouse's accepted runs and write the file."""
    from metrics_pipeline.analysis.baselines import diff_baselines, kept_dates, save_baselines

    path, current, warehouse = _baseline_inputs(file, must_exist=False)
    proposed = kept_dates(current, _proposed(warehouse, runs))
    if not proposed:
        fail("no accepted runs in the warehouse to compute baselines from")
    save_baselines(path, proposed)
    changes = diff_baselines(current, proposed)
    console.print(f"wrote {len(proposed)} baselines to {path} ({len(changes)} changed)")


@baseline_app.command("diff")
def baseline_diff(
    file: BaselineFile = None,
    runs: Annotated[int, typer.Option(help="Accepted runs per combination.")] = 5,
) -> None:
    """Show what `update` would change; exit 1 when something would."""
    from metrics_pipeline.analysis.baselines import diff_baselines

    # A file update would create: its diff is every baseline added.
    path, current, warehouse = _baseline_inputs(file, must_exist=False)
    changes = diff_baselines(current, _proposed(warehouse, runs))
    table = Table(title=f"{path} vs the warehouse now")
    for column in ("combination / endpoint / metric", "file", "now", "change", ""):
        table.add_column(column)
    for c in changes:
        table.add_row(
            escape(c["key"]),
            "-" if c["old"] is None else f"{c['old']:.4g}",
            "-" if c["new"] is None else f"{c['new']:.4g}",
            "-" if c["change"] is None else f"{c['change']:+.1%}",
            c["status"],
        )
    console.print(table if changes else f"{path} is up to date")
    raise typer.Exit(1 if changes else 0)
