"""Baseline choice and per-run verdicts on labelled synthetic data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from metrics_pipeline.demo_data import demo_runs
from metrics_pipeline.formats.canonical_jsonl import request_row
from metrics_pipeline.models import conform
from metrics_pipeline.verdicts import VerdictPolicy, choose_baseline, judge_run

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def runs_table(rows: list[dict]) -> pl.DataFrame:
    defaults = {"suite": "s", "scenario": "x", "environment": "e", "valid": True, "baseline": None}
    return conform("runs", pl.DataFrame([defaults | r for r in rows]))


def test_baseline_is_the_last_five_accepted_runs_of_the_same_combination():
    table = runs_table(
        [{"run_id": f"r{i}", "started_at": T0 + timedelta(days=i)} for i in range(1, 9)]
        + [
            {"run_id": "other-env", "started_at": T0, "environment": "prod"},
            {"run_id": "invalid", "started_at": T0 + timedelta(days=7, hours=1), "valid": False},
            {"run_id": "later", "started_at": T0 + timedelta(days=30)},
        ]
    )
    candidate = table.filter(pl.col("run_id") == "r8").row(0, named=True)
    assert choose_baseline(table, candidate, regressed={"r6"}) == ["r2", "r3", "r4", "r5", "r7"]
    first = table.filter(pl.col("run_id") == "r1").row(0, named=True)
    assert choose_baseline(table, first, regressed=set()) == []


def test_explicit_baseline_wins_and_unknown_one_gives_none():
    table = runs_table(
        [{"run_id": f"r{i}", "started_at": T0 + timedelta(days=i)} for i in range(3)]
    )
    candidate = table.row(2, named=True)
    assert choose_baseline(table, candidate | {"baseline": "r0"}, set()) == ["r0"]
    assert choose_baseline(table, candidate | {"baseline": "nope"}, set()) == []
    assert choose_baseline(table, candidate | {"baseline": "auto"}, set()) == ["r0", "r1"]


def requests_of(run) -> pl.DataFrame:
    rows = [request_row(r) for r in run.records]
    return conform(
        "requests",
        pl.DataFrame(rows, infer_schema_length=None).with_columns(
            run_id=pl.lit(run.manifest.run_id)
        ),
    )


def test_only_the_slowed_endpoint_is_flagged_and_tiny_endpoints_are_spared():
    # /health answers in ~0.6 ms: 30 % slower is 0.2 ms, under the 1 ms floor -> not a regression.
    runs = demo_runs(6, duration_s=30)
    slowed = demo_runs(6, duration_s=30, slowed_endpoint="/health")[-1]
    baseline = pl.concat([requests_of(r) for r in runs[:-1]])
    ids = [r.manifest.run_id for r in runs[:-1]]

    verdicts = judge_run(requests_of(runs[-1]), baseline, ids)
    assert set(verdicts.filter(pl.col("regression"))["endpoint"]) == {"/api/orders"}
    assert (verdicts["p_adjusted"] >= verdicts["p_value"]).all()
    assert verdicts.height == 5 * 3  # endpoints x (p50, p95, error rate)

    health = judge_run(requests_of(slowed), baseline, ids)
    assert not health["regression"].any()
    row = health.filter((pl.col("endpoint") == "/health") & (pl.col("metric") == "latency_p50"))
    assert row["change"][0] > 0.2  # large in relative terms, yet below the absolute floor
    strict = judge_run(requests_of(slowed), baseline, ids, VerdictPolicy(min_latency_ms=0.0))
    assert set(strict.filter(pl.col("regression"))["endpoint"]) == {"/health"}
