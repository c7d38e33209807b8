"""Getting runs in: ``upload`` a folder, ``ingest`` files straight into the warehouse, ``run``
a load test and collect what it wrote."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.options import (
    Env,
    RunId,
    Scenario,
    StartedAt,
    Suite,
    folder_manifest,
    manifest_fields,
    manifest_from,
)
from metrics_pipeline.cli.output import bad_input, console, err, fail, fail_on_unreadable
from metrics_pipeline.cli.progress import progress_bar
from metrics_pipeline.formats import (
    RESULT_SUFFIXES,
    is_result_file,
    kept_as,
    known_format,
    result_files,
    unreadable_files,
)
from metrics_pipeline.settings import Settings


def upload(
    folder: Annotated[
        Path, typer.Argument(help="Folder with the run's result files, or one result file.")
    ],
    suite: Suite = None,
    scenario: Scenario = None,
    env: Env = None,
    run_id: RunId = None,
    started_at: StartedAt = None,
) -> None:
    """Upload a folder of result files (or one result file) as one run to the configured
    object store. A run.json in the folder (the run's manifest: tool, service_version, git_sha,
    tags, baseline...) is kept, each option given replacing its field; files and uploaded_by
    are written anew."""
    from metrics_pipeline.storage.objects import object_store_from_settings
    from metrics_pipeline.upload.uploader import upload_run

    settings = settings_from_env()
    with bad_input():
        files = result_files(folder, skip=[settings.home])
    if folder.is_file() and not is_result_file(folder.name):
        # The uploader takes result files only: the run would have no data.
        suffixes = ", ".join(RESULT_SUFFIXES)
        fail(f"{folder} is not named like a result file ({suffixes}, each also .gz)")
    require_data(files, folder, "uploaded")
    described = folder_manifest([folder])
    manifest = manifest_from(suite, scenario, env, run_id, started_at, files, described)
    # A folder's files keep their paths below it; a single file is named by its name.
    root = folder if folder.is_dir() else None
    with bad_input(*store_errors()):
        store = object_store_from_settings(settings)
        with progress_bar(err) as bar:
            keys = upload_run(store, bar.track(files, description="uploading"), manifest, root)
    console.print(
        f"uploaded run [bold]{manifest.run_id}[/] ({len(keys)} objects) to {store.description}"
    )


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Result files or folders.")],
    suite: Suite = None,
    scenario: Scenario = None,
    env: Env = None,
    run_id: RunId = None,
    started_at: StartedAt = None,
) -> None:
    """Ingest local files straight into the warehouse (backfills, benchmarks): parsed,
    validated and summarised exactly as the pipeline does. A run.json in a folder given is
    the run's manifest, each option given replacing its field. Exit 1 if the run is invalid, 2
    if a file could not be read (damaged, truncated, over a read limit), or if none is of a
    known format (then nothing is written)."""
    from metrics_pipeline.stages import ci
    from metrics_pipeline.storage import open_warehouse

    settings = settings_from_env()
    with bad_input():
        files = [file for path in paths for file in result_files(path, skip=[settings.home])]
    # Before anything is written: an empty run in the warehouse, on every retry, helps no one.
    require_data(files, " ".join(map(str, paths)), "ingested")
    described = folder_manifest(paths)
    manifest = manifest_from(suite, scenario, env, run_id, started_at, files, described)
    warehouse = open_warehouse(settings)
    with progress_bar(err) as bar:
        # Opened one by one as ingest reaches them: the bar moves as files are done.
        openers = (
            (file.name, lambda file=file: file.open("rb"))
            for file in bar.track(files, description="ingesting")
        )
        report = ci.ingest_local(openers, manifest, warehouse, now=settings.clock())
    with err.status("validating (Great Expectations)..."):
        validation = ci.validate(warehouse, report)
    summary = ci.summarise(warehouse, manifest.run_id)
    table = Table(title=f"run {manifest.run_id}")
    for column in ("file", "format", "read", "accepted", "quarantined", "kept as", "problem"):
        table.add_column(column)
    for f in report.files:
        table.add_row(
            escape(f["file"]),
            f["format"],
            str(f["rows_read"]),
            str(f["rows_accepted"]),
            str(f["rows_quarantined"]),
            kept_as(f),
            escape(f["error"] or ""),  # exception text such as "[Errno 13]" is not markup
        )
    console.print(table)
    console.print(f"{summary.summary.height} endpoint(s) summarised; warehouse: {warehouse.root}")
    # The rows of the other files are stored either way; an unreadable file is bad input
    # (exit 2), which a CI gate must not take for an invalid run's 1.
    unreadable = unreadable_files(report.files)
    if not validation.valid:
        console.print(
            f"[red]run {escape(manifest.run_id)} is invalid[/] (kept, never a baseline): "
            + escape("; ".join(validation.problems))
        )
        fail_on_unreadable(unreadable)
        raise typer.Exit(1)
    console.print(f"run {escape(manifest.run_id)} is valid")
    fail_on_unreadable(unreadable)


def run(
    command: Annotated[list[str], typer.Argument(help="The load-test command, after `--`.")],
    suite: Suite = None,
    scenario: Scenario = None,
    env: Env = None,
    run_id: RunId = None,
    results: Annotated[
        Path, typer.Option("--results", help="Folder where the tool writes its result files.")
    ] = Path("."),
    interval: Annotated[float, typer.Option(help="Seconds between system samples.")] = 1.0,
) -> None:
    """Run a load test, sample system metrics meanwhile, then upload results, samples and a
    manifest as one run: the result files below --results written during the run (hidden and
    tool folders such as node_modules, and METRICS_HOME, are not looked into), whatever the
    command's exit code (kept as the tag exit_code); a run without such a file is not uploaded.
    A run.json in --results is the run's manifest, each option given replacing its field, and
    what was measured (start, end, duration, the tags collector and exit_code) replacing both.
    Exits with the command's exit code; 2 when that is 0 but no result file was written."""
    from metrics_pipeline.storage.objects import object_store_from_settings
    from metrics_pipeline.upload.collector import collect_run

    settings = settings_from_env()
    # Checked before the load test: a bad run.json or missing options cost no load test.
    described = folder_manifest([results])
    fields = manifest_fields(described, suite=suite, scenario=scenario, environment=env)
    with bad_input():  # missing S3 credentials cost no load test either
        store = object_store_from_settings(settings)
    with bad_input(ValueError), no_results_exit():
        code, manifest, keys = collect_run(
            store,
            command,
            suite=fields["suite"],
            scenario=fields["scenario"],
            environment=fields["environment"],
            run_id=run_id,
            described=described,
            results_dir=results,
            interval=interval,
            skip=[settings.home],
            now=settings.clock,
        )
    if keys:
        err.print(f"uploaded run {manifest.run_id} ({len(keys)} objects) to {store.description}")
    raise typer.Exit(code)


def store_errors() -> tuple[type[Exception], ...]:
    """What the S3 client raises for an unreachable endpoint, a missing bucket or refused
    credentials (botocore's errors, imported only by the commands that talk to a store)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def require_data(files: list[Path], where: Path | str, done: str) -> None:
    """Exit 2 unless one of ``files`` is of a known format: a run without data is no run (the
    other files go with it, to be reported as they are at ingest)."""
    if any(known_format(file) for file in files):
        return
    others = f" ({len(files)} file(s) of no known format)" if files else ""
    fail(f"no result file of a known format in {where}{others}: nothing {done}")


def settings_from_env() -> Settings:
    """The environment's settings; a bad value (``METRICS_STORE=s4``) is bad input, said in
    one line that names the accepted values."""
    with bad_input(ValueError):
        return Settings.from_env()


@contextmanager
def no_results_exit() -> Iterator[None]:
    """A load test that left no result file: exit 2 when the command succeeded (bad --results or
    a tool that wrote nothing), else the command's own code (the failure it reported)."""
    from metrics_pipeline.upload.collector import NoResultsError

    try:
        yield
    except NoResultsError as exc:
        if exc.exit_code == 0:
            fail(str(exc))
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
