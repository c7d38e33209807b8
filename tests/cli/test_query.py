"""`metrics-pipeline sql`: the warehouse queried without a DuckDB CLI; every documented table is
a view, also before it has rows."""

from __future__ import annotations

import json

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
