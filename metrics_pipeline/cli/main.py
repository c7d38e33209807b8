"""The ``metrics-pipeline`` command.

Exit codes, the same for every command:

* 0 success: done, and nothing the command gates on was found.
* 1 the command found what it gates on: a regression (``compare``, ``versions``), a change
  (``baseline diff``), a missed target (``backtest``), a failed run (``demo``, ``rebuild``),
  a run that failed validation (``ingest``), a notification still waiting (``alerts deliver``).
* 2 bad usage or input: an unknown command or option, a missing argument, an invalid
  manifest, unreadable or missing files, a bad baseline file.

``run`` exits with the load-test command's own code. Long loops (``upload`` over files,
``ingest`` over files, ``demo`` and ``rebuild`` over runs) draw a progress bar on stderr.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.alerts import alerts_app, notifications_table
from metrics_pipeline.cli.output import bad_input, console, err, fail
from metrics_pipeline.cli.progress import progress_bar
from metrics_pipeline.common.clock import clock_at
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.formats import earliest_timestamp, read_results, result_files
from metrics_pipeline.settings import Settings

app = typer.Typer(
    help="Load-test metrics pipeline: upload, ingest, compare, and the end-to-end demo.",
    no_args_is_help=True,
    add_completion=False,
)

Suite = Annotated[str, typer.Option("--suite", help="Test suite, e.g. 'checkout'.")]
Scenario = Annotated[str, typer.Option("--scenario", help="Scenario within the suite.")]
Env = Annotated[str, typer.Option("--env", help="Environment, e.g. 'staging'.")]
RunId = Annotated[
    str | None, typer.Option("--run-id", help="Run id (default: <suite>-<start, UTC>).")
]
StartedAt = Annotated[
    datetime | None,
    typer.Option(
        "--started-at",
        help="When the run started (ISO 8601, UTC if no offset). Default: the earliest "
        "timestamp in the files.",
    ),
]


def _manifest(
    suite: str,
    scenario: str,
    env: str,
    run_id: str | None,
    started_at: datetime | None,
    paths: list[Path],
) -> RunManifest:
    # Without --started-at the run starts at its earliest timestamp (a backfill of old files),
    # or now when the files carry none.
    started = started_at or earliest_timestamp(paths) or datetime.now(UTC)
    with bad_input(ValueError):
        return RunManifest(
            run_id=run_id or f"{suite}-{started:%Y%m%dT%H%M%S}",
            suite=suite,
            scenario=scenario,
            environment=env,
            started_at=started,
        )


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


def _verdict_table(verdicts: pl.DataFrame, title: str) -> Table:
    from metrics_pipeline.analysis.verdicts import formatted, ordered

    table = Table(title=title)
    for column in ("endpoint", "metric", "baseline", "candidate", "change", "95% CI", "p adj.", ""):
        table.add_column(
            column,
            justify="right" if column not in {"endpoint", "metric"} else "left",
            # On a narrow terminal the other columns wrap; the verdict stays one word.
            no_wrap=column == "",
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


@app.command()
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
        console.print(_verdict_table(verdicts, f"{candidate} vs {baseline}"))
    raise typer.Exit(1 if judged["regression"].any() else 0)


@app.command()
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


@app.command()
def upload(
    folder: Annotated[Path, typer.Argument(help="Folder with the run's result files.")],
    suite: Suite,
    scenario: Scenario,
    env: Env,
    run_id: RunId = None,
    started_at: StartedAt = None,
) -> None:
    """Upload a folder of result files as one run to the configured object store."""
    from metrics_pipeline.storage.objects import object_store_from_settings
    from metrics_pipeline.upload.uploader import upload_run

    files = result_files(folder)
    if not files:
        fail(f"no result files in {folder}")
    manifest = _manifest(suite, scenario, env, run_id, started_at, files)
    store = object_store_from_settings(Settings.from_env())
    with progress_bar(err) as bar:
        keys = upload_run(store, bar.track(files, description="uploading"), manifest, root=folder)
    console.print(
        f"uploaded run [bold]{manifest.run_id}[/] ({len(keys)} objects) to {store.description}"
    )


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Result files or folders.")],
    suite: Suite,
    scenario: Scenario,
    env: Env,
    run_id: RunId = None,
    started_at: StartedAt = None,
) -> None:
    """Ingest local files straight into the warehouse (backfills, benchmarks): parsed,
    validated and summarised exactly as the pipeline does. Exit 1 if the run is invalid."""
    from metrics_pipeline.stages import ci
    from metrics_pipeline.storage import open_warehouse

    settings = Settings.from_env()
    with bad_input():
        files = [file for path in paths for file in result_files(path)]
    manifest = _manifest(suite, scenario, env, run_id, started_at, files)
    warehouse = open_warehouse(settings)
    with progress_bar(err) as bar:
        # Opened one by one as ingest reaches them: the bar moves as files are done.
        openers = (
            (file.name, lambda file=file: file.open("rb"))
            for file in bar.track(files, description="ingesting")
        )
        report = ci.ingest_local(openers, manifest, warehouse, now=settings.clock())
    with err.status("validating (Great Expectations)..."):
        validation = ci.validate(warehouse, manifest)
    summary = ci.summarise(warehouse, manifest.run_id)
    table = Table(title=f"run {manifest.run_id}")
    for column in ("file", "format", "read", "accepted", "quarantined", "problem"):
        table.add_column(column)
    for f in report.files:
        table.add_row(
            f["file"],
            f["format"],
            str(f["rows_read"]),
            str(f["rows_accepted"]),
            str(f["rows_quarantined"]),
            f["error"] or "",
        )
    console.print(table)
    console.print(f"{summary.summary.height} endpoint(s) summarised; warehouse: {warehouse.root}")
    if not validation.valid:
        console.print(
            f"[red]run {escape(manifest.run_id)} is invalid[/] (kept, never a baseline): "
            + escape("; ".join(validation.problems))
        )
        raise typer.Exit(1)
    console.print(f"run {escape(manifest.run_id)} is valid")


@app.command(context_settings={"ignore_unknown_options": True})
def run(
    command: Annotated[list[str], typer.Argument(help="The load-test command, after `--`.")],
    suite: Suite,
    scenario: Scenario,
    env: Env,
    run_id: RunId = None,
    results: Annotated[
        Path, typer.Option("--results", help="Folder where the tool writes its result files.")
    ] = Path("."),
    interval: Annotated[float, typer.Option(help="Seconds between system samples.")] = 1.0,
) -> None:
    """Run a load test, sample system metrics meanwhile, then upload results, samples and a
    manifest as one run. Exits with the command's exit code."""
    from metrics_pipeline.storage.objects import object_store_from_settings
    from metrics_pipeline.upload.collector import collect_run

    store = object_store_from_settings(Settings.from_env())
    with bad_input(ValueError):
        code, manifest, keys = collect_run(
            store,
            command,
            suite=suite,
            scenario=scenario,
            environment=env,
            run_id=run_id,
            results_dir=results,
            interval=interval,
        )
    if keys:
        err.print(f"uploaded run {manifest.run_id} ({len(keys)} objects) to {store.description}")
    raise typer.Exit(code)


@app.command()
def demo(
    runs: Annotated[int, typer.Option(help="How many nightly runs to generate.")] = 6,
) -> None:
    """Generate runs (the last with one endpoint 30 % slower), upload them to the configured
    store, run the sensor and the CI stage in process, and print the verdicts."""
    import dagster as dg

    from metrics_pipeline.evaluation.demo_data import demo_runs
    from metrics_pipeline.orchestration.definitions import build_definitions
    from metrics_pipeline.orchestration.inprocess import sense_and_run
    from metrics_pipeline.storage import open_warehouse
    from metrics_pipeline.storage.objects import object_store_from_settings
    from metrics_pipeline.upload.uploader import upload_run

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
        tick = sense_and_run(defs, instance, progress=_runs_bar(bar, "ci_stage job per run"))
    failed = [run_id for run_id, result in tick.results.items() if not result.success]
    for run_id in tick.run_ids:
        console.print(f"  {run_id}: {'[red]FAILED[/]' if run_id in failed else 'ok'}")
    with console.status("running the nightly job (SQL marts, change points, drifts, findings)..."):
        nightly = defs.resolve_job_def("nightly").execute_in_process(
            instance=instance, raise_on_error=False
        )
    console.print(f"  nightly: {'ok' if nightly.success else '[red]FAILED[/]'}")
    if not nightly.success:
        failed.append("nightly")

    warehouse = open_warehouse(settings)
    last = generated[-1].manifest.run_id
    verdicts = warehouse.read("verdicts", [last])
    console.print(_verdict_table(verdicts, f"verdicts of {last}"))
    flagged = sorted(set(verdicts.filter(pl.col("regression"))["endpoint"]))
    console.print(f"regressions in {last}: {', '.join(flagged) or 'none'}")
    _print_alerts(warehouse, last)
    if not _print_reports(settings, last):
        failed.append("reports")
    console.print(f"warehouse: {warehouse.refresh_catalog()}  (duckdb, views per table)")
    console.print(f"Dagster UI with these runs: DAGSTER_HOME={settings.dagster_home} make dev")
    _print_monitoring(_write_monitoring(settings, settings.home / "monitoring", None))
    if failed:
        raise typer.Exit(1)


def _print_alerts(warehouse, run_id: str) -> None:
    """The notifications the run's alerts owe, and whether they went out (the shipped
    alerting config reads its receivers from variables the demo does not set)."""
    alerts = warehouse.read("alerts").filter(pl.col("last_run_id") == run_id)
    outbox = warehouse.read("alert_deliveries").filter(
        pl.col("alert_id").is_in(alerts["alert_id"].implode())
    )
    console.print(notifications_table(alerts, outbox, f"alerts of {run_id}"))


@app.command()
def backtest(
    size: Annotated[str, typer.Option(help="small (about a minute) or full.")] = "small",
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
    if as_json:
        print(
            json.dumps(
                {"detectors": report.as_rows(), "mde": report.mde_rows()}, indent=2, default=str
            )
        )
    else:
        print(report.as_markdown())
    raise typer.Exit(0 if report.all_targets_met else 1)


def _runs_bar(bar, description: str):
    """A ``progress(done, total)`` callback drawing one task of ``bar``."""
    task = bar.add_task(description, total=None)
    return lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="The run to report on (already ingested).")],
) -> None:
    """Write the run's four report layers (Markdown summary, HTML, PDF, raw JSONL) under
    METRICS_HOME/reports and to the bucket's reports/, and print their paths. The CI stage
    writes them too; this re-creates them, e.g. after a baseline or SLA change."""
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
        )
    _print_reports(settings, run_id)


@app.command()
def rebuild() -> None:
    """Re-create the warehouse from the bucket (every uploaded run, then the nightly job);
    the old warehouse is replaced only when everything succeeded."""
    from metrics_pipeline.orchestration.rebuild import rebuild as rebuild_warehouse

    settings = Settings.from_env()
    with progress_bar(err) as bar:
        report = rebuild_warehouse(settings, progress=_runs_bar(bar, "rebuilding, runs"))
    if report.failed:
        err.print(
            f"[red]rebuild failed[/] ({', '.join(report.failed)}); the warehouse is unchanged"
        )
        raise typer.Exit(1)
    console.print(f"rebuilt {settings.warehouse_root} from {len(report.runs)} runs")


@app.command()
def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go.")] = False,
    raw_days: Annotated[int, typer.Option(help="Keep raw rows this many days.")] = 30,
    aggregate_days: Annotated[int, typer.Option(help="Keep aggregates this many days.")] = 365,
    now: Annotated[
        datetime | None, typer.Option(help="Pretend it is this time (ISO 8601; tests, replays).")
    ] = None,
) -> None:
    """Delete raw rows and aggregates past their retention, except what baselines need."""
    from metrics_pipeline.analysis.baselines import load_baselines
    from metrics_pipeline.stages.retention import RetentionPolicy, apply_plan, plan_for
    from metrics_pipeline.storage import open_warehouse

    settings = Settings.from_env()
    with bad_input():
        pinned = [run for entry in load_baselines(settings.baselines_file) for run in entry.runs]
    warehouse = open_warehouse(settings)
    moment = clock_at(now)() if now else settings.clock()
    plan = plan_for(warehouse, moment, RetentionPolicy(raw_days, aggregate_days), pinned)
    summary = plan.as_frame().group_by("table").len().sort("table")
    verb = "would delete" if dry_run else "deleting"
    console.print(
        f"{verb} {len(plan.deletions)} partitions ("
        + ", ".join(f"{t}: {n}" for t, n in summary.iter_rows())
        + f"); {len(plan.protected)} runs kept for baselines"
    )
    if not dry_run:
        apply_plan(warehouse, plan)
        warehouse.refresh_catalog()


monitoring_app = typer.Typer(
    help="Prometheus rules and configs, Alertmanager routing, Grafana dashboards.",
    no_args_is_help=True,
)
app.add_typer(monitoring_app, name="monitoring")


def _write_monitoring(settings: Settings, out: Path, webhook_url: str | None):
    from metrics_pipeline.observability import write_monitoring

    return write_monitoring(out, postgres_url=settings.postgres_url, webhook_url=webhook_url)


def _print_monitoring(files) -> None:
    console.print(
        f"Prometheus rules, prometheus.yml, alertmanager.yml: {files.prometheus.parent}"
        f"  (start both: {files.run_script}; exporter: metrics-pipeline exporter)"
    )
    console.print(
        f"Grafana dashboards: {files.dashboards[0].parent}"
        f"  (provisioning: {files.datasource.parent.parent})"
    )


@monitoring_app.command("write")
def monitoring_write(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder (default: METRICS_HOME/monitoring).")
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            envvar="METRICS_ALERTMANAGER_WEBHOOK_URL",
            help="Where Alertmanager posts alerts (default: http://127.0.0.1:9095/alerts).",
        ),
    ] = None,
) -> None:
    """Write the rules, prometheus.yml, alertmanager.yml, the run script and the Grafana
    dashboards with their provisioning files."""
    settings = Settings.from_env()
    _print_monitoring(_write_monitoring(settings, out or settings.home / "monitoring", webhook_url))


@app.command()
def exporter(
    port: Annotated[int, typer.Option(help="Port of /metrics.")] = 9464,
    addr: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
) -> None:
    """Serve the pipeline's findings (verdicts, SLA compliance, alerts, ingest lag) as
    Prometheus metrics, read from the warehouse at every scrape."""
    from metrics_pipeline.observability.exporter import serve
    from metrics_pipeline.storage import Warehouse

    settings = Settings.from_env()
    # The Parquet warehouse is always there; the exporter needs no Postgres connection.
    server, thread = serve(Warehouse(settings.warehouse_root), port, addr)
    console.print(f"serving http://{addr}:{port}/metrics from {settings.warehouse_root}")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()


baseline_app = typer.Typer(
    help="The version-controlled baseline file: show it, propose updates, see what changed.",
    no_args_is_help=True,
)
app.add_typer(baseline_app, name="baseline")
app.add_typer(alerts_app, name="alerts")
BaselineFile = Annotated[
    Path | None,
    typer.Option("--file", help="Baseline YAML (default: METRICS_BASELINES or config/...)."),
]


def _baseline_inputs(file: Path | None):
    from metrics_pipeline.analysis.baselines import load_baselines
    from metrics_pipeline.storage import open_warehouse

    settings = Settings.from_env()
    path = file or settings.baselines_file
    with bad_input():
        current = load_baselines(path)
    return path, current, open_warehouse(settings)


def _proposed(warehouse, runs: int):
    from metrics_pipeline.analysis.baselines import compute_baselines

    verdicts = warehouse.read("verdicts")
    regressed = set(verdicts.filter(pl.col("regression"))["run_id"])
    return compute_baselines(
        warehouse.read("runs"), warehouse.read("run_summary"), regressed, n=runs
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
    from metrics_pipeline.analysis.baselines import diff_baselines, save_baselines

    path, current, warehouse = _baseline_inputs(file)
    proposed = _proposed(warehouse, runs)
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

    path, current, warehouse = _baseline_inputs(file)
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
