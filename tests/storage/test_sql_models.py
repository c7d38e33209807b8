"""The dbt_like_sql models: discovery and ordering, values checked against independent
computations, and the same rows on DuckDB and on a real PostgreSQL."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from metrics_pipeline.analysis.summary import summarize_requests, summarize_run
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.evaluation.demo_data import DemoRun, generate_requests
from metrics_pipeline.ingest.files import NOT_VALIDATED, ingest_files, ingest_paths
from metrics_pipeline.stats.sketch import MIN_LATENCY_MS, gamma
from metrics_pipeline.storage import PostgresWarehouse, Warehouse
from metrics_pipeline.storage.sql_models import (
    Model,
    SqlModelError,
    discover,
    ordered,
    read_duckdb,
    read_postgres,
    run_duckdb,
    run_postgres,
    to_postgres,
)

MODELS = discover()
MARTS = sorted(m.name for m in MODELS if m.kind == "table")
DAY1 = datetime(2026, 11, 1, tzinfo=UTC)
# A session time zone far from UTC: a day computed in it instead of UTC would show.
SESSION_TZ = "Asia/Tokyo"


def manifest(run_id: str, started: datetime, duration_s: float | None = 10.0, **extra):
    finished = None if duration_s is None else started + timedelta(seconds=duration_s)
    return RunManifest(
        run_id=run_id,
        suite="checkout",
        scenario="browse-and-buy",
        environment="staging",
        started_at=started,
        finished_at=finished,
        **extra,
    )


def intervals(run_id: str, started: datetime, rows: list[tuple]) -> pl.DataFrame:
    columns = ["endpoint", "source_file", "interval_s", "count", "errors"]
    columns += ["p50", "p90", "p95", "p99", "max"]
    frame = pl.DataFrame(rows, schema=columns, orient="row")
    return frame.with_columns(run_id=pl.lit(run_id), ts=pl.lit(started), mean=pl.col("p50"))


def resource_samples(run_id: str, started: datetime, series: dict, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        (started + timedelta(seconds=second), host, metric, float(rng.uniform(low, high)))
        for (host, metric), (low, high) in series.items()
        for second in range(10)
    ]
    frame = pl.DataFrame(rows, schema=["ts", "host", "metric", "value"], orient="row")
    return frame.with_columns(run_id=pl.lit(run_id))


def events(run_id: str, started: datetime, kinds: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": run_id,
            "ts": [started + timedelta(seconds=i) for i in range(len(kinds))],
            "kind": kinds,
            "subject": "pod/api-0",
        }
    )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    """Five runs covering every tier's edge:

    web-1  requests, resources on two hosts, restarts, an OOM kill and a failed task
    web-2  requests the same UTC day (late evening), only threshold events, cpu and gpu on one host
    web-3  requests only; marked invalid
    k6-sum interval rows only: an "(all)" row and one endpoint, no interval lengths
    art-1  interval rows only, per interval, two files for one endpoint, no finished_at
    """
    tmp = tmp_path_factory.mktemp("sql_models")
    wh = Warehouse(tmp / "warehouse")
    request_runs = [
        (manifest("web-1", DAY1 + timedelta(hours=2)), 1),
        (manifest("web-2", DAY1 + timedelta(hours=23, minutes=50)), 2),
        (manifest("web-3", DAY1 + timedelta(days=1, hours=2)), 3),
    ]
    for run_manifest, seed in request_runs:
        run = DemoRun(
            run_manifest, generate_requests(run_manifest.started_at, seed=seed, duration_s=10)
        )
        ingest_paths([run.write(tmp / "raw") / "requests.ndjson"], run_manifest, wh)
    web1, web2 = DAY1 + timedelta(hours=2), DAY1 + timedelta(hours=23, minutes=50)
    wh.write_partition(
        "resources",
        "web-1",
        resource_samples(
            "web-1",
            web1,
            {
                ("app-1", "cpu_pct"): (40, 90),
                ("app-2", "cpu_pct"): (10, 30),
                ("app-1", "mem_pct"): (55, 60),
                ("app-1", "cpu_pct.0"): (0, 100),  # a per-core series: not the run's CPU %
            },
            seed=7,
        ),
    )
    wh.write_partition(
        "resources",
        "web-2",
        resource_samples(
            "web-2", web2, {("app-1", "cpu_pct"): (20, 25), ("gpu-1", "gpu_pct"): (70, 99)}, 8
        ),
    )
    kinds = ["pod_restart", "oom_kill", "pod_restart", "task_failed", "threshold_passed"]
    wh.write_partition("events", "web-1", events("web-1", web1, kinds))
    wh.write_partition("events", "web-2", events("web-2", web2, ["threshold_passed"]))
    wh.write_partition(
        "runs",
        "web-3",
        wh.read("runs", ["web-3"]).with_columns(valid=False, invalid_reason=pl.lit("test")),
    )

    day3 = DAY1 + timedelta(days=2)
    k6 = manifest("k6-sum", day3, duration_s=60.0, tool="k6")
    ingest_files([], k6, wh)
    wh.write_partition(
        "interval_stats",
        "k6-sum",
        intervals(
            "k6-sum",
            day3,
            [
                ("(all)", "summary.json", None, 600, 6, 20.0, 30.0, 40.0, 50.0, 60.0),
                ("slow", "summary.json", None, 100, 1, 45.0, 50.0, 55.0, 58.0, 60.0),
            ],
        ),
    )
    art = manifest("art-1", day3 + timedelta(hours=1), duration_s=None, tool="artillery")
    ingest_files([], art, wh)
    wh.write_partition(
        "interval_stats",
        "art-1",
        intervals(
            "art-1",
            art.started_at,
            [
                ("/a", "report.json", 10.0, 100, 1, 10.0, 14.0, 15.0, 19.0, 25.0),
                ("/a", "report.json", 10.0, 120, 0, 11.0, 15.0, 16.0, 21.0, 30.0),
                ("/a", "report.json", 10.0, 80, 3, 12.0, 16.0, 18.0, 22.0, 27.0),
                ("/a", "stats.csv", None, 300, 4, 99.0, 99.0, 99.0, 99.0, 99.0),  # same requests
                ("/b", "report.json", 10.0, 50, 0, 30.0, 40.0, 45.0, 50.0, 70.0),
                ("/b", "report.json", 10.0, 60, 2, 32.0, None, 44.0, 52.0, 65.0),
                ("/b", "report.json", 10.0, 40, 0, 31.0, 41.0, 46.0, 51.0, 61.0),
            ],
        ),
    )
    for run_id in wh.run_ids("runs"):
        summary = summarize_run(wh.read("requests", [run_id]), wh.read("interval_stats", [run_id]))
        wh.write_partition("run_summary", run_id, summary)
    mark_validated(wh)
    return wh


def mark_validated(wh: Warehouse) -> None:
    """What a passed validation records (the marts' SQL is under test here, not the suites):
    ingest leaves every run invalid until it is validated."""
    for run_id in wh.run_ids("runs"):
        row = wh.read("runs", [run_id])
        if row["invalid_reason"][0] == NOT_VALIDATED:
            wh.write_partition("runs", run_id, row.with_columns(valid=True, invalid_reason=None))


@pytest.fixture(scope="module")
def duck(warehouse):
    con = warehouse.connect()
    con.execute(f"set timezone = '{SESSION_TZ}'")
    run_duckdb(con, MODELS)
    yield con
    con.close()


def mart(duck, name: str, **where) -> pl.DataFrame:
    frame = read_duckdb(duck, name)
    for column, value in where.items():
        frame = frame.filter(pl.col(column) == value)
    return frame


def same(a, b, rel: float = 1e-9) -> bool:
    """Equal, or both floats within ``rel`` of each other (nulls only equal nulls)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return a == b


def one(duck, name: str, run_id: str) -> dict:
    (row,) = mart(duck, name, run_id=run_id).to_dicts()
    return row


# ----------------------------------------------------------------------------- the folder


def test_discover_finds_staging_views_and_marts_with_their_grain():
    by_name = {m.name: m for m in MODELS}
    for name in ("stg_requests", "stg_resources", "stg_events", "stg_interval_stats", "stg_runs"):
        assert by_name[name].kind == "view"
        assert by_name[name].sources and not by_name[name].deps
    for name in ("run_resources", "run_stability", "run_tiers", "metric_daily"):
        assert by_name[name].kind == "table"
    assert by_name["run_resources"].grain == "one row per run x host x metric"
    assert by_name["run_resources"].deps == ("stg_resources",)
    assert all(m.grain.startswith("one row per") for m in MODELS)


def test_the_interval_latency_approximation_is_written_once():
    """Both marts that summarise interval rows select it from one intermediate model."""
    by_name = {m.name: m for m in MODELS}
    assert by_name["int_interval_latency"].kind == "view"
    weighted = "/ nullif(sum(request_count) filter (where value is not null), 0)"
    holders = [m.name for m in MODELS if weighted in m.sql]
    assert holders == ["int_interval_latency"]
    for mart in ("run_endpoint_summary", "run_performance"):
        assert "int_interval_latency" in by_name[mart].deps
        assert "filter (where latency_p" not in by_name[mart].sql


def test_the_requests_exact_percentiles_are_written_once():
    """Both marts read them from one intermediate model; none holds a group's values."""
    by_name = {m.name: m for m in MODELS}
    assert by_name["int_request_percentiles"].kind == "view"
    for mart in ("run_endpoint_summary", "run_performance"):
        assert "int_request_percentiles" in by_name[mart].deps
    assert not [m.name for m in MODELS if "quantile_cont(latency_ms" in m.sql.replace(" ", "")]
    assert not [m.name for m in MODELS if "quantile_cont(requests." in m.sql]
    # The bucket is the latency sketches' (stats/sketch.py at 1 % accuracy).
    assert f"/ {math.log(gamma())!r}" in by_name["int_request_latency"].sql


def test_ordered_puts_every_model_after_what_it_refers_to():
    position = {m.name: i for i, m in enumerate(ordered(reversed(MODELS)))}
    assert len(position) == len(MODELS)
    for model in MODELS:
        assert all(position[dep] < position[model.name] for dep in model.deps)
    assert position["run_performance"] < position["run_stability"] < position["run_tiers"]


def write_models(folder: Path, marts: dict[str, str]) -> Path:
    (folder / "staging").mkdir(parents=True)
    (folder / "marts").mkdir()
    for name, body in marts.items():
        (folder / "marts" / f"{name}.sql").write_text(body)
    return folder


def model_text(*refs: str) -> str:
    header = ", ".join(f"ref('{r}')" for r in refs)
    body = " union all ".join(f"select * from {{{{ ref('{r}') }}}}" for r in refs)
    return f"-- grain: one row per thing\n-- depends on: {header}\n{body}\n"


def test_a_dependency_cycle_is_a_clear_error(tmp_path):
    folder = write_models(
        tmp_path, {"a": model_text("b"), "b": model_text("c"), "c": model_text("a")}
    )
    with pytest.raises(SqlModelError, match=r"dependency cycle: (\w -> ){3}\w"):
        ordered(discover(folder))


def test_an_unknown_ref_is_a_clear_error(tmp_path):
    folder = write_models(tmp_path, {"a": model_text("missing")})
    with pytest.raises(SqlModelError, match=r"'a' refers to unknown model.*missing"):
        ordered(discover(folder))


def test_the_header_must_list_what_the_sql_uses(tmp_path):
    text = model_text("b").replace("-- depends on: ref('b')", "-- depends on: ref('c')")
    folder = write_models(tmp_path, {"a": text, "b": model_text(), "c": model_text()})
    with pytest.raises(SqlModelError, match=r"a\.sql: the header's depends on .*ref\('b'\)"):
        discover(folder)


def test_sql_that_does_not_transpile_to_postgres_is_refused(tmp_path):
    text = "-- grain: one row per run\n-- depends on: source('requests')\n"
    text += "select run_id, approx_quantile(latency_ms, 0.5) from {{ source('requests') }}\n"
    text += "group by run_id\n"
    folder = write_models(tmp_path, {"a": text})
    with pytest.raises(SqlModelError, match=r"approx_quantile.*quantile_cont"):
        discover(folder)


def test_every_model_transpiles_to_postgres():
    for model in MODELS:
        statement = to_postgres(model.render(lambda name: f'"s"."{name}"'))
        assert "{{" not in statement
        assert "QUANTILE_CONT" not in statement.upper().replace("PERCENTILE_CONT", "")


# ----------------------------------------------------------------------------- values


def test_run_endpoint_summary_equals_the_python_run_summary(warehouse, duck):
    python = warehouse.read("run_summary").sort("run_id", "endpoint")
    sql = mart(duck, "run_endpoint_summary").sort("run_id", "endpoint")
    assert sql.select("run_id", "endpoint").equals(python.select("run_id", "endpoint"))
    pairs = {
        "request_count": "requests",
        "error_count": "errors",
        "error_rate": "error_rate",
        "throughput_rps": "throughput_rps",
        "latency_mean": "latency_mean",
        "latency_p50": "latency_p50",
        "latency_p95": "latency_p95",
        "latency_p99": "latency_p99",
        "latency_max": "latency_max",
    }
    for sql_column, python_column in pairs.items():
        for got, expected in zip(sql[sql_column], python[python_column], strict=True):
            assert same(got, expected), (sql_column, got, expected)


def test_performance_tier_from_requests_matches_numpy(warehouse, duck):
    requests = warehouse.read("requests", ["web-1"])
    ok = requests.filter(pl.col("ok"))["latency_ms"].to_numpy()
    span = (requests["ts"].max() - requests["ts"].min()).total_seconds()
    tiers = one(duck, "run_tiers", "web-1")
    for q in (50, 90, 95, 99):
        assert tiers[f"latency_p{q}"] == pytest.approx(np.percentile(ok, q), rel=1e-12)
    assert tiers["latency_max"] == ok.max()
    assert tiers["duration_s"] == pytest.approx(span, abs=1e-6)
    assert tiers["throughput_rps"] == pytest.approx(requests.height / span)
    assert tiers["error_rate"] == pytest.approx((~requests["ok"]).sum() / requests.height)


def test_stability_counts_events_and_leaves_unwatched_runs_null(duck):
    web1 = one(duck, "run_stability", "web-1")
    assert (web1["pod_restarts"], web1["oom_kills"], web1["failed_tasks"]) == (2, 1, 1)
    web2 = one(duck, "run_stability", "web-2")  # events were collected, none of these kinds
    assert (web2["pod_restarts"], web2["oom_kills"], web2["failed_tasks"]) == (0, 0, 0)
    web3 = one(duck, "run_stability", "web-3")  # no events at all: unknown, not zero
    assert (web3["pod_restarts"], web3["oom_kills"], web3["failed_tasks"]) == (None, None, None)
    assert web3["error_rate"] is not None


def test_efficiency_is_the_mean_of_samples_and_null_without_them(warehouse, duck):
    resources = warehouse.read("resources")

    def mean(run_id: str, metric: str) -> float:
        values = resources.filter((pl.col("run_id") == run_id) & (pl.col("metric") == metric))
        return values["value"].mean()

    web1, web2 = one(duck, "run_tiers", "web-1"), one(duck, "run_tiers", "web-2")
    assert web1["cpu_pct"] == pytest.approx(mean("web-1", "cpu_pct"))
    assert web1["mem_pct"] == pytest.approx(mean("web-1", "mem_pct"))
    assert web1["gpu_pct"] is None and web1["spill_pct"] is None
    assert web2["gpu_pct"] == pytest.approx(mean("web-2", "gpu_pct"))
    assert web2["mem_pct"] is None
    for run_id in ("web-3", "k6-sum", "art-1"):
        row = one(duck, "run_tiers", run_id)
        assert [row[c] for c in ("cpu_pct", "mem_pct", "gpu_pct", "spill_pct")] == [None] * 4


def test_run_resources_per_host_and_metric(warehouse, duck):
    values = (
        warehouse.read("resources", ["web-1"])
        .filter((pl.col("host") == "app-1") & (pl.col("metric") == "cpu_pct"))["value"]
        .to_numpy()
    )
    rows = mart(duck, "run_resources", run_id="web-1")
    assert rows.height == 4
    (row,) = rows.filter(
        (pl.col("host") == "app-1") & (pl.col("metric_name") == "cpu_pct")
    ).to_dicts()
    assert row["samples"] == 10
    assert row["mean_value"] == pytest.approx(values.mean())
    assert row["p95_value"] == pytest.approx(np.percentile(values, 95))
    assert row["max_value"] == values.max()


def test_interval_only_run_uses_the_tools_overall_row(duck):
    tiers = one(duck, "run_tiers", "k6-sum")
    percentiles = [tiers[f"latency_p{q}"] for q in (50, 90, 95, 99)]
    assert percentiles == pytest.approx([20.0, 30.0, 40.0, 50.0], rel=1e-9)  # the tool's own
    assert tiers["latency_max"] == 60.0
    assert tiers["error_rate"] == pytest.approx(6 / 600)
    assert tiers["duration_s"] == 60.0  # from the manifest
    assert tiers["throughput_rps"] == pytest.approx(600 / 60)
    assert tiers["pod_restarts"] is None


def test_interval_only_run_without_overall_row_weighs_the_endpoints(warehouse, duck):
    # Only report.json counts for /a (more rows than stats.csv): 300 requests, /b 150. An
    # endpoint's percentiles are the run summary's (those of all its intervals' requests).
    summary = {r["endpoint"]: r for r in warehouse.read("run_summary", ["art-1"]).to_dicts()}
    tiers = one(duck, "run_tiers", "art-1")
    for name in ("latency_p50", "latency_p90", "latency_p95", "latency_p99"):
        endpoints = [summary["/a"][name], summary["/b"][name]]
        assert tiers[name] == pytest.approx(np.average(endpoints, weights=[300, 150]))
    # An endpoint's value stands for all its requests, also when some intervals lack it: /b's
    # p90 is that of its two intervals with one, weighted by all 150 of its requests.
    assert 14.0 < summary["/a"]["latency_p90"] < 16.0 < 40.0 < summary["/b"]["latency_p90"] < 41.0
    assert tiers["latency_max"] == 70.0
    assert tiers["error_rate"] == pytest.approx(6 / 450)
    assert tiers["throughput_rps"] == pytest.approx(300 / 30 + 150 / 30)
    assert tiers["duration_s"] is None  # no finished_at: unknown, not zero


def test_metric_daily_rolls_up_valid_runs_per_utc_day(warehouse, duck):
    daily = mart(duck, "metric_daily")
    # web-2 started 23:50 UTC: the first of November in UTC, already the second in Tokyo.
    assert sorted(set(daily["day"].to_list())) == [date(2026, 11, 1), date(2026, 11, 3)]
    summary = warehouse.read("run_summary", ["web-1", "web-2"]).filter(
        pl.col("endpoint") == "/api/orders"
    )
    (row,) = daily.filter(
        (pl.col("endpoint") == "/api/orders") & (pl.col("metric_name") == "latency_p95")
    ).to_dicts()
    assert row["runs"] == 2
    assert row["mean_value"] == pytest.approx(summary["latency_p95"].mean())
    assert row["min_value"] == summary["latency_p95"].min()
    assert row["max_value"] == summary["latency_p95"].max()
    assert daily.filter(pl.col("day") == date(2026, 11, 2)).height == 0  # web-3 is invalid


def test_marts_build_when_tables_have_no_data_yet(tmp_path):
    wh = Warehouse(tmp_path / "warehouse")
    run_manifest = manifest("only", DAY1)
    run = DemoRun(run_manifest, generate_requests(DAY1, seed=1, duration_s=5))
    ingest_paths([run.write(tmp_path / "raw") / "requests.ndjson"], run_manifest, wh)
    mark_validated(wh)
    con = wh.connect()
    rows = run_duckdb(con, MODELS)
    assert rows["run_tiers"] == 1 and rows["run_resources"] == 0 and rows["metric_daily"] == 0
    tiers = one(con, "run_tiers", "only")
    assert tiers["cpu_pct"] is None and tiers["oom_kills"] is None
    assert tiers["latency_p95"] > 0
    assert run_duckdb(con, MODELS) == rows  # re-running replaces, no duplicates


def test_an_interval_run_not_summarised_yet_keeps_its_counts(tmp_path):
    """The interval latency comes from run_summary; a run (or endpoint) without a summary row
    yet still shows its requests, with its latency unknown."""
    wh = Warehouse(tmp_path / "warehouse")
    art = manifest("art-2", DAY1, duration_s=None, tool="artillery")
    ingest_files([], art, wh)
    rows = [
        ("/a", "report.json", 10.0, 100, 1, 10.0, 14.0, 15.0, 19.0, 25.0),
        ("/b", "report.json", 10.0, 50, 0, 30.0, 40.0, 45.0, 50.0, 70.0),
    ]
    wh.write_partition("interval_stats", "art-2", intervals("art-2", art.started_at, rows))
    summary = summarize_run(wh.read("requests", ["art-2"]), wh.read("interval_stats", ["art-2"]))
    wh.write_partition("run_summary", "art-2", summary.filter(pl.col("endpoint") == "/a"))
    mark_validated(wh)
    con = wh.connect()
    run_duckdb(con, MODELS)
    endpoints = {r["endpoint"]: r for r in mart(con, "run_endpoint_summary").to_dicts()}
    assert endpoints["/a"]["request_count"] == 100 and endpoints["/b"]["request_count"] == 50
    assert endpoints["/a"]["latency_p95"] == pytest.approx(summary["latency_p95"][0])
    assert endpoints["/b"]["latency_p95"] is None
    assert one(con, "run_performance", "art-2")["request_count"] == 150


# ----------------------------------------------------------------------------- Postgres


@pytest.fixture(scope="module")
def pg_schema(warehouse, postgres_url) -> str:
    """The warehouse mirrored into a fresh Postgres schema, with every model run there."""
    pg = PostgresWarehouse(postgres_url, schema=f"sqlm_{uuid.uuid4().hex[:8]}")
    pg.migrate()
    for table in sorted({s for m in MODELS for s in m.sources}):
        for run_id in warehouse.run_ids(table):
            pg.replace_partition(table, run_id, warehouse.read(table, [run_id]))
    run_postgres(tokyo(postgres_url), pg.schema, MODELS)
    return pg.schema


def tokyo(url: str) -> str:
    return f"{url}?options=-c%20TimeZone%3D{SESSION_TZ}"


def comparable(frame: pl.DataFrame) -> list[tuple]:
    """Rows sorted by their non-float columns (a mart's grain), floats kept for approx."""
    floats = [i for i, dtype in enumerate(frame.dtypes) if dtype == pl.Float64]
    rows = frame.rows()

    def key(row: tuple) -> tuple:
        return tuple((v is None, str(v)) for i, v in enumerate(row) if i not in floats)

    return sorted(rows, key=key)


@pytest.mark.services
@pytest.mark.parametrize("name", MARTS)
def test_every_mart_has_the_same_rows_on_duckdb_and_postgres(name, duck, pg_schema, postgres_url):
    on_duckdb = read_duckdb(duck, name)
    on_postgres = read_postgres(postgres_url, pg_schema, name)
    assert on_postgres.columns == on_duckdb.columns
    assert on_duckdb.height > 0
    expected, got = comparable(on_duckdb), comparable(on_postgres)
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        for column, a, b in zip(on_duckdb.columns, want, have, strict=True):
            assert same(a, b), (name, column, a, b, want)


@pytest.mark.services
def test_postgres_runs_all_models_in_one_transaction(pg_schema, postgres_url):
    before = read_postgres(postgres_url, pg_schema, "run_tiers")
    broken = Model(
        name="zz_broken",
        kind="table",
        grain="one row per nothing",
        deps=("run_tiers",),
        sources=(),
        sql="select no_such_column from {{ ref('run_tiers') }}",
        path=Path("zz_broken.sql"),
    )
    with pytest.raises(Exception, match="no_such_column"):
        run_postgres(postgres_url, pg_schema, [*MODELS, broken])
    assert read_postgres(postgres_url, pg_schema, "run_tiers").equals(before)


# ----------------------------------------------------------------------------- exact percentiles

# The one-pass exact percentiles: the two-pass models must give Postgres' floats, which are
# polars' and numpy's; DuckDB's own aggregate computes lo * (1 - d) + hi * d for doubles.
ONE_PASS = {
    "duckdb": "quantile_cont(latency_ms, {q})",
    "postgres": "percentile_cont({q}) within group (order by latency_ms)",
}
PERCENTILES = {"latency_p50": 0.50, "latency_p90": 0.90, "latency_p95": 0.95, "latency_p99": 0.99}


def generated_requests(run_id: str, seed: int) -> pl.DataFrame:
    """A run whose endpoints have every shape a load test gives, each of 1 to 3,000 requests:
    log-normal, whole milliseconds (JMeter), heavy ties, one value, values at and below
    MIN_LATENCY_MS, values on bucket edges; failed requests with outlandish latencies, some
    null latencies, an endpoint with only failures, a few requests without an endpoint."""
    rng = np.random.default_rng(seed)
    shapes = {
        "/lognormal": lambda n: rng.lognormal(np.log(30), 0.6, n),
        "/jmeter": lambda n: np.round(rng.lognormal(np.log(40), 0.8, n)),
        "/ties": lambda n: rng.choice([3.0, 3.0, 3.0, 7.0, 120.0], n),
        "/constant": lambda n: np.full(n, 42.5),
        "/tiny": lambda n: rng.choice([0.0, 1e-6, 5e-4, MIN_LATENCY_MS, 1.0000001e-3, 0.3], n),
        "/edges": lambda n: (
            gamma() ** rng.integers(-40, 400, n).astype(float)
            * rng.choice([1.0, 1.0 - 2**-52, 1.0 + 2**-52], n)
        ),
    }
    frames = []
    for endpoint, make in shapes.items():
        n = int(rng.choice([1, 2, 3, 50, 3_000]))
        ok = rng.random(n) > 0.05
        frames.append(
            pl.DataFrame(
                {"endpoint": endpoint, "ok": ok, "latency_ms": np.where(ok, make(n), 9e9)},
                schema_overrides={"endpoint": pl.String},
            )
        )
    frames.append(pl.DataFrame({"endpoint": "/failing", "ok": [False] * 4, "latency_ms": 1.0}))
    frames.append(
        pl.DataFrame(
            {"endpoint": None, "ok": True, "latency_ms": rng.lognormal(2, 1, 20)},
            schema_overrides={"endpoint": pl.String},
        )
    )
    frame = pl.concat(frames)
    nulls = pl.Series(rng.random(frame.height) < 0.01)
    frame = frame.with_columns(
        run_id=pl.lit(run_id),
        ts=pl.datetime_range(
            DAY1, DAY1 + timedelta(milliseconds=frame.height - 1), "1ms", eager=True
        ),
        latency_ms=pl.when(nulls).then(None).otherwise(pl.col("latency_ms")),
    )
    return conform("requests", frame.sample(fraction=1.0, shuffle=True, seed=seed))


@pytest.fixture(scope="module")
def percentile_warehouse(tmp_path_factory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("percentiles") / "warehouse")
    for seed in range(4):
        wh.write_partition("requests", f"q{seed}", generated_requests(f"q{seed}", seed))
    return wh


def one_pass(engine: str, relation: str, by: str) -> str:
    columns = ", ".join(
        f"{ONE_PASS[engine].format(q=q)} filter (where is_ok) as {name}"
        for name, q in PERCENTILES.items()
    )
    return f"select {by}, {columns} from {relation} group by {by}"


def assert_same_floats(
    got: pl.DataFrame, expected: pl.DataFrame, by: list[str], ulps: int = 0
) -> None:
    """The same floats (nulls where a group has no latency), or within ``ulps`` units in the
    last place."""
    got, expected = (f.select(*by, *PERCENTILES).sort(by, nulls_last=True) for f in (got, expected))
    assert got.height == expected.height > 0
    for a, b in zip(got.iter_rows(), expected.iter_rows(), strict=True):
        assert a[: len(by)] == b[: len(by)]
        for x, y in zip(a[len(by) :], b[len(by) :], strict=True):
            assert x == y or (None not in (x, y) and abs(x - y) <= ulps * math.ulp(y)), (a, b)


def polars_one_pass(warehouse: Warehouse, by: list[str]) -> pl.DataFrame:
    return (
        warehouse.read("requests")
        .group_by(by)
        .agg(
            **{
                name: pl.col("latency_ms").filter(pl.col("ok")).quantile(q, interpolation="linear")
                for name, q in PERCENTILES.items()
            }
        )
    )


def test_marts_percentiles_are_the_one_pass_floats_on_duckdb(percentile_warehouse):
    con = percentile_warehouse.connect()
    run_duckdb(con, MODELS)
    endpoint, run = ["run_id", "endpoint"], ["run_id"]
    by_endpoint = polars_one_pass(percentile_warehouse, endpoint)
    assert by_endpoint.filter(pl.col("latency_p50").is_null()).height == 4  # "/failing"
    sql_by_endpoint = read_duckdb(con, "run_endpoint_summary")
    sql_by_run = read_duckdb(con, "run_performance")
    assert_same_floats(sql_by_endpoint, by_endpoint, endpoint)
    assert_same_floats(sql_by_run, polars_one_pass(percentile_warehouse, run), run)
    # The Python summary (the same two passes in polars) gives the same floats.
    python = summarize_requests(percentile_warehouse.scan("requests"))
    assert_same_floats(python, by_endpoint, endpoint)
    # DuckDB's quantile_cont, rounded its own way, agrees to two units in the last place.
    duck_by_endpoint = con.sql(one_pass("duckdb", "stg_requests", "run_id, endpoint")).pl()
    assert_same_floats(sql_by_endpoint, duck_by_endpoint, endpoint, ulps=2)
    assert_same_floats(
        sql_by_run, con.sql(one_pass("duckdb", "stg_requests", "run_id")).pl(), run, ulps=2
    )


@pytest.mark.services
def test_marts_percentiles_are_the_one_pass_floats_on_postgres(percentile_warehouse, postgres_url):
    import psycopg

    pg = PostgresWarehouse(postgres_url, schema=f"pct_{uuid.uuid4().hex[:8]}")
    pg.migrate()
    for run_id in percentile_warehouse.run_ids("requests"):
        pg.replace_partition("requests", run_id, percentile_warehouse.read("requests", [run_id]))
    run_postgres(postgres_url, pg.schema, MODELS)

    def query(sql: str) -> pl.DataFrame:
        with psycopg.connect(postgres_url) as con, con.cursor() as cur:
            cur.execute(sql)
            names = [c.name for c in cur.description]
            return pl.DataFrame(
                cur.fetchall(), schema=names, orient="row", infer_schema_length=None
            )

    requests = f'"{pg.schema}"."stg_requests"'
    by_endpoint = query(one_pass("postgres", requests, "run_id, endpoint"))
    assert_same_floats(
        read_postgres(postgres_url, pg.schema, "run_endpoint_summary"),
        by_endpoint,
        ["run_id", "endpoint"],
    )
    by_run = query(one_pass("postgres", requests, "run_id"))
    assert_same_floats(
        read_postgres(postgres_url, pg.schema, "run_performance"), by_run, ["run_id"]
    )


def plan_nodes(node: dict, build_side: bool = False):
    """(node, whether it is on the build side of a join above it) for every node of a DuckDB
    JSON plan; a join's second child is its build side."""
    yield node, build_side
    children = node.get("children", [])
    for i, child in enumerate(children):
        joins = "JOIN" in node["name"] or node["name"] == "CROSS_PRODUCT"
        yield from plan_nodes(child, build_side or (joins and i == 1))


def test_duckdb_never_holds_the_request_rows_in_a_join(percentile_warehouse):
    """Pass 2 looks values up in the few located buckets (IN lists: mark joins, whose build
    side is the subquery). A join whose hash table were built on the scan would hold every
    latency again (DuckDB estimates the rows derived from pass 1 far too high)."""
    import json

    con = percentile_warehouse.connect()
    run_duckdb(con, [m for m in MODELS if m.kind == "view"])
    ((_, plan),) = con.sql("explain (format json) select * from int_request_percentiles").fetchall()
    stops = {"HASH_GROUP_BY", "PERFECT_HASH_GROUP_BY", "UNGROUPED_AGGREGATE", "WINDOW", "CTE_SCAN"}

    def scans_on_build_side(node: dict, build_side: bool) -> int:
        if node["name"] in stops:
            return 0
        found = int(build_side and node["name"] in {"READ_PARQUET", "TABLE_SCAN"})
        children = node.get("children", [])
        joins = "JOIN" in node["name"] or node["name"] == "CROSS_PRODUCT"
        return found + sum(
            scans_on_build_side(child, build_side or (joins and i == 1))
            for i, child in enumerate(children)
        )

    (root,) = json.loads(plan)
    names = [node["name"] for node, _ in plan_nodes(root)]
    assert names.count("READ_PARQUET") + names.count("TABLE_SCAN") == 2  # two passes
    assert scans_on_build_side(root, False) == 0
