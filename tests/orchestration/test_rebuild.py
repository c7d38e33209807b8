"""`rebuild` re-creates the warehouse from the bucket and yields the same tables and marts."""

from __future__ import annotations

import dataclasses
import fcntl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import psycopg
import pytest
from conftest import upload_demo_runs
from receivers import http_receiver
from servers import new_database
from typer.testing import CliRunner

from metrics_pipeline.alerts.lifecycle import Signals
from metrics_pipeline.alerts.signals import pipeline_failure_signal
from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.orchestration.rebuild import rebuild
from metrics_pipeline.orchestration.resources import AlertingResource
from metrics_pipeline.settings import Settings
from metrics_pipeline.stages.ci import stale_judgements
from metrics_pipeline.stages.triage import mark_alert
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.rebuilds import REPORTS, RebuildRunningError
from metrics_pipeline.upload.uploader import upload_run

pytestmark = pytest.mark.slow
# The pipeline's clock, frozen far from the day the test runs (runs are dated relative to it).
NOW = datetime(2031, 3, 15, 12, 0, tzinfo=UTC)
TABLES = ("requests", "quarantine", "run_summary", "latency_sketches", "run_baselines", "verdicts")
MARTS = ("run_tiers", "run_endpoint_summary", "metric_daily")


def snapshot(settings: Settings) -> dict[str, pl.DataFrame]:
    warehouse = Warehouse(settings.warehouse_root)
    frames = {t: warehouse.read(t) for t in (*TABLES, "runs")}
    with duckdb.connect(str(settings.warehouse_root / "warehouse.duckdb"), read_only=True) as con:
        frames |= {m: con.sql(f"select * from {m}").pl() for m in MARTS}
        # The catalog's views read the tables where they are, not in the build folder.
        frames["runs (view)"] = con.sql("select * from runs").pl()
    return {name: frame.sort(frame.columns) for name, frame in frames.items()}


def test_rebuild_from_the_bucket_gives_the_same_warehouse(
    settings, store, tmp_path, monkeypatch, capfd, postgres_url
):
    # With a Postgres mirror: its tables are built in a schema of their own, then copied
    # over the live ones, and the marts built again where readers look.
    url = new_database(postgres_url)
    monkeypatch.setenv("METRICS_POSTGRES_URL", url)
    settings = dataclasses.replace(settings, postgres_url=url)
    upload_demo_runs(store, tmp_path / "runs", count=3)
    assert rebuild(settings).failed == []
    first = snapshot(settings)
    assert first["requests"].height > 0 and first["verdicts"]["regression"].any()

    # Lose the warehouse entirely (and a mart of the mirror), then rebuild through the command.
    Warehouse(settings.warehouse_root).delete_partition("requests", first["runs"]["run_id"][0])
    with psycopg.connect(url) as con:
        con.execute("truncate metrics.run_tiers")
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    monkeypatch.setenv("METRICS_BASELINES", str(settings.baselines_file))
    capfd.readouterr()
    result = CliRunner().invoke(app, ["rebuild"])
    assert result.exit_code == 0, result.output
    # As quiet as the demo: none of Dagster's step logs (hundreds of DEBUG lines) by default.
    printed = result.output + "".join(capfd.readouterr())
    assert " - DEBUG - " not in printed and "rebuilt " in result.output
    second = snapshot(settings)
    # Every table as it was, the runs' ingest times too: a rebuild replays the ingests (with
    # its own times, retention would keep every raw row another 30 days).
    for name, frame in first.items():
        assert frame.equals(second[name]), name
    # So no verdict reads as judged against another ingest of its baseline runs.
    assert stale_judgements(Warehouse(settings.warehouse_root)).height == 0
    # No leftovers of the swap; the rebuild lock stays, like the warehouse's own lock files.
    assert [path.name for path in settings.home.glob("warehouse.*")] == ["warehouse.rebuild.lock"]
    assert mirrored(url) == parquet(settings) and schemas(url) == {"metrics"}
    with psycopg.connect(url) as con:
        (runs,) = con.execute("select count(distinct run_id) from metrics.run_tiers").fetchone()
    assert runs == second["runs"].height == 3


def test_a_rebuild_notifies_nobody_and_keeps_the_outbox(settings, store, tmp_path):
    with http_receiver() as hook:
        config = tmp_path / "alerting.yaml"
        config.write_text(
            f"channels:\n  hook: {{type: webhook, url: '{hook.url}'}}\n"
            "routes:\n  - {severities: [critical, warning, info], channels: [hook]}\n"
            "escalation: {after: 60m, severities: [critical], channels: [hook]}\n"
        )
        settings = dataclasses.replace(settings, alerting_config=config, now=NOW)
        alerting = AlertingResource.from_settings(settings)
        upload_demo_runs(store, tmp_path / "runs", count=3, now=NOW)
        with dg.instance_for_test() as instance:
            assert not sense_and_run(build_definitions(settings), instance).failed
        live = Warehouse(settings.warehouse_root)
        # The live pipeline went on: its critical alerts were escalated an hour later, and a
        # notification waits in the outbox for a receiver that failed.
        later = NOW + timedelta(hours=2)
        alerting.apply(live, lambda config, now: Signals(), later)
        hook.failures_left = 1
        failure = pipeline_failure_signal("nightly", None, None, "boom", "dagster-run-1")
        alerting.apply(live, lambda config, now: Signals([failure]), later)
        told = list(hook.bodies)
        assert {b["event"] for b in told} == {"opened", "escalated"}
        alerts, outbox = live.read("alerts"), live.read("alert_deliveries")
        assert outbox.filter(pl.col("delivered_at").is_null()).height == 1

        assert rebuild(settings).failed == []
        # History replayed: its alerts rebuilt, nothing sent, nothing queued.
        assert hook.bodies == told
        rebuilt = Warehouse(settings.warehouse_root)
        assert (
            rebuilt.read("alert_deliveries").sort("delivery_id").equals(outbox.sort("delivery_id"))
        )
        # Those the runs give again are recomputed (and keep what a person did); the pipeline
        # failure, which no run gives, is kept as it was: its notification still waits.
        columns = ["alert_id", "status", "opened_at", "escalated_at", "first_run_id"]
        assert (
            rebuilt.read("alerts")
            .sort("alert_id")
            .select(columns)
            .equals(alerts.sort("alert_id").select(columns))
        )
        # The next pass sends what waited, and escalates nothing a second time.
        alerting.apply(rebuilt, lambda config, now: Signals(), later + timedelta(hours=1))
        # (The pipeline failure, kept, is critical and now an hour old: its first escalation
        # is due, as it would have been without the rebuild.)
        sent = [(body["kind"], body["event"]) for body in hook.bodies[len(told) :]]
        assert sent == [("pipeline_failure", "opened"), ("pipeline_failure", "escalated")]


def test_a_rebuild_keeps_the_triage_marks(settings, store, tmp_path):
    # A person marked the regression a false alarm: the runs alone would raise it again.
    settings = dataclasses.replace(settings, now=NOW)
    upload_demo_runs(store, tmp_path / "runs", count=2, now=NOW)
    with dg.instance_for_test() as instance:
        assert not sense_and_run(build_definitions(settings), instance).failed
    live = Warehouse(settings.warehouse_root)
    regressions = live.read("alerts").filter(pl.col("kind") == "regression")["alert_id"]
    assert regressions.len()
    for alert_id in regressions:
        mark_alert(live, alert_id, "invalid", note="noisy neighbour", marked_by="ann", now=NOW)
    marks = live.read("triage")

    assert rebuild(settings).failed == []
    rebuilt = Warehouse(settings.warehouse_root)
    assert rebuilt.read("triage").equals(marks)
    alerts = rebuilt.read("alerts")
    assert alerts.filter(
        (pl.col("kind") == "regression") & (pl.col("status") != "resolved")
    ).is_empty()


def upload_empty_run(store, folder, like: RunManifest, run_id: str = "empty-1") -> None:
    """An upload with no data (an empty result file): a valid manifest, an invalid run."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requests.ndjson").write_text("")
    upload_run(store, [folder / "requests.ndjson"], like.model_copy(update={"run_id": run_id}))


def test_an_invalid_upload_is_rebuilt_as_invalid(settings, store, tmp_path):
    # An empty run is kept, never a baseline (README): under the daemon its job stops at the
    # blocking validation check. A rebuild must store it so, not give up on the warehouse.
    runs = upload_demo_runs(store, tmp_path / "runs", count=2)
    upload_empty_run(store, tmp_path / "empty", runs[0].manifest)
    report = rebuild(settings)
    assert report.failed == [] and report.invalid == ["empty-1"]
    warehouse = Warehouse(settings.warehouse_root)
    empty = warehouse.read("runs", ["empty-1"]).row(0, named=True)
    assert empty["valid"] is False and "no request or interval data" in empty["invalid_reason"]
    assert warehouse.read("verdicts", ["empty-1"]).height == 0
    assert warehouse.read("verdicts", [runs[-1].manifest.run_id])["regression"].any()


def test_rebuild_refuses_a_warehouse_in_an_object_store(tmp_path, monkeypatch):
    # Building aside and renaming folders cannot replace a bucket's warehouse: a rebuild that
    # filled a local folder instead would report success and leave the shared one as it was.
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METRICS_WAREHOUSE", "s3://shared/warehouse")
    with pytest.raises(ValueError, match="object store"):
        rebuild(Settings.from_env())
    result = CliRunner().invoke(app, ["rebuild"])
    assert result.exit_code == 2
    assert "s3://shared/warehouse is in an object store" in result.output
    assert not (tmp_path / "home").exists()


def test_with_postgres_a_failed_rebuild_leaves_the_live_tables_as_they_were(
    settings, store, tmp_path, postgres_url, monkeypatch
):
    url = new_database(postgres_url)
    monkeypatch.setenv("METRICS_POSTGRES_URL", url)  # the jobs' resource reads it there
    settings = dataclasses.replace(settings, postgres_url=url, now=NOW)
    upload_demo_runs(store, tmp_path / "runs", count=2, now=NOW)
    # What a rebuild killed midway leaves: its folders and its schema, removed by the next.
    dead = [settings.home / "warehouse.rebuild-0badc0de", settings.home / "warehouse.old-0badc0de"]
    for folder in dead:
        (folder / "requests").mkdir(parents=True)
    with psycopg.connect(url) as con:
        con.execute("create schema metrics_rebuild_0badc0de")
    assert rebuild(settings).failed == []
    assert not any(folder.exists() for folder in dead) and schemas(url) == {"metrics"}
    before = mirrored(url)
    assert before == parquet(settings) and before["requests"] > 0
    # The marts, built once, after the swap, in the live schema (and the DuckDB catalog).
    with psycopg.connect(url) as con:
        assert con.execute("select count(*) from metrics.run_tiers").fetchone()[0] == 2
    with Warehouse(settings.warehouse_root).open_catalog() as catalog:
        assert catalog.execute("select count(*) from run_tiers").fetchone()[0] == 2

    # The reports are the rebuild's, in the folder and the bucket, once it is swapped in.
    reports = sorted(settings.reports_root.glob("runs/*/summary.md"))
    assert len(reports) == 2 and not (settings.warehouse_root / REPORTS).exists()
    for report in reports:
        key = f"reports/{report.relative_to(settings.reports_root).as_posix()}"
        assert store.get_bytes(key) == report.read_bytes()

    # A third run arrives, and the rebuild fails after its runs were ingested (the baseline
    # file no longer parses): Postgres readers saw none of it, and nothing is left behind.
    # (Rebuilt in the live schema, these tables held 2.3x their rows, the new run's and more.)
    upload_demo_runs(store, tmp_path / "runs", count=3, now=NOW)
    settings.baselines_file.write_text("baselines: [")
    assert rebuild(settings).failed
    assert mirrored(url) == before == parquet(settings)
    assert schemas(url) == {"metrics"}


def mirrored(url: str) -> dict[str, int]:
    """Rows per table in the mirror's live schema."""
    with psycopg.connect(url) as con:
        return {
            table: con.execute(f'select count(*) from metrics."{table}"').fetchone()[0]
            for table in TABLES
        }


def parquet(settings: Settings) -> dict[str, int]:
    warehouse = Warehouse(settings.warehouse_root)
    return {table: warehouse.read(table).height for table in TABLES}


def schemas(url: str) -> set[str]:
    with psycopg.connect(url) as con:
        rows = con.execute("select nspname from pg_namespace where nspname like 'metrics%'")
        return {name for (name,) in rows}


def test_a_rebuild_killed_midway_leaves_the_live_reports_as_they_were(settings, store, tmp_path):
    # The rebuild's jobs wrote the runs' reports over the live ones as they went: killed
    # midway, it left the old warehouse beside reports of the discarded build.
    import os
    import signal
    import subprocess
    import sys
    import time

    upload_demo_runs(store, tmp_path / "runs", count=2)
    assert rebuild(settings).failed == []
    live = {}
    for report in settings.reports_root.glob("runs/*/summary.md"):
        report.write_bytes(report.read_bytes() + b"\n(the live report)\n")
        live[report] = report.read_bytes()
    assert len(live) == 2
    env = os.environ | {
        "METRICS_HOME": str(settings.home),
        "METRICS_BASELINES": str(settings.baselines_file),
    }
    env.pop("METRICS_POSTGRES_URL", None)
    command = [str(Path(sys.executable).with_name("metrics-pipeline")), "rebuild"]
    rebuilding = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    # Killed once it has written a report, wherever it writes them (a guard, not a timing).
    deadline = time.monotonic() + 300
    while rebuilding.poll() is None and time.monotonic() < deadline:
        aside = list(settings.home.glob(f"warehouse.rebuild-*/{REPORTS}/runs/*/summary.md"))
        if aside or any(report.read_bytes() != text for report, text in live.items()):
            break
        time.sleep(0.05)
    rebuilding.send_signal(signal.SIGKILL)
    rebuilding.wait()
    assert rebuilding.returncode == -signal.SIGKILL, rebuilding.stderr.read().decode()
    assert {report: report.read_bytes() for report in live} == live
    # What it left, its reports with it, is one folder the next rebuild removes.
    assert len(list(settings.home.glob("warehouse.rebuild-*"))) <= 1


def test_one_rebuild_at_a_time(settings, store, tmp_path, monkeypatch):
    settings.home.mkdir(parents=True)
    with (settings.home / "warehouse.rebuild.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another rebuild of this warehouse, running
        with pytest.raises(RebuildRunningError, match=r"another rebuild of .* is running"):
            rebuild(settings)
        monkeypatch.setenv("METRICS_HOME", str(settings.home))
        monkeypatch.setenv("METRICS_BASELINES", str(settings.baselines_file))
        result = CliRunner().invoke(app, ["rebuild"])
        assert result.exit_code == 2 and "another rebuild" in result.stderr
