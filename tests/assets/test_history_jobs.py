"""The nightly and weekly jobs over a history with a known step."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from metrics_pipeline.evaluation.demo_data import DemoRun, demo_runs, generate_requests
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.upload.uploader import upload_run

pytestmark = pytest.mark.slow
STEP_AT = 7  # runs from this index on have /api/orders 50 % slower
SPIKE_AT = 11  # the run whose business KPI (sign-ups) is far outside its daily pattern


def signups(run: DemoRun, i: int) -> dict:
    """A kpi_points record as the README documents it, reported with the run."""
    ts = run.manifest.started_at.isoformat().replace("+00:00", "Z")
    value = 400 if i == SPIKE_AT else 60 + i % 3
    return {"record": "kpi_points", "ts": ts, "metric": "signups", "value": value, "dims": {}}


def test_nightly_and_weekly_jobs_find_the_step_and_build_the_marts(
    settings, store, warehouse, tmp_path
):
    runs = []
    for i, run in enumerate(demo_runs(14, duration_s=8)):
        slow = {"/api/orders": 1.5} if i >= STEP_AT else None
        records = generate_requests(run.manifest.started_at, duration_s=8, seed=1000 + i, slow=slow)
        runs.append(DemoRun(run.manifest, [*records, signups(run, i)]))
        upload_run(store, [runs[-1].write(tmp_path / "runs") / "requests.ndjson"], run.manifest)
    with dg.instance_for_test() as instance:
        defs = build_definitions(settings)
        tick = sense_and_run(defs, instance)
        assert all(r.success for r in tick.results.values())
        nightly = defs.resolve_job_def("nightly").execute_in_process(instance=instance)
        assert nightly.success
        weekly = defs.resolve_job_def("weekly").execute_in_process(instance=instance)
        assert weekly.success

    # Verdicts measure the run-to-run noise on the combination's earlier accepted runs too.
    noise = warehouse.read("verdicts", [runs[-1].manifest.run_id])["noise"].drop_nulls()
    assert noise.len() and noise.str.starts_with("history of").all(), noise.unique()

    points = warehouse.read("change_points").filter(
        (pl.col("endpoint") == "/api/orders") & (pl.col("metric") == "latency_p50")
    )
    assert points.height == 1 and points["worse"][0]
    found_at = [r.manifest.run_id for r in runs].index(points["run_id"][0])
    assert abs(found_at - STEP_AT) <= 1
    version = runs[found_at].manifest.service_version
    findings = warehouse.read("findings").filter(
        (pl.col("kind") == "change_point") & (pl.col("endpoint") == "/api/orders")
    )
    assert any(version in summary for summary in findings["summary"])
    assert set(findings["severity"]) <= {"warning", "critical"}
    # Other endpoints did not change: no worse step is reported for them.
    others = warehouse.read("change_points").filter(
        pl.col("worse")
        & pl.col("metric").str.starts_with("latency")
        & (pl.col("endpoint") != "/api/orders")
    )
    assert others.height == 0

    # The business KPI reached the warehouse, the SLA evaluation and the anomaly finding.
    assert warehouse.read("kpi_points").height == 14
    adoption = warehouse.read("sla_evaluations").filter(pl.col("kpi") == "user_adoption")
    assert adoption.height == 14 and set(adoption["status"]) == {"met"}
    anomalies = warehouse.read("findings").filter(pl.col("kind") == "anomaly")
    spike_day = f"{runs[SPIKE_AT].manifest.started_at:%Y-%m-%d}"
    assert any("signups" in s and spike_day in s for s in anomalies["summary"])

    forecasts = warehouse.read("forecasts")
    assert forecasts.height > 0 and forecasts["step"].max() == 30

    with warehouse.connect() as con:
        con.execute(f"attach '{warehouse.root / 'warehouse.duckdb'}' as catalog (read_only)")
        (tiers,) = con.execute("select count(*) from catalog.run_tiers").fetchone()
    assert tiers == 14
