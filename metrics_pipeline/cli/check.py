"""``metrics-pipeline check``: do the Parquet warehouse and its Postgres mirror hold the same
rows, partition by partition? And ``--repair`` to make them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from metrics_pipeline.cli.output import console, err
from metrics_pipeline.settings import Settings


def check(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rewrite every differing partition of the Postgres mirror from Parquet, and "
            "remove what interrupted writes and rebuilds left behind.",
        ),
    ] = False,
) -> None:
    """Compare row counts and checksums of every partition in Parquet and in Postgres (when
    METRICS_POSTGRES_URL is set), list publications a fault interrupted, count what
    interrupted writes left behind (staging files, unpublished objects) over a day old, and
    list what rebuilds that did not end left (folders beside the warehouse, Postgres schemas)
    and the runs judged against a baseline run uploaded again since. Exit 1 when something
    differs (0 after --repair mended it); leftovers and such runs alone do not fail."""
    from metrics_pipeline.storage import integrity, open_warehouse

    settings = Settings.from_env()
    warehouse = open_warehouse(settings)
    results = integrity.check(warehouse)
    bad = [c for c in results if not c.ok]
    mirrored = "Parquet and Postgres" if warehouse.mirror else "Parquet (no Postgres mirror)"
    console.print(f"{len(results)} partitions checked in {mirrored}: {len(bad)} differ")
    for c in bad:
        # One plain line per partition: greppable in a CI log, whatever the terminal width.
        where = f"{c.table} run {c.run_id}" if c.run_id else f"{c.table} (snapshot)"
        if c.postgres_rows is None:  # no mirror: only a cut publication fails
            console.print(
                f"  {escape(where)}: parquet {c.parquet_rows} rows, publication interrupted "
                "between tables: ingest the run again",
                soft_wrap=True,
            )
            continue
        sums = "equal" if c.parquet_checksum == c.postgres_checksum else "differ"
        pending = ", publication interrupted" if c.pending else ""
        console.print(
            f"  {escape(where)}: parquet {c.parquet_rows} rows, postgres {c.postgres_rows} "
            f"rows, checksums {sums}{pending}",
            soft_wrap=True,
        )
    leftovers = warehouse.leftovers()
    if leftovers:
        verb = "removed" if repair else "found (--repair removes them)"
        console.print(
            f"{len(leftovers)} leftover(s) of interrupted writes over a day old {verb}",
            soft_wrap=True,
        )
        if repair:
            warehouse.remove_leftovers(leftovers)
    _dead_rebuilds(settings, repair)
    _stale_verdicts(warehouse)
    if bad and repair:
        integrity.repair(warehouse)
        still = [c for c in integrity.check(warehouse) if not c.ok]
        err.print(f"repaired {len(bad) - len(still)} partition(s) from Parquet")
        if not still:
            return
    if bad:
        raise typer.Exit(1)


def _dead_rebuilds(settings: Settings, repair: bool) -> None:
    """List (and with ``repair`` remove) what rebuilds that did not end left; nothing while a
    rebuild runs (its folder and schema look the same)."""
    from metrics_pipeline.storage.rebuilds import (
        RebuildRunningError,
        dead_rebuilds,
        lock_file,
        one_rebuild,
        remove_dead_rebuilds,
    )

    if settings.warehouse_location != str(settings.warehouse_root):
        return  # a warehouse in a bucket is never rebuilt
    if not lock_file(settings.warehouse_root).exists():
        return  # no rebuild ever ran here (each makes the lock file first)

    try:
        with one_rebuild(settings.warehouse_root):
            dead = dead_rebuilds(settings)
            if dead and repair:
                remove_dead_rebuilds(settings, dead)
    except RebuildRunningError:
        console.print("a rebuild is running: its folder and schema are not leftovers")
        return
    if dead:
        verb = "removed" if repair else "found (--repair removes them)"
        console.print(f"{len(dead)} leftover(s) of rebuilds that did not end {verb}:")
        for name in dead.names():
            console.print(f"  {escape(name)}", soft_wrap=True)


def _stale_verdicts(warehouse) -> None:
    """List the runs judged against a baseline run ingested again since; the daemon's
    ``stale_verdicts_sensor`` judges them again (they are not a fault of the warehouse)."""
    from metrics_pipeline.stages.ci import stale_judgements

    stale = stale_judgements(warehouse)
    if stale.height == 0:
        return
    console.print(
        f"{stale['run_id'].n_unique()} run(s) judged against a baseline run ingested again "
        "since (the daemon's stale_verdicts_sensor judges them again):",
        soft_wrap=True,
    )
    for row in stale.iter_rows(named=True):
        now = f"again at {row['ingested_at']:%Y-%m-%d %H:%M:%S}Z" if row["ingested_at"] else "gone"
        kept = "" if row["judgeable"] else " (its raw rows are past retention: it stays as it is)"
        console.print(
            f"  {escape(row['run_id'])}: baseline run {escape(row['baseline_run_id'])} "
            f"as ingested at {row['judged_against']:%Y-%m-%d %H:%M:%S}Z, now {now}{kept}",
            soft_wrap=True,
        )
