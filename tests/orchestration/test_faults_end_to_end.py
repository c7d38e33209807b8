"""The whole CI stage under a fault of a real process: Postgres drops the connection while a
run is ingested (a proxy cuts it), the step is retried, and the warehouse, Parquet and
Postgres alike, the alerts and what the receiver got are exactly what a run without the fault
gives."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import polars as pl
import pytest
from faults import TcpProxy, through
from receivers import http_receiver
from servers import new_database

from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage import PostgresWarehouse, Warehouse
from metrics_pipeline.storage.integrity import check
from metrics_pipeline.storage.objects import LocalObjectStore
from metrics_pipeline.upload.uploader import upload_run

pytestmark = [pytest.mark.services, pytest.mark.slow]

NOW = datetime(2031, 3, 15, 12, 0, tzinfo=UTC)
# Written from the wall clock or the files' mtimes (the local store's ETags), not from data.
NOT_DATA = {"ingested_at", "upload_version", "uploaded_at", "version"}


def contents(warehouse: Warehouse) -> dict[str, pl.DataFrame]:
    """Every table's rows, in a stable order, without the columns that are not data."""
    out = {}
    for table in SCHEMAS:
        frame = warehouse.read(table)
        frame = frame.drop([c for c in frame.columns if c in NOT_DATA])
        out[table] = frame.sort(frame.columns, nulls_last=True)
    return out


def run_pipeline(settings: Settings, runs, folder: Path, monkeypatch) -> tuple[Warehouse, int]:
    """Upload ``runs``, run the CI stage of each; the warehouse and the steps retried."""
    monkeypatch.setenv("METRICS_POSTGRES_URL", settings.postgres_url)  # an EnvVar resource
    store = LocalObjectStore(root=str(settings.local_store_root))
    for run in runs:
        upload_run(store, [run.write(folder) / "requests.ndjson"], run.manifest)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(settings), instance)
        assert all(result.success for result in tick.results.values())
        retried = sum(
            e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
            for result in tick.results.values()
            for e in result.all_events
        )
    return Warehouse(settings.warehouse_root), retried


def test_a_postgres_cut_mid_ingest_changes_nothing_a_user_sees(postgres_url, tmp_path, monkeypatch):
    runs = demo_runs(3, duration_s=20.0, now=NOW)  # the last one 60 % slower on /api/orders

    def settings(name: str, url: str, hook_url: str) -> Settings:
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"channels:\n  hook: {{type: webhook, url: '{hook_url}'}}\n"
            "routes:\n  - {severities: [critical, warning, info], channels: [hook]}\n"
        )
        return dataclasses.replace(
            Settings(home=tmp_path / name, baselines_file=tmp_path / "baselines.yaml"),
            alerting_config=config,
            now=NOW,
            postgres_url=url,
        )

    clean_url = new_database(postgres_url)
    with http_receiver() as clean_hook:
        clean, retried = run_pipeline(
            settings("clean", clean_url, clean_hook.url), runs, tmp_path / "a", monkeypatch
        )

    faulted_url = new_database(postgres_url)
    proxy = TcpProxy(urlsplit(faulted_url).port)
    # The connection drops 100 kB into the first run's COPY; reconnecting works (a failover).
    proxy.cut_after(up=100_000, then_restore=True)
    with http_receiver() as faulted_hook:
        faulted, retried_after_fault = run_pipeline(
            settings("faulted", through(faulted_url, proxy), faulted_hook.url),
            runs,
            tmp_path / "b",
            monkeypatch,
        )
    assert (retried, retried_after_fault) == (0, 1)
    proxy.close()

    expected, got = contents(clean), contents(faulted)
    for table in SCHEMAS:
        assert got[table].equals(expected[table]), table
    assert expected["alerts"].height > 0
    for url, warehouse in ((clean_url, clean), (faulted_url, faulted)):
        mirrored = Warehouse(warehouse.root, PostgresWarehouse(url))
        assert [c for c in check(mirrored) if not c.ok] == []
    assert clean_hook.bodies and faulted_hook.bodies == clean_hook.bodies
    assert faulted_hook.keys == clean_hook.keys
