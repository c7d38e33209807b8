"""The Postgres warehouse against a real PostgreSQL cluster started by the tests."""

from __future__ import annotations

import uuid

import polars as pl
import pytest

from metrics_pipeline.analysis.summary import summarize_requests
from metrics_pipeline.formats import read_results
from metrics_pipeline.storage.postgres import PostgresWarehouse

pytestmark = pytest.mark.services


@pytest.fixture
def pg(postgres_url) -> PostgresWarehouse:
    warehouse = PostgresWarehouse(postgres_url, schema=f"t_{uuid.uuid4().hex[:8]}")
    warehouse.migrate()
    return warehouse


def test_partitions_round_trip_and_replace_without_duplicates(pg, fixtures_dir):
    requests = read_results(fixtures_dir / "locust" / "requests.ndjson").requests.with_columns(
        run_id=pl.lit("r1")
    )
    for _ in range(2):
        pg.replace_partition("requests", "r1", requests)
    stored = pg.read("requests").sort("line_no")
    assert stored.height == requests.height
    assert stored.equals(requests.sort("line_no"))

    summary = summarize_requests(requests)
    pg.replace_partition("run_summary", "r1", summary)
    pg.replace_partition("run_summary", "r2", summary.with_columns(run_id=pl.lit("r2")))
    pg.replace_partition("run_summary", "r1", summary.head(1))
    assert pg.read("run_summary", "run_id = %s", ("r1",)).height == 1
    assert pg.read("run_summary", "run_id = %s", ("r2",)).height == summary.height


def test_a_failed_transaction_leaves_every_table_of_the_run_old(pg):
    pg.replace_partition("run_summary", "r1", pl.DataFrame({"run_id": ["r1"], "endpoint": ["/a"]}))
    pg.replace_partition("runs", "r1", pl.DataFrame({"run_id": ["r1"], "suite": ["old"]}))
    with pytest.raises(RuntimeError, match="stopped"), pg.transaction("run:r1") as con:
        pg.replace_partitions(
            "r1",
            {
                "run_summary": pl.DataFrame({"run_id": ["r1"], "endpoint": ["/b"]}),
                "runs": pl.DataFrame({"run_id": ["r1"], "suite": ["new"]}),
            },
            con,
        )
        raise RuntimeError("stopped before the commit")
    assert pg.read("run_summary")["endpoint"].to_list() == ["/a"]
    assert pg.read("runs")["suite"].to_list() == ["old"]


def test_nul_in_text_is_stored_as_the_replacement_character(pg):
    # PostgreSQL text cannot hold NUL; conform() replaces it, as the Parquet side does.
    frame = pl.DataFrame({"run_id": ["r1"], "endpoint": ["nul\x00here"]})
    pg.replace_partition("run_summary", "r1", frame)
    assert pg.read("run_summary")["endpoint"].to_list() == ["nul\ufffdhere"]


def test_every_value_round_trips_through_the_copy(pg):
    # The COPY is CSV: empty text and NULL, quotes, commas and line breaks in text, floats
    # that need all 17 digits, NaN and infinities, microseconds in timestamps must come back.
    from datetime import UTC, datetime

    from metrics_pipeline.contracts.tables import SCHEMAS, conform
    from metrics_pipeline.storage.integrity import checksum

    texts = ["", None, 'a "quoted", comma', "two\nlines\r\n", "\\N", "tab\there"]
    floats = [0.1 + 0.2, float("nan"), float("inf"), -float("inf"), None, 5e-324]
    frame = conform(
        "requests",
        pl.DataFrame(
            {
                "endpoint": texts,
                "latency_ms": floats,
                "ok": [True, False, None, True, False, True],
                "status": [200, None, 500, 0, -1, 2**31 - 1],
                "ts": [datetime(2026, 11, 23, 2, 0, 0, 123456, tzinfo=UTC)] * 5 + [None],
                "line_no": [1, 2, 3, 4, 5, 2**40],
            }
        ),
    )
    pg.replace_partition("requests", "r1", frame)
    back = pg.read("requests").drop("run_id")
    assert back.schema == {k: v for k, v in SCHEMAS["requests"].items() if k != "run_id"}
    assert checksum("requests", back) == checksum("requests", frame.drop("run_id"))
    assert back.sort("line_no")["endpoint"].to_list() == texts


def test_migrate_adds_columns_that_are_missing(pg):
    with pg.connect() as con:
        con.execute(f'alter table "{pg.schema}".run_summary drop column latency_p99')
    pg.migrate(["run_summary"])
    assert "latency_p99" in pg.read("run_summary").columns


@pytest.mark.slow
def test_demo_with_postgres_fills_the_same_rows_as_parquet(postgres_url, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from metrics_pipeline.storage import Warehouse

    env = os.environ | {"METRICS_HOME": str(tmp_path), "METRICS_POSTGRES_URL": postgres_url}
    command = [str(Path(sys.executable).parent / "metrics-pipeline"), "demo", "--runs", "3"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    parquet = Warehouse(tmp_path / "warehouse")
    postgres = PostgresWarehouse(postgres_url)
    for table in ("runs", "requests", "run_summary", "verdicts", "quarantine"):
        keys = ["run_id", "line_no"] if table == "requests" else None
        a, b = parquet.read(table), postgres.read(table)
        keys = keys or [c for c in ("run_id", "endpoint", "metric") if c in a.columns]
        assert a.sort(keys).equals(b.sort(keys)), table
    assert postgres.read("verdicts").filter(pl.col("regression")).height > 0


def test_retention_deletes_the_same_partitions_in_postgres(pg, tmp_path):
    from datetime import UTC, datetime, timedelta

    from metrics_pipeline.contracts.tables import conform
    from metrics_pipeline.stages.retention import RetentionPolicy, apply_plan, plan_for
    from metrics_pipeline.storage import Warehouse

    warehouse = Warehouse(tmp_path, mirror=pg)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    for i, age in enumerate((200, 100, 60, 50, 40, 30, 3)):
        run = {
            "run_id": f"r{i}",
            "suite": "s",
            "scenario": "x",
            "environment": "e",
            "started_at": now - timedelta(days=age),
            "valid": True,
        }
        warehouse.write_partition("runs", f"r{i}", conform("runs", pl.DataFrame([run])))
        row = {
            "run_id": f"r{i}",
            "ts": run["started_at"],
            "endpoint": "/a",
            "ok": True,
            "latency_ms": 1.0,
            "source_file": "f",
            "line_no": 1,
        }
        warehouse.write_partition("requests", f"r{i}", conform("requests", pl.DataFrame([row])))
    plan = plan_for(warehouse, now, RetentionPolicy(raw_days=30, aggregate_days=150), pinned=[])
    apply_plan(warehouse, plan)
    # r0 (200 days) loses everything, r1 (100 days) its raw rows; r2..r6 are the rolling baseline.
    assert (
        sorted(pg.read("requests")["run_id"])
        == warehouse.run_ids("requests")
        == ["r2", "r3", "r4", "r5", "r6"]
    )
    assert (
        sorted(pg.read("runs")["run_id"])
        == warehouse.run_ids("runs")
        == ["r1", "r2", "r3", "r4", "r5", "r6"]
    )
