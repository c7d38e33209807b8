"""``metrics-pipeline check`` finds partitions where Parquet and Postgres differ; ``--repair``
mends them from Parquet."""

from __future__ import annotations

import psycopg
import pytest
from conftest import upload_demo_runs
from servers import new_database
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.ingest.files import ingest_from_store
from metrics_pipeline.storage import PostgresWarehouse, Warehouse

pytestmark = pytest.mark.services


def test_check_finds_a_drifted_mirror_and_repair_mends_it(
    postgres_url, settings, store, tmp_path, monkeypatch
):
    url = new_database(postgres_url)  # the command uses the default schema
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    monkeypatch.setenv("METRICS_POSTGRES_URL", url)
    warehouse = Warehouse(settings.warehouse_root, PostgresWarehouse(url))
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1)
    ingest_from_store(store, warehouse, run.manifest.run_id)
    runner = CliRunner()
    assert runner.invoke(app, ["check"]).exit_code == 0

    # Someone deleted rows in Postgres by hand: the counts differ.
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("delete from metrics.requests where line_no < 10")
    found = runner.invoke(app, ["check"])
    assert found.exit_code == 1
    assert "requests" in found.output and run.manifest.run_id in found.output

    assert runner.invoke(app, ["check", "--repair"]).exit_code == 0
    assert runner.invoke(app, ["check"]).exit_code == 0


def test_check_counts_leftovers_of_interrupted_writes_and_repair_removes_them(
    settings, tmp_path, monkeypatch
):
    import os

    import polars as pl

    from metrics_pipeline.contracts.tables import conform

    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    monkeypatch.delenv("METRICS_POSTGRES_URL", raising=False)
    warehouse = Warehouse(settings.warehouse_root)
    frame = conform("requests", pl.DataFrame({"endpoint": ["/a"], "latency_ms": [1.0]}))
    warehouse.write_partition("requests", "r1", frame)
    killed = settings.warehouse_root / ".staging" / "r1-killed"
    killed.mkdir(parents=True)
    old = killed.stat().st_mtime - 2 * 24 * 3600
    os.utime(killed, (old, old))
    runner = CliRunner()

    found = runner.invoke(app, ["check"])
    assert found.exit_code == 0, found.output  # leftovers are not a difference
    assert "1 leftover(s) of interrupted writes over a day old found" in found.output
    repaired = runner.invoke(app, ["check", "--repair"])
    assert repaired.exit_code == 0 and "1 leftover(s)" in repaired.output
    assert not killed.exists()
    assert "leftover" not in runner.invoke(app, ["check"]).output


def test_check_lists_what_dead_rebuilds_left_and_repair_removes_it(
    postgres_url, settings, monkeypatch
):
    import fcntl

    url = new_database(postgres_url)
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    monkeypatch.setenv("METRICS_POSTGRES_URL", url)
    Warehouse(settings.warehouse_root, PostgresWarehouse(url))  # the live schema
    runner = CliRunner()
    assert "rebuild" not in runner.invoke(app, ["check"]).output
    assert not (settings.home / "warehouse.rebuild.lock").exists()  # check made none
    # What a rebuild killed midway leaves: its lock file, its folders and its Postgres schema.
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "warehouse.rebuild.lock").touch()
    dead = [settings.home / "warehouse.rebuild-0badc0de", settings.home / "warehouse.old-0badc0de"]
    for folder in dead:
        (folder / "requests").mkdir(parents=True)
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("create schema metrics_rebuild_0badc0de")
        con.execute("create schema metrics_rebuild_notatag")  # not a rebuild's name: kept

    found = runner.invoke(app, ["check"])
    assert found.exit_code == 0, found.output  # leftovers are not a difference
    assert "3 leftover(s) of rebuilds that did not end found" in found.output
    assert all(str(folder) in found.output for folder in dead)
    assert "Postgres schema metrics_rebuild_0badc0de" in found.output
    assert all(folder.exists() for folder in dead)

    # While a rebuild runs, its folder and schema are its own, not leftovers.
    with (settings.home / "warehouse.rebuild.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        running = runner.invoke(app, ["check", "--repair"])
    assert running.exit_code == 0 and "a rebuild is running" in running.output
    assert all(folder.exists() for folder in dead)

    repaired = runner.invoke(app, ["check", "--repair"])
    assert repaired.exit_code == 0 and "3 leftover(s) of rebuilds" in repaired.output
    assert not any(folder.exists() for folder in dead)
    with psycopg.connect(url) as con:
        rows = con.execute("select nspname from pg_namespace where nspname like 'metrics%'")
        assert {name for (name,) in rows} == {"metrics", "metrics_rebuild_notatag"}
    assert "rebuild" not in runner.invoke(app, ["check"]).output
