"""The pipeline from the command line: the ``demo``, ``report``, ``rebuild``, ``retention`` and
the detectors' ``backtest``."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from metrics_pipeline.cli.alerts import notifications_table
from metrics_pipeline.cli.gate import verdict_table
from metrics_pipeline.cli.monitoring import print_monitoring, write_monitoring
from metrics_pipeline.cli.output import bad_input, console, err, fail, print_json
from metrics_pipeline.cli.progress import progress_bar
from metrics_pipeline.common.clock import clock_at
from metrics_pipeline.settings import Settings


def _print_reports(settings: Settings, run_id: str) -> bool:
    """Print where the four report layers of ``run_id`` are; False when one is missing."""
    from metrics_pipeline.reports import FILES, report_folder

    folder = settings.reports_root / report_folder("runs", run_id)
    console.print(f"reports of {run_id}:")
    missing = [name for name in FILES if not (folder / name).is_file()]
    for name in FILES:
        flag = "  [red]missing[/]" if name in missing else ""
        # soft_wrap: a path is printed whole, never broken across lines.
        console.print(f"  {escape(str(folder / name))}{flag}", soft_wrap=True)
    return not missing


def demo(
    runs: Annotated[int, typer.Option(help="How many nightly runs to generate.")] = 6,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Dagster's own log lines (DEBUG).")
    ] = False,
) -> None:
    """Generate runs (the last with one endpoint 60 % slower), upload them to the configured
    store, run the sensor and the CI stage on them in process, and print the verdicts."""
    import dagster as dg

    from metrics_pipeline.analysis.verdict_rules import load_verdict_rules
    from metrics_pipeline.analysis.verdicts import ci_alphas
    from metrics_pipeline.evaluation.demo_data import demo_runs
    from metrics_pipeline.orchestration.definitions import build_definitions
    from metrics_pipeline.orchestration.inprocess import console_logs, sense_and_run
    from metrics_pipeline.storage import open_warehouse
    from metrics_pipeline.storage.objects import object_store_from_settings
    from metrics_pipeline.upload.uploader import upload_run

    # Dagster logs every step at DEBUG; the demo's own lines are what a newcomer should read.
    log_level = None if verbose else "WARNING"
    settings = Settings.from_env()
    store = object_store_from_settings(settings)
    generated = demo_runs(runs, now=settings.clock())
    with tempfile.TemporaryDirectory() as tmp, progress_bar(err) as bar:
        for run in bar.track(generated, description="uploading runs"):
            folder = run.write(Path(tmp))
            upload_run(store, [folder / "requests.ndjson"], run.manifest)
    console.print(f"uploaded {len(generated)} runs to {store.description}")

    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    with progress_bar(err) as bar:
        defs = build_definitions(settings)
        tick = sense_and_run(
            defs,
            instance,
            progress=_runs_bar(bar, "ci_stage job per run"),
            log_level=log_level,
            # Only the demo's own runs: other uploads in the store (a user's `upload`, an
            # invalid run among them) are not the demo's to judge, nor to fail on.
            only={run.manifest.run_id for run in generated},
        )
    failed = [run_id for run_id, result in tick.results.items() if not result.success]
    for run_id in tick.run_ids:
        console.print(f"  {run_id}: {'[red]FAILED[/]' if run_id in failed else 'ok'}")
    with console.status("running the nightly job (SQL marts, change points, drifts, findings)..."):
        nightly = defs.resolve_job_def("nightly").execute_in_process(
            instance=instance, raise_on_error=False, run_config=console_logs(log_level)
        )
    console.print(f"  nightly: {'ok' if nightly.success else '[red]FAILED[/]'}")
    if not nightly.success:
        failed.append("nightly")

    warehouse = open_warehouse(settings)
    manifest = generated[-1].manifest
    last = manifest.run_id
    verdicts = warehouse.read("verdicts", [last])
    policy = load_verdict_rules(settings.verdict_rules).policy(
        manifest.suite, manifest.scenario, manifest.environment
    )
    alphas = ci_alphas(verdicts, policy)
    console.print(verdict_table(verdicts, f"verdicts of {last}", alphas, console.width))
    flagged = sorted(set(verdicts.filter(pl.col("regression"))["endpoint"]))
    console.print(f"regressions in {last}: {', '.join(flagged) or 'none'}")
    _print_alerts(warehouse, last)
    if not _print_reports(settings, last):
        failed.append("reports")
    console.print(f"warehouse: {warehouse.refresh_catalog()}  (duckdb, views per table)")
    console.print(f"Dagster UI with these runs: DAGSTER_HOME={settings.dagster_home} make dev")
    print_monitoring(write_monitoring(settings, settings.home / "monitoring", None))
    console.print(_summary(verdicts, last, settings, alphas), soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _summary(
    verdicts: pl.DataFrame, run_id: str, settings: Settings, alphas: Mapping[str, float]
) -> str:
    """The closing lines: what regressed, by how much, how sure (``alphas``: each metric's
    CI level), where to look next."""
    from metrics_pipeline.analysis.verdicts import ci_level, formatted
    from metrics_pipeline.reports import report_folder
    from metrics_pipeline.reports.text import metric_name

    lines = ["", f"[bold]Summary of {escape(run_id)}[/]"]
    for row in (
        verdicts.filter(pl.col("regression")).sort("change", descending=True).iter_rows(named=True)
    ):
        _, _, change, ci, p, _ = formatted(row)
        lines.append(
            f"  [red]REGRESSION[/] {escape(row['endpoint'])}: {metric_name(row['metric'])} "
            f"{change} ({ci_level(alphas[row['metric']])} CI {ci}, adjusted p {p}; run noise "
            f"from {row['noise']})"
        )
    if len(lines) == 2:
        lines.append("  no regression")
    report = settings.reports_root / report_folder("runs", run_id) / "report.html"
    lines += [
        f"  report: {escape(str(report))}",
        '  next: uv run metrics-pipeline sql "select * from verdicts where regression"'
        "   or   make dev (the same runs in the Dagster UI)",
    ]
    return "\n".join(lines)


def _print_alerts(warehouse, run_id: str) -> None:
    """The notifications the run's alerts owe, and whether they went out (the shipped
    alerting config reads its receivers from variables the demo does not set)."""
    alerts = warehouse.read("alerts").filter(pl.col("last_run_id") == run_id)
    outbox = warehouse.read("alert_deliveries").filter(
        pl.col("alert_id").is_in(alerts["alert_id"].implode())
    )
    console.print(notifications_table(alerts, outbox, f"alerts of {run_id}"))


def backtest(
    size: Annotated[str, typer.Option(help="small (seconds) or full (minutes).")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of every generated case.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score every detector on labelled data: precision, recall, false-positive rate,
    detection delay, forecast MAPE and minimum detectable effects. Exit 1 if a target is missed."""
    from metrics_pipeline.evaluation.backtest import run_backtest

    if size not in {"small", "full"}:
        fail(f"--size must be small or full, not {size!r}")
    with console.status("backtest...") as status:
        report = run_backtest(size, seed, progress=lambda step: status.update(f"backtest: {step}"))
    # On real data, the people who triaged the findings measured the detector too.
    marks = _triage_precision()
    if as_json:
        print_json({"detectors": report.as_rows(), "mde": report.mde_rows(), "triage": marks})
    else:
        print(report.as_markdown())
        if marks:
            print("\nPrecision of the findings from their triage marks (metrics-pipeline triage):")
            print("\n| month | expected | invalid | precision |\n|---|---:|---:|---:|")
            for row in marks:
                print(
                    f"| {row['month']} | {row['expected']} | {row['invalid']} "
                    f"| {row['precision']:.0%} |"
                )
    raise typer.Exit(0 if report.all_targets_met else 1)


def _triage_precision() -> list[dict]:
    """The warehouse's triage precision per month (none without a warehouse or marks)."""
    from metrics_pipeline.stages.triage import precision
    from metrics_pipeline.storage import open_warehouse

    return precision(open_warehouse(Settings.from_env())).to_dicts()


def _runs_bar(bar, description: str):
    """A ``progress(done, total)`` callback drawing one task of ``bar``."""
    task = bar.add_task(description, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


def report(
    run_id: Annotated[str, typer.Argument(help="The run to report on (already ingested).")],
) -> None:
    """Write the run's four report layers (Markdown summary, HTML, PDF, raw JSONL) under
    METRICS_HOME/reports and to the bucket's reports/, and print their paths. The CI stage
    writes them too; this re-creates them, e.g. after a baseline or SLA change."""
    from metrics_pipeline.analysis.verdict_rules import load_verdict_rules
    from metrics_pipeline.reports.build import build_run_report
    from metrics_pipeline.storage import open_warehouse
    from metrics_pipeline.storage.objects import object_store_from_settings

    settings = Settings.from_env()
    with bad_input(), console.status(f"rendering the report of {run_id}..."):
        build_run_report(
            open_warehouse(settings),
            run_id,
            settings.reports_root,
            object_store_from_settings(settings),
            load_verdict_rules(settings.verdict_rules),
        )
    _print_reports(settings, run_id)


def rebuild(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Dagster's own log lines (DEBUG).")
    ] = False,
) -> None:
    """Re-create the warehouse from the bucket (every uploaded run, then the nightly job);
    the old warehouse is replaced only when everything succeeded. It notifies nobody: the
    alerts are recomputed, the old outbox, acknowledgements and triage marks are kept."""
    from metrics_pipeline.orchestration.rebuild import rebuild as rebuild_warehouse
    from metrics_pipeline.storage.rebuilds import RebuildRunningError

    settings = Settings.from_env()
    with progress_bar(err) as bar:
        try:
            report = rebuild_warehouse(
                settings,
                progress=_runs_bar(bar, "rebuilding, runs"),
                # As in the demo: Dagster logs every step of every run at DEBUG, hundreds of
                # lines that bury the one saying whether the rebuild succeeded.
                log_level=None if verbose else "WARNING",
            )
        except (ValueError, RebuildRunningError) as exc:
            fail(str(exc))
    if report.failed:
        err.print(
            f"[red]rebuild failed[/] ({', '.join(report.failed)}); the warehouse is unchanged"
        )
        raise typer.Exit(1)
    invalid = f" ({len(report.invalid)} invalid, kept as such: {', '.join(report.invalid)})"
    console.print(
        f"rebuilt {settings.warehouse_root} from {len(report.runs)} runs"
        + (invalid if report.invalid else ""),
        soft_wrap=True,
    )
    for unfinished in report.unfinished:
        err.print(f"[red]error:[/] the warehouse is rebuilt, but {escape(unfinished)}")
    if report.unfinished:
        raise typer.Exit(1)


def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go.")] = False,
    raw_days: Annotated[
        int, typer.Option(help="Keep raw rows this many days after their ingest.")
    ] = 30,
    aggregate_days: Annotated[
        int, typer.Option(help="Keep aggregates this many days after their ingest.")
    ] = 365,
    trash_days: Annotated[
        int, typer.Option(help="Keep what is deleted restorable in the trash this many days.")
    ] = 7,
    max_quiet_days: Annotated[
        int,
        typer.Option(
            help="Refuse when now is more than this many days after the newest ingest "
            "(a clock or --now far ahead)."
        ),
    ] = 45,
    force: Annotated[
        bool,
        typer.Option("--force", help="Run even when now is after --max-quiet-days of no ingest."),
    ] = False,
    restore: Annotated[
        str | None,
        typer.Option(
            metavar="RUN_ID",
            help="Bring the run's partitions back from the trash (and into Postgres) instead.",
        ),
    ] = None,
    now: Annotated[
        datetime | None, typer.Option(help="Pretend it is this time (ISO 8601; tests, replays).")
    ] = None,
) -> None:
    """Move raw rows and aggregates past their retention (counted from each run's ingest) to
    the trash, except the runs baselines need, and purge what the trash has held longer than
    --trash-days. Refuses (exit 2) on bad day counts, a missing configured baseline file, or a
    now far after the newest ingest (--force)."""
    from metrics_pipeline.stages.retention import RetentionPolicy, pinned_in, run_retention
    from metrics_pipeline.storage import open_warehouse

    settings = Settings.from_env()
    if restore is not None:
        _restore(open_warehouse(settings), restore, dry_run)
        return
    with bad_input():
        # The policy checks its day counts itself (the asset's config gets the same check).
        policy = RetentionPolicy(raw_days, aggregate_days, trash_days, max_quiet_days)
        pinned = pinned_in(settings.baselines_file)
    warehouse = open_warehouse(settings)
    moment = clock_at(now)() if now else settings.clock()
    with bad_input():
        outcome = run_retention(warehouse, moment, policy, pinned, dry_run=dry_run, force=force)
    plan = outcome.plan
    summary = plan.as_frame().group_by("table").len().sort("table")
    kept = Counter(kind for kinds in plan.reasons.values() for kind in kinds)
    verb = "would move" if dry_run else "moved"
    console.print(
        f"{verb} {len(plan.deletions)} partitions to the trash ("
        + ", ".join(f"{t}: {n}" for t, n in summary.iter_rows())
        + f"); {len(plan.protected)} runs kept for baselines ("
        + ", ".join(f"{kind}: {n}" for kind, n in sorted(kept.items()))
        + f"); {'would purge' if dry_run else 'purged'} {len(outcome.purged)} partitions "
        f"older than {policy.trash_days} days from the trash",
        soft_wrap=True,
    )
    if outcome.trashed:
        console.print(
            f"restorable for {policy.trash_days} days: metrics-pipeline retention --restore RUN_ID",
            soft_wrap=True,
        )


def _restore(warehouse, run_id: str, dry_run: bool) -> None:
    """``retention --restore RUN_ID``: the run's partitions back from the trash."""
    from metrics_pipeline.stages.retention import restore_run
    from metrics_pipeline.storage.trash import RetentionTrash

    if dry_run:
        entries = RetentionTrash(warehouse).entries(run_id)
        if not entries:
            fail(f"run {run_id!r} has no partition in the retention trash")
        for entry in entries:
            console.print(f"would restore {entry.table} of {run_id} (trashed {entry.trashed_at})")
        return
    with bad_input():
        result = restore_run(warehouse, run_id)
    tables = ", ".join(entry.table for entry in result.restored) or "none"
    console.print(f"restored {len(result.restored)} partitions of {run_id}: {tables}")
    if result.left:
        left = ", ".join(sorted({entry.table for entry in result.left}))
        console.print(f"left in the trash ({left}): the warehouse holds newer copies")
    # The run keeps its first ingest time: an old run is old again at the next pass.
    console.print(
        "note: if it is older than the retention windows, the next pass takes it again unless "
        "a baseline keeps it (pin it in the baseline file)",
        soft_wrap=True,
    )
