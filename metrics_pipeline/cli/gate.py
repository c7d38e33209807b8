"""The CI gates: ``compare`` two result sets, ``versions`` of the service. Exit 1 on a
regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.output import bad_input, console, err, fail
from metrics_pipeline.formats import read_results
from metrics_pipeline.settings import Settings


def verdict_table(verdicts: pl.DataFrame, title: str) -> Table:
    from metrics_pipeline.analysis.verdicts import formatted, ordered

    table = Table(title=title)
    columns = ("endpoint", "metric", "baseline", "candidate", "change", "95% CI (+ = worse)")
    for column in (*columns, "p adj.", "verdict"):
        table.add_column(
            column,
            justify="right" if column not in {"endpoint", "metric", "verdict"} else "left",
            # On a narrow terminal the other columns wrap; the verdict stays one word.
            no_wrap=column == "verdict",
        )
    for row in ordered(verdicts).iter_rows(named=True):
        cells = formatted(row)
        if row["regression"]:
            cells[-1] = f"[bold red]{cells[-1]}[/]"
        table.add_row(
            escape(row["endpoint"]),
            row["metric"],
            *cells,
            style="bold" if row["regression"] else None,
        )
    return table


def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline result file or folder.")],
    candidate: Annotated[Path, typer.Argument(help="Candidate result file or folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threshold: Annotated[float, typer.Option(help="Relative worsening that counts.")] = 0.20,
    alpha: Annotated[float, typer.Option(help="Significance level (BH-adjusted).")] = 0.05,
) -> None:
    """Compare two result files or folders; exit 1 if any endpoint regressed (a CI gate)."""
    from metrics_pipeline.analysis.verdicts import VerdictPolicy, judge_run

    with bad_input():
        base, cand = read_results(baseline), read_results(candidate)
    for label, parsed in (("baseline", base), ("candidate", cand)):
        if parsed.requests.height == 0 and parsed.interval_stats.height == 0:
            err.print(f"[red]error:[/] no request or interval data in the {label}:")
            for acc in parsed.accounting:
                err.print(f"  {acc['file']}: {acc['format']}, {acc['error'] or 'no latency data'}")
            raise typer.Exit(2)
    policy = VerdictPolicy.uniform(threshold, alpha)
    verdicts = judge_run(
        cand.requests.with_columns(run_id=pl.lit("candidate")),
        base.requests,
        ["baseline"],
        policy,
        candidate_intervals=cand.interval_stats.with_columns(run_id=pl.lit("candidate")),
        baseline_intervals=base.interval_stats,
        candidate_resources=cand.resources,
        baseline_resources=base.resources,
    )
    judged = verdicts.filter(pl.col("baseline").is_not_null())
    if as_json:
        keys = [
            "endpoint",
            "metric",
            "baseline",
            "candidate",
            "change",
            "ci_low",
            "ci_high",
            "p_value",
            "p_adjusted",
            "regression",
            "verdict",
            "n_baseline",
            "n_candidate",
            "note",
        ]
        # NaN is not JSON: a statistic that could not be computed is null.
        print(json.dumps(judged.select(keys).fill_nan(None).to_dicts(), indent=2))
    else:
        console.print(verdict_table(verdicts, f"{candidate} vs {baseline}"))
    raise typer.Exit(1 if judged["regression"].any() else 0)


def versions(
    baseline_version: Annotated[str, typer.Argument(help="The old service_version.")],
    candidate_version: Annotated[str, typer.Argument(help="The new service_version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    threshold: Annotated[float, typer.Option(help="Relative worsening that counts.")] = 0.20,
) -> None:
    """Compare two service versions on every scenario and endpoint both ran (paired test);
    exit 1 if a metric regressed."""
    from metrics_pipeline.analysis.versions import compare_versions
    from metrics_pipeline.storage import open_warehouse

    warehouse = open_warehouse(Settings.from_env())
    table = compare_versions(
        warehouse.read("runs"),
        warehouse.read("run_summary"),
        baseline_version,
        candidate_version,
        threshold=threshold,
    )
    if table["pairs"].max() == 0:
        fail(f"no scenario ran under both {baseline_version} and {candidate_version}")
    if as_json:
        print(json.dumps(table.fill_nan(None).to_dicts(), indent=2))
    else:
        out = Table(
            title=f"{candidate_version} vs {baseline_version} (paired over scenarios x endpoints)"
        )
        for column in ("metric", "pairs", "change", "95% CI", "p adj.", ""):
            out.add_column(column)
        for row in table.iter_rows(named=True):
            out.add_row(
                row["metric"],
                str(row["pairs"]),
                f"{row['change']:+.1%}",
                f"[{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]",
                f"{row['p_adjusted']:.2g}",
                "[bold red]REGRESSION[/]" if row["regression"] else "ok",
            )
        console.print(out)
    raise typer.Exit(1 if table["regression"].any() else 0)
