"""METRICS_EXECUTOR=celery on workers that share nothing but the bucket, PostgreSQL and the
broker (each its own empty METRICS_HOME and DAGSTER_HOME, as on separate hosts): the CI stage of
several runs and the nightly job build the warehouse, in the bucket and its Postgres mirror,
exactly as the same runs processed in process into a local folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from conftest import service_unavailable, upload_demo_runs
from moved_clock import without
from servers import free_port, new_database

from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage import Warehouse, warehouse_at
from metrics_pipeline.storage.integrity import check, checksum
from metrics_pipeline.storage.objects import S3ObjectStore
from metrics_pipeline.storage.sql_models import discover, ordered, read_duckdb, read_postgres

pytestmark = [pytest.mark.slow, pytest.mark.services]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFINITIONS = "metrics_pipeline.orchestration.definitions"
WORKERS = ("alpha", "beta")
# The demo runs are dated from this instant and both builds take it as now.
NOW = datetime.now(UTC).replace(microsecond=0)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# `ingested_at` is the wall clock of the write, not data.
WALL_CLOCK = {"ingested_at"}


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            service_unavailable(f"{what}: the process exited with {proc.returncode}")
        time.sleep(0.3)
    service_unavailable(f"{what}: not ready within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    # Each server runs in its own session: the whole group goes (celery's pool children too).
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        service_unavailable("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(folder)],
        stdout=(folder / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=without(dict(os.environ)),
    )

    def answers() -> bool:
        try:
            return redis.Redis(port=port, socket_timeout=1).ping()
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, 20, "redis-server", proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


DAGSTER_YAML = """\
# Instance storage in PostgreSQL, as every host of a deployment shares it.
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
telemetry:
  enabled: false
"""


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    # moto's server takes any key; boto3 and pyarrow read them from the environment.
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def host_env(tmp_path: Path, name: str, shared: dict[str, str]) -> dict[str, str]:
    """A host: its own empty METRICS_HOME and DAGSTER_HOME, the shared settings."""
    home = tmp_path / name
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML)
    return (
        os.environ
        | shared
        | {
            "METRICS_HOME": str(home / "metrics"),
            "DAGSTER_HOME": str(home / "dagster"),
        }
    )


@pytest.fixture
def cluster(tmp_path, redis_url, s3_endpoint, postgres_url, monkeypatch):
    """Two Celery workers and a launching host that share nothing but the bucket (uploads and
    the warehouse, moto's S3 server), PostgreSQL (Dagster's instance, the warehouse's mirror
    and its locks) and the broker (Redis)."""
    import boto3

    token = uuid.uuid4().hex[:8]
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in (f"uploads-{token}", f"warehouse-{token}"):
        client.create_bucket(Bucket=bucket)
    shared = CREDENTIALS | {
        "METRICS_STORE": "s3",
        "METRICS_BUCKET": f"uploads-{token}",
        "METRICS_S3_ENDPOINT_URL": s3_endpoint,
        "METRICS_WAREHOUSE": f"s3://warehouse-{token}/warehouse",
        "METRICS_POSTGRES_URL": new_database(postgres_url),
        # SQLAlchemy 2.1 with psycopg 3 breaks dagster-postgres' NOTIFY (deploy/dagster.yaml).
        "DAGSTER_PG_URL": new_database(postgres_url).replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
        "METRICS_BASELINES": str(tmp_path / "baselines.yaml"),
        # Both builds judge and analyse at one instant (SLA windows, alert times).
        "METRICS_NOW": NOW.isoformat(),
        "METRICS_EXECUTOR": "celery",
        "METRICS_CELERY_BROKER": redis_url,
        "METRICS_CELERY_BACKEND": redis_url,
        # dagster-celery starts `celery` from PATH.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    (tmp_path / "baselines.yaml").write_text("baselines: []\n")
    # This process opens the instance too (partitions, run records).
    monkeypatch.setenv("DAGSTER_PG_URL", shared["DAGSTER_PG_URL"])
    launcher = host_env(tmp_path, "launcher", shared)
    # Created here, once: hosts starting together would race to create its schema.
    with dg.DagsterInstance.from_config(launcher["DAGSTER_HOME"]) as instance:
        instance.get_run_records(limit=1)
    workers = []
    try:
        for name in WORKERS:
            log = tmp_path / f"worker-{name}.log"
            workers.append(
                (
                    log,
                    subprocess.Popen(
                        [
                            str(BIN / "dagster-celery"),
                            "worker",
                            "start",
                            "-A",
                            "dagster_celery.app",
                            "-y",
                            str(ROOT / "deploy" / "celery.yaml"),
                            "-n",
                            name,
                            "--",
                            # One step at a time per worker: two workers, two cores.
                            "--concurrency=1",
                        ],
                        cwd=ROOT,
                        env=host_env(tmp_path, name, shared),
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    ),
                )
            )
        for log, proc in workers:
            wait_until(lambda log=log: b" ready." in log.read_bytes(), 90, log.stem, proc)
        yield launcher
    finally:
        for _, proc in workers:
            stop(proc)


def execute(env: dict[str, str], job: str, tags: dict[str, str] | None = None) -> None:
    command = [str(BIN / "dagster"), "job", "execute", "-m", DEFINITIONS, "-a", "defs", "-j", job]
    if tags:
        command += ["--tags", json.dumps(tags)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def comparable(warehouse: Warehouse, table: str) -> tuple[int, str]:
    """Rows and checksum of ``table`` without the columns of the wall clock."""
    frame = warehouse.read(table)
    nulls = [pl.lit(None).alias(column) for column in WALL_CLOCK if column in frame.columns]
    return frame.height, checksum(table, frame.with_columns(nulls))


def test_workers_that_share_nothing_build_the_same_warehouse_as_in_process(cluster, tmp_path):
    env = cluster
    store = S3ObjectStore(bucket=env["METRICS_BUCKET"], endpoint_url=env["METRICS_S3_ENDPOINT_URL"])
    runs = upload_demo_runs(store, tmp_path / "runs", count=3, now=NOW)
    run_ids = [r.manifest.run_id for r in runs]

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions(runs_partitions.name, run_ids)
    # Oldest first, as the sensor requests them: each run's baseline is the runs before it.
    for run_id in run_ids:
        execute(env, "ci_stage", {"dagster/partition": run_id})
    execute(env, "nightly")

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.get_run_records()
        assert len(records) == len(run_ids) + 1
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        hosts = set()
        for record in records:
            delegated = [
                e
                for e in instance.all_logs(record.dagster_run.run_id)
                if e.is_dagster_event and "in celery worker" in e.dagster_event.message
            ]
            steps = instance.get_execution_plan_snapshot(
                record.dagster_run.execution_plan_snapshot_id
            ).step_keys_to_execute
            # Every step of every run was handed to a worker.
            assert {e.step_key for e in delegated} == set(steps)
            hosts |= {
                e.dagster_event.engine_event_data.metadata["Celery worker"].value for e in delegated
            }
    assert {host.split("@")[0] for host in hosts} == set(WORKERS), hosts
    # The hosts kept no warehouse of their own: all of it is in the bucket.
    for name in (*WORKERS, "launcher"):
        assert not list((tmp_path / name / "metrics").rglob("*.parquet"))

    # The same uploads, processed in process into a local folder (no Postgres, no workers).
    reference = Settings(
        home=tmp_path / "reference",
        store="s3",
        bucket=env["METRICS_BUCKET"],
        s3_endpoint_url=env["METRICS_S3_ENDPOINT_URL"],
        baselines_file=tmp_path / "baselines.yaml",
        now=NOW,
    )
    defs = build_definitions(reference)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(defs, instance)
        assert sorted(tick.results) == sorted(run_ids)
        assert all(result.success for result in tick.results.values())
        assert defs.resolve_job_def("nightly").execute_in_process(instance=instance).success

    distributed = warehouse_at(
        env["METRICS_WAREHOUSE"],
        tmp_path / "reader",
        env["METRICS_POSTGRES_URL"],
        endpoint_url=env["METRICS_S3_ENDPOINT_URL"],
    )
    local = Warehouse(reference.warehouse_root)
    differ = {
        table: (comparable(distributed, table), comparable(local, table))
        for table in SCHEMAS
        if comparable(distributed, table) != comparable(local, table)
    }
    assert differ == {}
    filled = {table for table in SCHEMAS if comparable(local, table)[0]}
    assert {"requests", "runs", "run_summary", "verdicts", "alerts", "capacity"} <= filled
    # The nightly job's marts: in the Postgres mirror (the hosts' DuckDB catalogs are their
    # own), as in the reference's catalog.
    marts = [m for m in ordered(discover()) if m.kind == "table"]
    with local.open_catalog() as con:
        expected = {m.name: read_duckdb(con, m.name).height for m in marts}
    url = env["METRICS_POSTGRES_URL"]
    assert {m.name: read_postgres(url, "metrics", m.name).height for m in marts} == expected
    assert expected["run_performance"] == len(run_ids)
    # The Postgres mirror holds the same rows as the bucket.
    assert [c for c in check(distributed) if not c.ok] == []
    verdicts = distributed.read("verdicts", [run_ids[-1]])
    assert set(verdicts.filter(pl.col("regression"))["endpoint"]) == {"/api/orders"}
