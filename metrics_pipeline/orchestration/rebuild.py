"""Re-create the warehouse from the bucket, the source of truth, with the pipeline's own jobs.

Everything is built in a new folder first (the CI stage for every uploaded run, oldest first,
then the nightly job), and the Postgres mirror's tables in a schema of their own; only then do
they replace the old warehouse and the mirror's rows (in one transaction), so a failed rebuild
leaves the old ones in place, and Postgres readers (Grafana) never see a half-built warehouse.

One rebuild runs at a time per warehouse (a lock file beside its folder), and it first removes
what rebuilds that died left (their folders and Postgres schemas): none of them can be running.
The names, the lock and those leftovers are ``storage.rebuilds``' (``check`` lists them too).

A rebuild replays history, so it notifies nobody: the alerts' state is recomputed from the
runs, but no notification is queued or delivered (not even recorded as delivered: the outbox
lists only what was really owed to a receiver). What the runs cannot tell comes from the old
warehouse at the swap: its outbox, whole (what was delivered, and what still waits, which
the next delivery pass sends), and, for the same incidents, when each alert opened, who
acknowledged it and when it was escalated (``alerts.lifecycle.carry_over``), so that the
next pass does not escalate again what was escalated or acknowledged before; and the alerts
no run gives again (a pipeline failure, an overdue run, a weekly finding), as they were.

A run whose upload version the old warehouse had ingested keeps its ``ingested_at`` from
there: retention counts ages from it.

The triage marks (``alerts expected|invalid``, ``triage mark``) are people's decisions, not
in the bucket either: the old warehouse's are copied in before the jobs run (a marked
condition does not alert, an expected step rebaselines) and again at the swap (marks made
meanwhile are kept; their effect on the rebuilt runs waits for the next rebuild).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl

from assets.marts import MART_SPECS
from metrics_pipeline.alerts.lifecycle import carry_over
from metrics_pipeline.alerts.service import locked
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import console_logs, sense_and_run
from metrics_pipeline.settings import Settings
from metrics_pipeline.stages.nightly import build_marts
from metrics_pipeline.stages.triage import TRIAGE_LOCK
from metrics_pipeline.storage import PostgresWarehouse, Warehouse, open_warehouse
from metrics_pipeline.storage.rebuilds import (
    BUILDING,
    OLD,
    REPORTS,
    SCHEMA,
    dead_rebuilds,
    one_rebuild,
    remove_dead_rebuilds,
)


@dataclasses.dataclass(frozen=True)
class RebuildReport:
    """``runs``: every run rebuilt; ``failed``: the jobs that failed (nothing was swapped in);
    ``invalid``: the runs stored as invalid, as the pipeline stores them (a success);
    ``unfinished``: what could not be done after the swap and how it will be (the warehouse
    is rebuilt): the runs' reports put in place, the catalog's views and marts made again."""

    runs: list[str]
    failed: list[str]
    invalid: list[str] = dataclasses.field(default_factory=list)
    unfinished: list[str] = dataclasses.field(default_factory=list)


def rebuild(
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    log_level: str | None = None,
) -> RebuildReport:
    """``progress(done, total)`` follows the runs (see ``sense_and_run``); ``log_level`` (e.g.
    ``"WARNING"``) sets the jobs' console log level (default: Dagster's, DEBUG).

    Raises ValueError for a warehouse in an object store: the new warehouse is built in a
    folder beside the old one and swapped in by renaming folders, which a bucket cannot do;
    ``storage.rebuilds.RebuildRunningError`` while another rebuild of the warehouse runs.
    """
    if settings.warehouse_location != str(settings.warehouse_root):
        raise ValueError(
            f"rebuild replaces a local warehouse folder; the warehouse at "
            f"{settings.warehouse_location} is in an object store (not supported yet)"
        )
    with one_rebuild(settings.warehouse_root):
        # Under the lock none of them is in use.
        remove_dead_rebuilds(settings, dead_rebuilds(settings))
        return _rebuild(settings, progress, log_level)


def _rebuild(
    settings: Settings,
    progress: Callable[[int, int], None] | None,
    log_level: str | None,
) -> RebuildReport:
    target = settings.warehouse_root
    tag = uuid.uuid4().hex[:8]
    building = target.with_name(f"{target.name}{BUILDING}{tag}")
    aside = dataclasses.replace(
        settings,
        warehouse_dir=building,
        # The runs' reports too, inside the folder built: the live ones stay as they are
        # until the swap (a rebuild that fails or is killed leaves them untouched).
        reports_dir=building / REPORTS,
        postgres_schema=f"{settings.postgres_schema}{SCHEMA}{tag}",
    )
    try:
        if target.exists():
            _copy_triage(open_warehouse(settings), open_warehouse(aside))
        # A throwaway instance on disk: the sensor context needs one it can reach by reference.
        with (
            tempfile.TemporaryDirectory() as home,
            dg.DagsterInstance.from_config(home) as instance,
        ):
            defs = build_definitions(aside, notify=False)
            tick = sense_and_run(defs, instance, progress=progress, log_level=log_level)
            # An invalid upload (an empty run) stops its job at the blocking validation
            # check, as under the daemon: it is rebuilt as invalid, not a failed rebuild.
            failed = tick.failed
            nightly = defs.resolve_job_def("nightly")
            if not nightly.execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_config=console_logs(log_level),
                asset_selection=_nightly_assets(nightly, settings),
            ).success:
                failed.append("nightly")
    except BaseException:
        _discard(building, aside)
        raise
    if failed:
        _discard(building, aside)
        return RebuildReport(tick.run_ids, failed, tick.invalid)
    old = target.with_name(f"{target.name}{OLD}{tag}")
    existed = target.exists()
    current = open_warehouse(settings)
    swapping = False
    try:
        # Under the alerts' lock: a delivery pass of the running pipeline either finishes
        # before the outbox is copied or works on the rebuilt warehouse after the swap.
        with locked(current):
            rebuilt = open_warehouse(aside)
            if existed:
                _carry_ingest_times(current, rebuilt)
                _copy_triage(current, rebuilt)
                rebuilt.write_snapshot("alert_deliveries", current.read("alert_deliveries"))
                rebuilt.write_snapshot(
                    "alerts", carry_over(rebuilt.read("alerts"), current.read("alerts"))
                )
            if current.mirror is not None:
                current.mirror.take_over(rebuilt.mirror)
            # Postgres holds the rebuilt rows from here on: the folders follow at once.
            swapping = True
            if target.exists():  # opening the warehouse above may have made the folder
                target.rename(old)
            building.rename(target)
    except BaseException:
        if not swapping:
            _discard(building, aside)
        raise
    shutil.rmtree(old, ignore_errors=True)
    # The warehouse is rebuilt: what fails from here is said with what is left to do, never
    # as a failed rebuild.
    unfinished = []
    try:
        _swap_reports(settings, target / REPORTS, tag)
    except Exception as exc:
        unfinished.append(
            f"the runs' reports could not be put in place ({type(exc).__name__}: {exc}); "
            "`metrics-pipeline report RUN_ID` writes one again"
        )
    try:
        _refresh_catalog(settings)
    except Exception as exc:
        unfinished.append(
            f"the catalog's views and marts could not be made again ({type(exc).__name__}: "
            f"{exc}); the next nightly job makes them"
        )
    return RebuildReport(tick.run_ids, [], tick.invalid, unfinished)


def _swap_reports(settings: Settings, built: Path, tag: str) -> None:
    """Put the runs' reports the rebuild wrote (``built``, in the warehouse folder swapped in)
    in place of the live ones, then into the bucket's ``reports/``. The weekly reports, which
    a rebuild does not make, stay."""
    from metrics_pipeline.reports.output import BUCKET_PREFIX
    from metrics_pipeline.storage.objects import object_store_from_settings

    runs = built / "runs"
    if runs.is_dir():
        live = settings.reports_root / "runs"
        old = live.with_name(f"runs{OLD}{tag}")
        live.parent.mkdir(parents=True, exist_ok=True)
        if live.exists():
            live.rename(old)
        shutil.move(runs, live)
        shutil.rmtree(old, ignore_errors=True)
        store = object_store_from_settings(settings)
        for file in sorted(path for path in live.rglob("*") if path.is_file()):
            store.put_file(BUCKET_PREFIX + file.relative_to(settings.reports_root).as_posix(), file)
    shutil.rmtree(built, ignore_errors=True)


def _nightly_assets(nightly: dg.JobDefinition, settings: Settings) -> list[dg.AssetKey] | None:
    """What the rebuild's nightly run materialises: all of it, but the marts when there is a
    Postgres mirror. Those would be built in the rebuild's schema, which goes at the swap, and
    they are built in the live one after it (``_refresh_catalog``), the DuckDB catalog's too."""
    if not settings.postgres_url:
        return None
    marts = {spec.key for spec in MART_SPECS}
    return sorted(nightly.asset_layer.executable_asset_keys - marts)


def _discard(building, aside: Settings) -> None:
    """Remove what a rebuild that does not replace the warehouse built."""
    shutil.rmtree(building, ignore_errors=True)
    if aside.postgres_url:
        # Best effort: a leftover schema hides nothing, and the failure that brought the
        # rebuild here (Postgres gone, say) is the one to report.
        with contextlib.suppress(Exception):
            PostgresWarehouse(aside.postgres_url, aside.postgres_schema).drop_schema()


def _carry_ingest_times(current: Warehouse, rebuilt: Warehouse) -> None:
    """Give each rebuilt run the ``ingested_at`` it has in ``current`` when the same upload
    version was ingested there, in ``runs`` and in the ``run_baselines`` of the runs judged
    against it: a rebuild replays an ingest, it is not a new one, and retention counts a run's
    age from its ingest (every raw row would otherwise be kept another ``raw_days``)."""
    before = current.read("runs").select(
        "run_id", "upload_version", pl.col("ingested_at").alias("first_ingested_at")
    )
    replayed = (
        rebuilt.read("runs")
        .join(before, on=["run_id", "upload_version"], how="inner", nulls_equal=True)
        .filter(pl.col("first_ingested_at") != pl.col("ingested_at"))
    )
    carried = replayed.with_columns(ingested_at="first_ingested_at").drop("first_ingested_at")
    for (run_id,), row in carried.partition_by("run_id", as_dict=True).items():
        rebuilt.write_partition("runs", run_id, row)
    # The runs judged against a replayed run recorded the rebuild's ingest of it: they read
    # the same upload, so they record the carried time (else every verdict looked stale).
    moved = replayed.select(
        baseline_run_id="run_id", baseline_ingested_at="ingested_at", _carried="first_ingested_at"
    )
    compared = rebuilt.read("run_baselines").join(
        moved, on=["baseline_run_id", "baseline_ingested_at"], how="left"
    )
    touched = compared.filter(pl.col("_carried").is_not_null())["run_id"].unique()
    compared = compared.with_columns(
        baseline_ingested_at=pl.coalesce("_carried", "baseline_ingested_at")
    ).drop("_carried")
    for run_id in touched:
        rebuilt.write_partition(
            "run_baselines", run_id, compared.filter(pl.col("run_id") == run_id)
        )


def _copy_triage(current: Warehouse, rebuilt: Warehouse) -> None:
    """The triage marks of ``current`` into ``rebuilt``, under the lock marks are made with."""
    with current.lock(TRIAGE_LOCK):
        rebuilt.write_snapshot("triage", current.read("triage"))


def _refresh_catalog(settings: Settings) -> None:
    """Point the views of ``warehouse.duckdb`` at the tables' files where they are now: they
    were made while the tables were in the build folder, which no longer exists. With a
    Postgres mirror, build the marts again, there too: the rebuild's marts went with its
    schema."""
    warehouse = open_warehouse(settings)
    if warehouse.mirror is None:
        warehouse.refresh_catalog()
    else:
        build_marts(warehouse)
