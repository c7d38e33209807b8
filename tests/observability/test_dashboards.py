"""Every Grafana panel's SQL against a Postgres warehouse filled by the real pipeline."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import dagster as dg
import psycopg
import pytest

from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.observability import dashboards, write_monitoring
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.storage import open_warehouse
from metrics_pipeline.storage.sql_models import discover

pytestmark = [pytest.mark.slow, pytest.mark.services]

# What Grafana would put in: the whole time range, and one selected suite and environment.
MACROS = [
    (re.compile(r"\$__timeFilter\([^)]*\)"), "true"),
    (re.compile(r"\$suite\b"), "'checkout'"),
    (re.compile(r"\$environment\b"), "'staging'"),
]


def as_postgres(query: str) -> str:
    for pattern, value in MACROS:
        query = pattern.sub(value, query)
    assert "$" not in query, f"a Grafana macro or variable is left: {query}"
    return query


def with_resource_samples(run) -> list[dict]:
    """Host samples during the run, as a harness' sampler would upload them."""
    start = run.manifest.started_at
    return [
        {
            "record": "resources",
            "ts": (start + timedelta(seconds=second)).isoformat(),
            "host": host,
            "metric": metric,
            "value": 40.0 + second % 7 + (10.0 if metric == "mem_pct" else 0.0),
        }
        for second in range(0, 20, 2)
        for host in ("web-1", "web-2")
        for metric in ("cpu_pct", "mem_pct")
    ]


@pytest.fixture(scope="module")
def postgres_warehouse(postgres_url, tmp_path_factory):
    """Demo runs with resource samples through the sensor, the CI stage and the marts, with
    the Postgres mirror on (as METRICS_POSTGRES_URL turns it on in production)."""
    from metrics_pipeline.settings import Settings
    from metrics_pipeline.storage.objects import LocalObjectStore
    from metrics_pipeline.upload.uploader import upload_run

    tmp = tmp_path_factory.mktemp("grafana")
    settings = Settings(
        home=tmp / "home", baselines_file=tmp / "baselines.yaml", postgres_url=postgres_url
    )
    store = LocalObjectStore(root=str(settings.local_store_root))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("METRICS_POSTGRES_URL", postgres_url)
        for run in demo_runs(3, duration_s=20.0):
            samples = tmp / "samples" / run.manifest.run_id / "resources.ndjson"
            samples.parent.mkdir(parents=True)
            samples.write_text("".join(json.dumps(r) + "\n" for r in with_resource_samples(run)))
            upload_run(store, [run.write(tmp / "runs") / "requests.ndjson", samples], run.manifest)
        with dg.instance_for_test() as instance:
            sense_and_run(build_definitions(settings), instance)
        warehouse = open_warehouse(settings)
        # What the dashboards need of the CI stage: every run ingested and judged (later
        # steps have their own tests).
        assert (
            warehouse.run_ids("verdicts") == warehouse.run_ids("runs")
            and len(warehouse.run_ids("runs")) == 3
        )
        warehouse.build_marts(discover())
    return postgres_url


def queries(board: dict) -> list[tuple[str, str]]:
    """(what, SQL) of every panel target and every query variable of a dashboard."""
    found = [
        (f"variable {v['name']}", v["query"])
        for v in board["templating"]["list"]
        if v["type"] == "query"
    ]
    for panel in board["panels"]:
        found += [(f"panel {panel['title']!r}", t["rawSql"]) for t in panel["targets"]]
    return found


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_every_panel_returns_rows(postgres_warehouse, name, tmp_path):
    files = write_monitoring(tmp_path, postgres_url=postgres_warehouse)
    board = json.loads((files.dashboards[0].parent / f"{name}.json").read_text())
    checked = queries(board)
    assert len(checked) >= 5
    empty = []
    with psycopg.connect(postgres_warehouse) as con:
        for what, query in checked:
            rows = con.execute(as_postgres(query)).fetchall()
            if not rows or all(value is None for row in rows for value in row):
                empty.append(what)
    assert not empty, f"{name}: no rows from {empty}"


def test_the_regressed_endpoints_panel_counts_the_latest_runs_regressions(
    postgres_warehouse, tmp_path
):
    # The demo's last run is 60 % slower on /api/orders: one endpoint of one combination.
    files = write_monitoring(tmp_path, postgres_url=postgres_warehouse)
    board = json.loads((files.dashboards[0].parent / "executive.json").read_text())
    (query,) = [
        sql for what, sql in queries(board) if "Endpoints regressed in the latest runs" in what
    ]
    with psycopg.connect(postgres_warehouse) as con:
        assert con.execute(as_postgres(query)).fetchall() == [(1,)]
