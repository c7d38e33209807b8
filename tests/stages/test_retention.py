"""Retention with an injected clock: raw rows after 30 days, aggregates after a year, never
what a baseline needs; a dry run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.stages.retention import RetentionPolicy, apply_plan, plan_for
from metrics_pipeline.storage import Warehouse

NOW = datetime(2026, 11, 23, tzinfo=UTC)
AGES = {"ancient": 400, "old": 100, "old-pinned": 90, "month": 40, "recent": 5}


def fill(warehouse: Warehouse, combination_runs: int = 0) -> None:
    for run_id, age in AGES.items():
        started = NOW - timedelta(days=age)
        run = {
            "run_id": run_id,
            "suite": "s",
            "scenario": "x",
            "environment": "e",
            "started_at": started,
            "valid": True,
        }
        warehouse.write_partition("runs", run_id, conform("runs", pl.DataFrame([run])))
        request = {
            "run_id": run_id,
            "ts": started,
            "endpoint": "/a",
            "ok": True,
            "latency_ms": 1.0,
            "source_file": "f",
            "line_no": 1,
        }
        warehouse.write_partition("requests", run_id, conform("requests", pl.DataFrame([request])))
        summary = {"run_id": run_id, "endpoint": "/a", "latency_p50": 1.0}
        warehouse.write_partition(
            "run_summary", run_id, conform("run_summary", pl.DataFrame([summary]))
        )
    # Five newer accepted runs of another combination keep the rolling baseline off these.
    for i in range(5):
        run_id = f"other-{i}"
        run = {
            "run_id": run_id,
            "suite": "t",
            "scenario": "x",
            "environment": "e",
            "started_at": NOW - timedelta(days=1 + i),
            "valid": True,
        }
        warehouse.write_partition("runs", run_id, conform("runs", pl.DataFrame([run])))


def test_plan_deletes_raw_after_30_days_aggregates_after_a_year_and_spares_baselines(tmp_path):
    warehouse = Warehouse(tmp_path)
    fill(warehouse)
    # Within suite "s" the rolling baseline is its last 5 accepted runs: all of them. Mark
    # three as regressed so only two ("month", "recent") are needed, and pin "old-pinned".
    verdicts = {"run_id": "x", "endpoint": "/a", "metric": "latency_p50", "regression": True}
    for run_id in ("ancient", "old", "old-pinned"):
        warehouse.write_partition(
            "verdicts", run_id, conform("verdicts", pl.DataFrame([verdicts | {"run_id": run_id}]))
        )
    plan = plan_for(warehouse, NOW, RetentionPolicy(), pinned=["old-pinned"])
    assert ("requests", "old") in plan.deletions and ("requests", "ancient") in plan.deletions
    assert ("runs", "ancient") in plan.deletions and ("run_summary", "ancient") in plan.deletions
    assert ("run_summary", "old") not in plan.deletions
    assert not any(run in {"old-pinned", "month", "recent"} for _, run in plan.deletions)
    assert "old-pinned" in plan.protected

    before = {t: warehouse.run_ids(t) for t in ("requests", "runs")}
    apply_plan(warehouse, plan)
    assert warehouse.run_ids("requests") == sorted(set(before["requests"]) - {"ancient", "old"})
    assert "ancient" not in warehouse.run_ids("runs") and "old" in warehouse.run_ids("runs")
    # Applying again finds nothing more: retention is idempotent.
    assert plan_for(warehouse, NOW, RetentionPolicy(), pinned=["old-pinned"]).deletions == []


def test_shorter_policies_and_the_dry_run_command(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    monkeypatch.setenv("METRICS_BASELINES", str(tmp_path / "none.yaml"))
    warehouse = Warehouse(tmp_path / "warehouse")
    fill(warehouse)
    runner = CliRunner()
    dry = runner.invoke(
        app, ["retention", "--dry-run", "--raw-days", "1", "--now", NOW.isoformat()]
    )
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.stdout
    assert "recent" in warehouse.run_ids("requests")  # nothing deleted by a dry run
    done = runner.invoke(app, ["retention", "--raw-days", "1", "--now", NOW.isoformat()])
    assert done.exit_code == 0, done.output
    # Every run of suite "s" is in its rolling baseline (5 accepted runs): all are protected.
    assert warehouse.run_ids("requests") == sorted(AGES)
