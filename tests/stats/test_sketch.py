"""Sketch percentiles stay within the stated relative accuracy of the exact ones, across merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.stats.sketch import sketch_quantiles, sketch_requests

T0 = datetime(2026, 11, 1, tzinfo=UTC)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "max": 1.0}


def requests(run_id: str, n: int, rng, bimodal: bool = False) -> pl.DataFrame:
    latency = rng.lognormal(np.log(20), 0.6, n)
    if bimodal:
        slow = rng.random(n) < 0.1
        latency[slow] = rng.lognormal(np.log(400), 0.3, slow.sum())
    return conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": run_id,
                "ts": [T0 + timedelta(seconds=float(s)) for s in rng.uniform(0, 600, n)],
                "endpoint": rng.choice(["/a", "/b"], n),
                "ok": rng.random(n) > 0.01,
                "latency_ms": latency,
            }
        ),
    )


@pytest.mark.parametrize("accuracy", [0.01, 0.02])
def test_merged_sketch_quantiles_are_within_the_accuracy_of_exact_ones(accuracy):
    rng = np.random.default_rng(0)
    raw = pl.concat([requests(f"r{i}", 20_000, rng, bimodal=i % 2 == 1) for i in range(6)])
    sketches = pl.concat(
        [sketch_requests(raw.filter(pl.col("run_id") == f"r{i}"), accuracy) for i in range(6)]
    )
    # Per run x endpoint x minute rows, merged over all runs and minutes per endpoint.
    assert sketches.select("run_id", "endpoint", "minute").unique().height > 6
    estimated = sketch_quantiles(sketches, QUANTILES, by=["endpoint"], accuracy=accuracy)
    for row in estimated.iter_rows(named=True):
        exact = raw.filter(pl.col("ok") & (pl.col("endpoint") == row["endpoint"]))["latency_ms"]
        assert row["total"] == exact.len()
        for name, q in QUANTILES.items():
            truth = float(np.quantile(exact.to_numpy(), q, method="lower"))
            assert abs(row[name] - truth) <= accuracy * truth * (1 + 1e-9), (name, row[name], truth)


def test_sketches_merge_across_runs_exactly_as_one_sketch_of_everything():
    rng = np.random.default_rng(1)
    raw = pl.concat([requests(f"r{i}", 3_000, rng) for i in range(3)])
    separate = pl.concat(
        [sketch_requests(raw.filter(pl.col("run_id") == f"r{i}")) for i in range(3)]
    )
    together = sketch_requests(raw.with_columns(run_id=pl.lit("all")))
    a = sketch_quantiles(separate, QUANTILES, by=["endpoint"])
    b = sketch_quantiles(together, QUANTILES, by=["endpoint"])
    assert a.equals(b)


def test_zero_latencies_have_their_own_bucket():
    raw = conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": "r",
                "ts": [T0] * 4,
                "endpoint": "/a",
                "ok": True,
                "latency_ms": [0.0, 0.0, 0.0, 5.0],
            }
        ),
    )
    (row,) = sketch_quantiles(sketch_requests(raw), {"p50": 0.5, "max": 1.0}, by=["endpoint"]).rows(
        named=True
    )
    assert row["p50"] == 0.0 and row["max"] == pytest.approx(5.0, rel=0.01)
