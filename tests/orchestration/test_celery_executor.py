"""METRICS_EXECUTOR=celery: the CI stage's steps run on two Celery workers (Redis broker) and
the warehouse ends up exactly as when the same runs are processed in process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from conftest import free_port, service_unavailable, upload_demo_runs
from moved_clock import without
from polars.testing import assert_frame_equal

from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import LocalObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.services]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKERS = ("alpha", "beta")
# What the CI stage writes; `ingested_at` is the wall clock of the write, not data, and so is
# `upload_version` on the local folder store (its ETags are the files' mtimes).
TABLES = ("requests", "quarantine", "runs", "run_summary", "run_baselines", "verdicts")
WALL_CLOCK = {"ingested_at", "upload_version"}


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


@pytest.fixture
def celery_env(tmp_path, redis_url):
    """The environment the daemon, the run and the workers share: the same settings, a
    persistent Dagster instance on disk, the executor and its broker."""
    home = tmp_path / "celery-home"
    (home / "dagster").mkdir(parents=True)
    env = os.environ | {
        "METRICS_HOME": str(home),
        "METRICS_BASELINES": str(tmp_path / "baselines.yaml"),
        "DAGSTER_HOME": str(home / "dagster"),
        "METRICS_EXECUTOR": "celery",
        "METRICS_CELERY_BROKER": redis_url,
        "METRICS_CELERY_BACKEND": redis_url,
        # dagster-celery starts `celery` from PATH.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # Created here, once: workers starting together would race to create its SQLite schema.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
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
                        env=env,
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    ),
                )
            )
        for log, proc in workers:
            wait_until(lambda log=log: b" ready." in log.read_bytes(), 90, log.stem, proc)
        yield env, Settings(home=home, baselines_file=tmp_path / "baselines.yaml")
    finally:
        for _, proc in workers:
            stop(proc)


def comparable(warehouse: Warehouse, table: str) -> pl.DataFrame:
    frame = warehouse.read(table)
    frame = frame.drop([c for c in frame.columns if c in WALL_CLOCK])
    return frame.sort(frame.columns)


def test_celery_workers_build_the_same_warehouse_as_in_process(celery_env, tmp_path):
    env, settings = celery_env
    runs = upload_demo_runs(
        LocalObjectStore(root=str(settings.local_store_root)), tmp_path / "runs", count=3
    )
    run_ids = [r.manifest.run_id for r in runs]

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions(runs_partitions.name, run_ids)
    # Oldest first, as the sensor requests them: each run's baseline is the runs before it.
    for run_id in run_ids:
        result = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "execute",
                "-m",
                "metrics_pipeline.orchestration.definitions",
                "-a",
                "defs",
                "-j",
                "ci_stage",
                "--tags",
                json.dumps({"dagster/partition": run_id}),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.get_run_records()
        assert {r.dagster_run.tags["dagster/partition"] for r in records} == set(run_ids)
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
    assert hosts and all(host.split("@")[0] in WORKERS for host in hosts), hosts

    # The same uploads, processed in process on a fresh home.
    reference = Settings(home=tmp_path / "reference-home", baselines_file=settings.baselines_file)
    upload_demo_runs(
        LocalObjectStore(root=str(reference.local_store_root)), tmp_path / "runs", count=3
    )
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(reference), instance)
        assert all(result.success for result in tick.results.values())

    distributed, local = Warehouse(settings.warehouse_root), Warehouse(reference.warehouse_root)
    for table in TABLES:
        assert_frame_equal(comparable(distributed, table), comparable(local, table))
    verdicts = distributed.read("verdicts", [run_ids[-1]])
    assert set(verdicts.filter(pl.col("regression"))["endpoint"]) == {"/api/orders"}
