"""Per-run histories built from the catalog and the run summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from metrics_pipeline.analysis.series import iter_series, run_series
from metrics_pipeline.contracts.tables import conform

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_series_keep_valid_runs_in_start_order_with_their_versions():
    runs = conform(
        "runs",
        pl.DataFrame(
            {
                "run_id": ["r2", "r1", "bad"],
                "suite": "s",
                "scenario": "x",
                "environment": "e",
                "started_at": [T0 + timedelta(days=2), T0 + timedelta(days=1), T0],
                "git_sha": ["b2", "a1", "zz"],
                "valid": [True, True, False],
            }
        ),
    )
    summaries = conform(
        "run_summary",
        pl.DataFrame(
            {
                "run_id": ["r1", "r2", "bad"],
                "endpoint": "/a",
                "latency_p50": [10.0, 12.0, 99.0],
                "error_rate": [0.0, None, 0.0],
            }
        ),
    )
    series = run_series(runs, summaries)
    p50 = series.filter(pl.col("metric") == "latency_p50")
    assert p50.select("run_id", "git_sha", "value").rows() == [
        ("r1", "a1", 10.0),
        ("r2", "b2", 12.0),
    ]
    assert series.filter(pl.col("metric") == "error_rate")["run_id"].to_list() == ["r1"]
    keys = [key["metric"] for key, _ in iter_series(series, min_points=2)]
    assert keys == ["latency_p50"]
