"""Steps that lose their connection to Postgres are retried (the jobs' RetryPolicy), and the
retry leaves the warehouse as a clean run leaves it."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

import dagster as dg
import pytest
from conftest import upload_demo_runs
from faults import TcpProxy, through
from servers import new_database

from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.storage import PostgresWarehouse, Warehouse
from metrics_pipeline.storage.integrity import check

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_a_postgres_connection_cut_mid_ingest_is_retried(
    postgres_url, settings, store, tmp_path, monkeypatch
):
    url = new_database(postgres_url)
    proxy = TcpProxy(urlsplit(url).port)
    proxied = through(url, proxy)
    settings = replace(settings, postgres_url=proxied)  # the store fixture's home
    monkeypatch.setenv("METRICS_POSTGRES_URL", proxied)  # resources read it as an EnvVar
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
