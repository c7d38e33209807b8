"""The Great Expectations suite of the requests table, on good and broken frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from metrics_pipeline.contracts.tables import conform
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


def test_batches_split_by_key_give_the_counts_of_the_whole_frame():
    # 60 rows, three duplicated (file, line) pairs far apart, two nulls and one bad latency:
    # validated in batches of 7 rows, every duplicate pair must still be seen together.
    n = 60
    lines = list(range(n))
    lines[50], lines[55], lines[59] = lines[3], lines[17], lines[17]
    latency = [float(i) for i in range(n)]
    latency[30] = -5.0
    endpoint = ["/a"] * n
    endpoint[10] = endpoint[40] = None
    rows = frame(
        run_id=["r"] * n,
        ts=[datetime(2026, 11, 1, tzinfo=UTC)] * n,
        endpoint=endpoint,
        ok=[True] * n,
        status=[200] * n,
        latency_ms=latency,
        source_file=["f"] * n,
        line_no=lines,
    )
    expected = {
        ("expect_column_values_to_be_between", "latency_ms"): 1,
        ("expect_column_values_to_not_be_null", "endpoint"): 2,
        # rows whose (file, line) occurs more than once: 3 and 50; 17, 55 and 59.
        ("expect_compound_columns_to_be_unique", "source_file,line_no"): 5,
    }
    for batch_rows in (7, 1000):
        result = validate("requests", rows, batch_rows=batch_rows)
        assert result.rows == n
        assert {(o.expectation, o.column): o.unexpected_count for o in result.failures} == expected
