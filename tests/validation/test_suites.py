"""The Great Expectations suite of the requests table, on good and broken frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from metrics_pipeline.models import conform
from metrics_pipeline.validation import validate


def frame(**overrides) -> pl.DataFrame:
    base = {
        "run_id": ["r", "r", "r"],
        "ts": [datetime(2026, 11, 1, tzinfo=UTC)] * 3,
        "endpoint": ["/a", "/a", "/b"],
        "ok": [True, True, False],
        "status": [200, 200, 500],
        "latency_ms": [1.0, 2.0, 3.0],
        "source_file": ["f"] * 3,
        "line_no": [1, 2, 3],
    }
    return conform("requests", pl.DataFrame(base | overrides))


def test_clean_rows_pass():
    result = validate("requests", frame())
    assert result.success and result.rows == 3 and result.failures == []


def test_each_broken_rule_is_reported_with_its_unexpected_count():
    result = validate(
        "requests",
        frame(latency_ms=[-1.0, 5e6, 3.0], endpoint=[None, "/a", "/b"], line_no=[1, 1, 3]),
    )
    failed = {(o.expectation, o.column): o.unexpected_count for o in result.failures}
    assert failed == {
        ("expect_column_values_to_be_between", "latency_ms"): 2,
        ("expect_column_values_to_not_be_null", "endpoint"): 1,
        ("expect_compound_columns_to_be_unique", "source_file,line_no"): 2,
    }
    assert "NO" in result.as_markdown()


def test_timestamps_outside_the_window_fail():
    start = datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC)
    result = validate("requests", frame(), (start, None))
    assert [(o.column, o.unexpected_count) for o in result.failures] == [("ts", 3)]
    assert validate("requests", frame(), (start - timedelta(seconds=2), None)).success


def test_interval_stats_rules():
    rows = conform(
        "interval_stats",
        pl.DataFrame(
            {
                "run_id": ["r", "r"],
                "ts": [datetime(2026, 11, 1, tzinfo=UTC)] * 2,
                "endpoint": ["/a", "/b"],
                "count": [10, 5],
                "errors": [1, 6],
                "p50": [5.0, 9.0],
                "p95": [9.0, 4.0],
            }
        ),
    )
    failed = {
        (o.expectation, o.column): o.unexpected_count
        for o in validate("interval_stats", rows).failures
    }
    assert failed == {
        ("expect_column_pair_values_a_to_be_greater_than_b", "count,errors"): 1,
        ("expect_column_pair_values_a_to_be_greater_than_b", "p95,p50"): 1,
    }
