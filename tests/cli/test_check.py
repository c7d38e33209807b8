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
