"""The Great Expectations suites, on good and broken frames and Parquet partitions."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import MAX_LATENCY_MS
from metrics_pipeline.storage import Warehouse
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


def test_duplicates_far_apart_are_counted_in_one_pass():
    # 60 rows, three duplicated (file, line) pairs far apart, two nulls and one bad latency.
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
    result = validate("requests", rows)
    assert result.rows == n
    assert {(o.expectation, o.column): o.unexpected_count for o in result.failures} == expected


def _broken_partition(n: int, start: datetime, end: datetime) -> pl.DataFrame:
    """``n`` requests inside [start, end] with every rule of the suite broken somewhere:
    null endpoints, latencies out of range, duplicated (source_file, line_no), timestamps
    1 µs and more outside the window, status 1000."""
    rng = np.random.default_rng(16)
    span = int((end - start) / timedelta(microseconds=1))
    ts = [start + timedelta(microseconds=int(u)) for u in rng.integers(0, span + 1, n)]
    ts[0], ts[1] = start, end  # the bounds themselves are inside
    ts[2] = start - timedelta(microseconds=1)
    ts[3] = end + timedelta(microseconds=1)
    ts[4] = end + timedelta(hours=2)
    endpoint = rng.choice(["/a", "/b", "/c"], n).tolist()
    latency = rng.uniform(0, 500, n)
    status = rng.choice([200, 404, 500], n)
    line_no = np.arange(n)
    for i in rng.choice(np.arange(10, n), 40, replace=False):
        endpoint[i] = None
    latency[rng.choice(np.arange(10, n), 7, replace=False)] = -0.5
    latency[rng.choice(np.arange(10, n), 5, replace=False)] = 3_600_000.5
    status[rng.choice(np.arange(10, n), 3, replace=False)] = 1000
    # Duplicates far apart, one key three times.
    line_no[n - 1], line_no[n - 2], line_no[n - 3], line_no[n // 2] = 11, 12, 12, 13
    return conform(
        "requests",
        pl.DataFrame(
            {
                "ts": ts,
                "endpoint": endpoint,
                "ok": (status < 400).tolist(),
                "status": status,
                "latency_ms": latency,
                "source_file": ["requests.ndjson"] * n,
                "line_no": line_no,
            }
        ),
    )


def test_parquet_partition_counts_match_the_rules_computed_with_polars(tmp_path):
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    end = start + timedelta(minutes=30)
    rows = _broken_partition(5_000, start, end)
    warehouse = Warehouse(tmp_path)
    warehouse.write_partition("requests", "run-16", rows)
    files = warehouse.files("requests", ["run-16"])
    assert files and "run_id=run-16" in files[0].as_posix()

    result = validate("requests", files, (start, end))

    # The rules, independently, on the frame that was written (run_id comes from the folder).
    keys = pl.struct("source_file", "line_no")
    expected = {
        ("expect_column_values_to_not_be_null", "endpoint"): rows["endpoint"].null_count(),
        ("expect_column_values_to_be_between", "latency_ms"): rows.filter(
            (pl.col("latency_ms") < 0) | (pl.col("latency_ms") > MAX_LATENCY_MS)
        ).height,
        ("expect_column_values_to_be_between", "status"): rows.filter(
            (pl.col("status") < 0) | (pl.col("status") > 999)
        ).height,
        ("expect_compound_columns_to_be_unique", "source_file,line_no"): rows.filter(
            keys.is_duplicated()
        ).height,
        ("expect_column_values_to_be_between", "ts"): rows.filter(
            (pl.col("ts") < start) | (pl.col("ts") > end)
        ).height,
    }
    assert expected == {
        ("expect_column_values_to_not_be_null", "endpoint"): 40,
        ("expect_column_values_to_be_between", "latency_ms"): 12,
        ("expect_column_values_to_be_between", "status"): 3,
        ("expect_compound_columns_to_be_unique", "source_file,line_no"): 7,
        ("expect_column_values_to_be_between", "ts"): 3,
    }
    assert result.rows == rows.height
    assert {(o.expectation, o.column): o.unexpected_count for o in result.failures} == expected
    samples = {(o.expectation, o.column): o.unexpected_sample for o in result.failures}
    assert samples[("expect_column_values_to_be_between", "status")] == [1000] * 3
    assert sorted(samples[("expect_column_values_to_be_between", "ts")]) == [
        start - timedelta(microseconds=1),
        end + timedelta(microseconds=1),
        end + timedelta(hours=2),
    ]
    assert len(samples[("expect_column_values_to_not_be_null", "endpoint")]) == 10
    # The same rows as a frame give the same outcomes.
    assert validate("requests", warehouse.read("requests", ["run-16"]), (start, end)) == result


def test_a_column_the_partition_lacks_is_null(tmp_path):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    warehouse = Warehouse(tmp_path)
    warehouse.write_partition("requests", "old", frame())
    old = warehouse.files("requests", ["old"])[0]
    pl.read_parquet(old).drop("endpoint").write_parquet(old)

    result = validate("requests", [old], (start, None))

    assert [(o.column, o.unexpected_count) for o in result.failures] == [("endpoint", 3)]


def test_an_expectation_gx_cannot_compute_fails_with_the_reason(monkeypatch, tmp_path):
    import metrics_pipeline.validation.runner as runner

    n = 300_000
    rows = frame(
        run_id=["r"] * n,
        ts=[datetime(2026, 11, 1, tzinfo=UTC)] * n,
        endpoint=["/a"] * n,
        ok=[True] * n,
        status=[200] * n,
        latency_ms=[1.0] * n,
        source_file=["f"] * n,
        line_no=list(range(n)),
    )
    warehouse = Warehouse(tmp_path)
    warehouse.write_partition("requests", "r", rows)
    # A limit the uniqueness check's GROUP BY does not fit in.
    monkeypatch.setattr(runner, "DUCKDB_MEMORY_LIMIT", "2MB")
    failures = validate("requests", warehouse.files("requests", ["r"])).failures
    assert "expect_compound_columns_to_be_unique" in {o.expectation for o in failures}
    assert all("Out of Memory" in (o.error or "") for o in failures)


def test_a_process_that_validated_exits_without_noise():
    # Great Expectations and duckdb-engine in one process made DuckDB's extension print
    # 40-100 lines of "nanobind: leaked ..." at every exit (the CLI and the demo ended on them).
    import subprocess
    import sys

    script = (
        "from datetime import UTC, datetime\n"
        "import polars as pl\n"
        "from metrics_pipeline.validation import validate\n"
        "frame = pl.DataFrame({'run_id': ['r'], 'ts': [datetime(2026, 1, 1, tzinfo=UTC)],\n"
        "    'host': ['h'], 'metric': ['m'], 'value': [1.0]})\n"
        "print(validate('resources', frame).success)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "True"
    assert done.stderr == ""


def test_validating_defers_the_modules_gx_imports_for_expectations_it_does_not_run():
    # A fresh interpreter: this one may have imported scipy.stats already.
    script = """
import sys
sys.path.insert(0, sys.argv[1])
from test_suites import frame
from metrics_pipeline.validation import validate
from metrics_pipeline.validation.runner import GX_UNUSED_MODULES
assert validate("requests", frame()).success
print(*(type(sys.modules[name]).__name__ for name in GX_UNUSED_MODULES))
import scipy.stats.distributions
from scipy.stats import norm
from great_expectations.expectations.metrics.column_aggregate_metrics import (
    column_parameterized_distribution_ks_test_p_value as ks,
)
import altair
print(round(norm.ppf(0.975), 4), ks.stats.norm is norm, altair.Chart.__name__)
print(*(type(sys.modules[name]).__name__ for name in GX_UNUSED_MODULES))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "_Deferred _Deferred",
        "1.96 True Chart",
        "module module",
    ]
