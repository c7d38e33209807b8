"""Steps that lose their connection to Postgres are retried (the jobs' RetryPolicy), and the
retry leaves the warehouse as a clean run leaves it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest
from conftest import upload_demo_runs
from faults import TcpProxy

from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.storage import PostgresWarehouse, Warehouse
from metrics_pipeline.storage.integrity import check

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_a_postgres_connection_cut_mid_ingest_is_retried(
    postgres_url, settings, store, tmp_path, monkeypatch
):
    database = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"create database {database}")
    url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    proxy = TcpProxy(urlsplit(url).port)
    parts = urlsplit(url)
    through = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    settings = replace(settings, postgres_url=through)  # the store fixture's home
    monkeypatch.setenv("METRICS_POSTGRES_URL", through)  # resources read it as an EnvVar
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1)

    # The first connection dies 100 kB into the ingest's COPY; the next ones go through.
    proxy.cut_after(up=100_000, then_restore=True)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(settings), instance)
        (result,) = tick.results.values()
        assert result.success
        retried = [
            e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        ]
        assert [e.step_key for e in retried] == ["warehouse__requests"]

    direct = Warehouse(settings.warehouse_root, PostgresWarehouse(url))
    assert [c for c in check(direct) if not c.ok] == []
    assert direct.read("requests").height == len(run.records)
    proxy.close()
