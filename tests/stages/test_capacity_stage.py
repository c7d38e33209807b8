"""The capacity step end to end: generated stepped-load runs in canonical JSONL, ingested like
any upload, through ``stages.capacity.fit_run`` into the ``capacity`` table.

The runs come from a system that follows the Universal Scalability Law, written out below:
each load level holds ``N`` requests in flight (a closed test without think time), so it
completes ``X(N)`` requests per second and each takes ``N / X(N)`` on average (Little's law).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.optimize import brentq

from metrics_pipeline.analysis.kpi_catalog import KpiCatalog, KpiEntry, Scope
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.ingest.files import ingest_paths
from metrics_pipeline.stages.capacity import (
    capacity_row,
    fit_run,
    windows_from_intervals,
    windows_from_requests,
)

LAMBDA, SIGMA, KAPPA = 20.0, 0.05, 0.001  # requests/s per request in flight, contention, crosstalk
PEAK_LOAD = math.sqrt((1 - SIGMA) / KAPPA)  # 30.8 requests in flight
SHAPE = 0.3  # log-normal shape of the latencies
STEP_S = 15.0
STARTED = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
ENDPOINT = "/api/orders"


def usl(n, lam=LAMBDA, sigma=SIGMA, kappa=KAPPA):
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


PEAK = usl(PEAK_LOAD)  # 180.8 requests/s


def p95_ms(n):
    """p95 of the log-normal latencies of mean N / X(N) seconds."""
    return 1000 * n / usl(n) * math.exp(1.6448536 * SHAPE - SHAPE**2 / 2)


def stepped_run(run_id: str, loads, tmp_path, seed: int = 0) -> tuple[RunManifest, list]:
    """A stepped test, one level per STEP_S seconds, written as canonical JSONL."""
    rng = np.random.default_rng(seed)
    records = []
    for i, n in enumerate(loads):
        rate = usl(n)
        count = rng.poisson(rate * STEP_S)
        ends = i * STEP_S + np.sort(rng.uniform(0, STEP_S, count))
        latency_s = rng.lognormal(math.log(n / rate) - SHAPE**2 / 2, SHAPE, count)
        for end, seconds in zip(ends, latency_s, strict=True):
            ts = STARTED + timedelta(seconds=float(end))  # completion time, as demo runs
            records.append(
                {
                    "ts": ts.isoformat().replace("+00:00", "Z"),
                    "endpoint": ENDPOINT,
                    "method": "POST",
                    "status": 200,
                    "latency_ms": round(1000 * float(seconds), 3),
                }
            )
    manifest = RunManifest(
        run_id=run_id,
        suite="checkout",
        scenario="stepped-users",
        environment="staging",
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=STEP_S * len(loads)),
        tool="custom",
    )
    path = tmp_path / run_id / "requests.ndjson"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest, [path]


def catalog(target_ms: float) -> KpiCatalog:
    entry = KpiEntry(
        description="Orders stay fast.",
        metric="latency_p95",
        unit="ms",
        direction="lower_is_better",
        target=target_ms,
        alert_threshold=2 * target_ms,
        severity="critical",
        scope=Scope(endpoints=["/api/*"]),
    )
    return KpiCatalog(kpis={"orders_p95": entry})


def ingested(warehouse, manifest, paths):
    report = ingest_paths(paths, manifest, warehouse)
    assert not report.file_errors
    return manifest.run_id


def test_stepped_run_past_the_peak_gives_the_peak_and_the_sla_load(warehouse, tmp_path):
    loads = np.linspace(PEAK_LOAD / 4, 2 * PEAK_LOAD, 8)  # 7.7 ... 61.6 in flight
    run_id = ingested(warehouse, *stepped_run("stepped-1", loads, tmp_path))
    target = 400.0  # crossed between the levels 38.5 and 46.2
    crossing = brentq(lambda n: p95_ms(n) - target, 1, 200)  # 44.5

    result = fit_run(warehouse, run_id, catalog(target))

    row = result.table.row(0, named=True)
    assert row["status"] == "peak" and row["peak_is_bound"] is False
    assert row["peak_rps"] == pytest.approx(PEAK, rel=0.05)
    assert row["peak_rps_low"] <= PEAK <= row["peak_rps_high"]
    assert row["peak_load"] == pytest.approx(PEAK_LOAD, rel=0.15)
    assert row["peak_load_low"] <= PEAK_LOAD <= row["peak_load_high"]
    assert row["model"] == "usl" and row["usl_kappa"] > 0
    assert row["load_measure"] == "concurrency" and row["source"] == "requests"
    assert row["load_min"] < loads[0] * 1.2 and row["load_max"] > loads[-1] * 0.9
    assert row["n_windows"] >= 20
    assert row["sla_status"] == "crossed"
    assert (row["sla_kpi"], row["sla_endpoint"], row["sla_target_ms"]) == (
        "orders_p95",
        ENDPOINT,
        target,
    )
    assert row["sla_load"] == pytest.approx(crossing, rel=0.10)
    assert "peak" in row["summary"] and "crossed" in row["summary"]
    # Written as the run's partition, in the declared schema.
    stored = warehouse.read("capacity", [run_id])
    assert stored.schema == SCHEMAS["capacity"]
    assert stored.equals(result.table)


def test_the_windows_do_not_depend_on_the_order_of_the_rows(warehouse, tmp_path):
    """Two builds of one run (a worker reading the bucket, another process the folder) may
    see its rows in another order; the windows, and so the fit, must be the same floats."""
    loads = np.linspace(PEAK_LOAD / 4, 2 * PEAK_LOAD, 8)
    run_id = ingested(warehouse, *stepped_run("stepped-order", loads, tmp_path))
    requests = warehouse.read("requests", [run_id])
    shuffled = requests.sample(fraction=1.0, shuffle=True, seed=7)
    assert not shuffled["latency_ms"].equals(requests["latency_ms"])
    one, other = windows_from_requests(requests), windows_from_requests(shuffled)
    assert one.window_s == other.window_s
    assert one.totals.equals(other.totals) and one.p95.equals(other.p95)


def test_stepped_run_to_half_the_peak_reports_a_lower_bound_that_holds(warehouse, tmp_path):
    loads = np.linspace(PEAK_LOAD / 16, PEAK_LOAD / 2, 8)  # up to 15.4 in flight
    run_id = ingested(warehouse, *stepped_run("half-1", loads, tmp_path, seed=1))

    row = fit_run(warehouse, run_id, catalog(1000.0)).table.row(0, named=True)

    assert row["status"] == "lower_bound" and row["peak_is_bound"] is True
    assert row["peak_rps"] is None and row["peak_load"] is None  # no number beyond the range
    assert row["peak_rps_low"] <= PEAK  # the bound holds ...
    assert row["peak_rps_low"] >= 0.8 * usl(loads[-1])  # ... and says what was tested
    assert row["peak_load_low"] == row["load_max"] and row["load_max"] < PEAK_LOAD
    assert row["peak_rps_high"] is None and row["peak_load_high"] is None
    assert "at least" in row["summary"] and row["reason"]
    assert row["sla_status"] == "not_reached" and row["sla_load"] is None
    assert "not reached up to" in row["summary"]


def test_run_at_constant_load_has_no_fit_and_says_why(warehouse, tmp_path):
    demo = demo_runs(1, duration_s=60.0, now=STARTED + timedelta(days=1))[0]
    run_id = ingested(warehouse, demo.manifest, [demo.write(tmp_path) / "requests.ndjson"])

    row = fit_run(warehouse, run_id, catalog(300.0)).table.row(0, named=True)

    assert row["status"] == "no_fit"
    assert "constant load" in row["reason"] and row["reason"] in row["summary"]
    assert row["n_windows"] >= 6
    for column in ("model", "peak_is_bound", "peak_rps", "peak_rps_low", "sla_status"):
        assert row[column] is None, column


def test_run_without_any_rows_has_no_fit(warehouse, tmp_path):
    manifest = RunManifest(
        run_id="empty-1", suite="checkout", scenario="s", environment="e", started_at=STARTED
    )
    path = tmp_path / "requests.ndjson"
    path.write_text("")
    ingest_paths([path], manifest, warehouse)
    row = fit_run(warehouse, "empty-1", catalog(300.0)).table.row(0, named=True)
    assert row["status"] == "no_fit" and row["n_windows"] == 0 and row["reason"]


def test_tool_intervals_give_the_windows_when_there_are_no_requests():
    # Artillery-like 10 s periods of a ramp from 4 to 60 in flight, past the peak.
    loads = np.linspace(4, 60, 24)
    rng = np.random.default_rng(2)
    counts = rng.poisson(usl(loads) * 10)
    mean_ms = 1000 * loads / usl(loads)
    intervals = pl.DataFrame(
        {
            "ts": [STARTED + timedelta(seconds=10 * i) for i in range(loads.size)],
            "endpoint": ENDPOINT,
            "source_file": "report.json",
            "interval_s": 10.0,
            "count": counts,
            "errors": 0,
            "mean": mean_ms,
            "p95": mean_ms * 1.5,
        }
    )
    windows = windows_from_intervals(intervals)
    run = {"run_id": "r", "suite": "checkout", "scenario": "s", "environment": "e"}
    table, *_ = capacity_row(run, windows, catalog(300.0))
    row = table.row(0, named=True)
    assert row["source"] == "interval_stats" and row["n_windows"] == loads.size
    assert row["window_s"] == 10.0
    assert row["status"] == "peak"
    assert row["peak_rps"] == pytest.approx(PEAK, rel=0.05)
    # p95 = 1.5 x the mean latency reaches 300 ms where N / X(N) = 0.2 s.
    expected = brentq(lambda n: 1.5 * 1000 * n / usl(n) - 300.0, 1, 200)
    assert row["sla_status"] == "crossed"
    assert row["sla_load"] == pytest.approx(expected, rel=0.10)


@pytest.mark.slow
def test_the_ci_stage_job_runs_the_step_on_an_uploaded_run(settings, store, warehouse, tmp_path):
    import dagster as dg

    from assets.capacity import CAPACITY
    from metrics_pipeline.orchestration.definitions import build_definitions
    from metrics_pipeline.orchestration.partitions import runs_partitions
    from metrics_pipeline.upload.uploader import upload_run

    loads = np.linspace(PEAK_LOAD / 4, 2 * PEAK_LOAD, 8)
    manifest, paths = stepped_run("stepped-job-1", loads, tmp_path, seed=3)
    upload_run(store, paths, manifest)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(runs_partitions.name, [manifest.run_id])
        job = build_definitions(settings).resolve_job_def("ci_stage")
        result = job.execute_in_process(instance=instance, partition_key=manifest.run_id)
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == CAPACITY]
    assert event.materialization.metadata["status"].value == "peak"
    row = warehouse.read("capacity", [manifest.run_id]).row(0, named=True)
    assert row["status"] == "peak" and row["peak_rps"] == pytest.approx(PEAK, rel=0.05)


def test_the_run_report_shows_the_peak_or_the_bound(warehouse, tmp_path):
    from metrics_pipeline.reports.run import gather_run, run_document

    def section(run_id: str):
        (found,) = [
            s for s in run_document(gather_run(warehouse, run_id)).sections if s.id == "capacity"
        ]
        return found, dict(found.tables[0].rows)

    past = ingested(warehouse, *stepped_run("stepped-r", np.linspace(8, 62, 8), tmp_path))
    fit_run(warehouse, past, catalog(400.0))
    found, cells = section(past)
    assert "peak" in found.paragraphs[0]
    assert cells["estimate"] == "peak" and cells["peak throughput"].endswith("req/s")
    assert cells["peak throughput, 95% interval"].startswith("[")

    half = ingested(warehouse, *stepped_run("half-r", np.linspace(2, 15, 8), tmp_path, seed=1))
    fit_run(warehouse, half, catalog(1000.0))
    _, cells = section(half)
    assert cells["estimate"] == "lower bound" and cells["peak throughput"] == "-"
    assert cells["peak throughput, 95% interval"].startswith(">= ")
    assert cells["load where p95 crosses its SLA"] == "not reached"
