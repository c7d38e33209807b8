"""`metrics-pipeline sql`: the warehouse queried without a DuckDB CLI; every documented table is
a view, also before it has rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import TABLES

runner = CliRunner()


def test_every_documented_table_is_a_view_of_its_schema_before_any_data(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    for name, table in TABLES.items():
        result = runner.invoke(app, ["sql", f"select * from {name}", "--format", "json"])
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout) == []
        described = runner.invoke(app, ["sql", f"describe {name}", "--format", "json"])
        assert [row["column_name"] for row in json.loads(described.stdout)] == list(table.schema)


def test_queries_an_ingested_run_in_every_format(fixtures_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "q-1"]
    ingested = runner.invoke(
        app, ["ingest", str(fixtures_dir / "locust" / "requests.ndjson"), *args]
    )
    assert ingested.exit_code == 0, ingested.output
    query = "select count(*) as n, count(distinct endpoint) as endpoints from requests"
    as_json = runner.invoke(app, ["sql", query, "--format", "json"])
    assert json.loads(as_json.stdout) == [{"n": 3534, "endpoints": 4}]
    as_csv = runner.invoke(app, ["sql", query, "--format", "csv"])
    assert as_csv.stdout.splitlines() == ["n,endpoints", "3534,4"]
    as_table = runner.invoke(app, ["sql", query])
    assert "3534" in as_table.stdout and "1 row(s)" in as_table.stdout


def test_a_bad_statement_exits_2_and_the_shell_goes_on_after_one(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    bad = runner.invoke(app, ["sql", "selec 1"])
    assert bad.exit_code == 2 and "syntax error" in bad.output
    shell = runner.invoke(
        app,
        ["sql", "--format", "csv"],
        input="select 1 as a\nselect nope\n\nselect 2 as b;\n.quit\n",
    )
    assert shell.exit_code == 0, shell.output
    assert "a\n1\n" in shell.stdout and "b\n2\n" in shell.stdout
    assert "nope" in shell.output  # the error, and the shell went on
    assert runner.invoke(app, ["sql", "select 1", "--format", "xml"]).exit_code == 2


def test_an_open_sql_session_keeps_no_lock_the_pipeline_needs(fixtures_dir, tmp_path):
    # An analyst's shell stays open while the pipeline ingests, refreshes the catalog and
    # builds the marts in its file: DuckDB lets a process write a database file only while no
    # other process has it open.
    from metrics_pipeline.stages.nightly import build_marts
    from metrics_pipeline.storage import Warehouse

    env = os.environ | {"METRICS_HOME": str(tmp_path)}
    locust = fixtures_dir / "locust" / "requests.ndjson"
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci"]
    cli = str(Path(sys.executable).with_name("metrics-pipeline"))
    ingest = [cli, "ingest", str(locust), *args]
    subprocess.run([*ingest, "--run-id", "r1"], env=env, check=True, capture_output=True)
    warehouse = Warehouse(tmp_path / "warehouse")
    build_marts(warehouse)
    shell = subprocess.Popen(
        [cli, "sql", "--format", "csv"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        shell.stdin.write("select count(*) as n from run_endpoint_summary\n")
        shell.stdin.write("select count(*) as n from stg_requests\n")
        shell.stdin.flush()
        assert shell.stdout.readline().strip() == "n"  # the session is open, marts copied
        assert int(shell.stdout.readline()) == 4
        assert shell.stdout.readline().strip() == "n"  # and the models' views defined
        assert int(shell.stdout.readline()) == 3534
        subprocess.run([*ingest, "--run-id", "r2"], env=env, check=True, capture_output=True)
        assert set(build_marts(warehouse)) >= {"run_endpoint_summary"}
    finally:
        shell.stdin.close()
        shell.wait(timeout=60)
    assert shell.returncode == 0


def test_only_queries_run_so_the_warehouse_stays_as_it_is(fixtures_dir, tmp_path, monkeypatch):
    # The catalog was opened read-only, but COPY ... TO wrote a Parquet file into a run's
    # partition (its rows twice, and `check` saw nothing) and ATTACH could drop a mart.
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    runner = CliRunner()
    locust = fixtures_dir / "locust" / "requests.ndjson"
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "r1"]
    assert runner.invoke(app, ["ingest", str(locust), *args]).exit_code == 0
    before = runner.invoke(app, ["sql", "select count(*) as n from requests", "--format", "csv"])
    partition = tmp_path / "warehouse" / "requests" / "run_id=r1"
    for statement in (
        f"copy (select * exclude (run_id) from requests) to '{partition}/evil.parquet'",
        f"attach '{tmp_path / 'warehouse.duckdb'}' as w",
        "create table t as select 1",
        "set threads = 1",
        "select 1; drop view requests",
    ):
        result = runner.invoke(app, ["sql", statement])
        assert result.exit_code == 2 and "only queries (SELECT, EXPLAIN) run here" in result.stderr
    assert (
        sorted(p.name for p in partition.iterdir()) != []
        and not (partition / "evil.parquet").exists()
    )
    after = runner.invoke(app, ["sql", "select count(*) as n from requests", "--format", "csv"])
    assert after.stdout == before.stdout
    for query in ("describe requests", "explain select 1", "show tables", "from runs"):
        assert runner.invoke(app, ["sql", query]).exit_code == 0, query
    shell = runner.invoke(app, ["sql"], input="copy (select 1) to 'x.csv'\nselect 41 + 1 as n\n")
    assert "only queries" in shell.stderr and "42" in shell.stdout
