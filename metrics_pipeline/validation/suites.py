"""The expectations each canonical table must meet once ingested.

Row-level rules are enforced first, by the parsers and the run-window rule of the ingest (bad
rows go to quarantine with the rule as reason); these table-level suites check that the
contract holds on what reached the warehouse. A run whose data fail one is marked invalid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from metrics_pipeline.formats.base import MAX_LATENCY_MS

Suite = list[tuple[str, dict[str, Any]]]


def _not_null(*columns: str) -> Suite:
    return [("ExpectColumnValuesToNotBeNull", {"column": column}) for column in columns]


def _in_window(start: datetime, end: datetime | None) -> Suite:
    # GX binds the bounds as parameters compared with the TIMESTAMPTZ column in DuckDB: they
    # must be timezone-aware like the column.
    bounds = {"min_value": start} | ({"max_value": end} if end is not None else {})
    return [("ExpectColumnValuesToBeBetween", {"column": "ts", **bounds})]


def requests_suite(start: datetime, end: datetime | None) -> Suite:
    return [
        *_not_null("run_id", "ts", "endpoint", "ok", "latency_ms", "source_file", "line_no"),
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "latency_ms", "min_value": 0, "max_value": MAX_LATENCY_MS},
        ),
        ("ExpectColumnValuesToBeBetween", {"column": "status", "min_value": 0, "max_value": 999}),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["source_file", "line_no"]}),
        *_in_window(start, end),
    ]


def resources_suite(start: datetime, end: datetime | None) -> Suite:
    return [*_not_null("run_id", "ts", "host", "metric", "value"), *_in_window(start, end)]


def events_suite(start: datetime, end: datetime | None) -> Suite:
    return [*_not_null("run_id", "ts", "kind"), *_in_window(start, end)]


def interval_stats_suite(start: datetime, end: datetime | None) -> Suite:
    percentiles = ("min", "p50", "p90", "p95", "p99", "max")
    return [
        *_not_null("run_id", "ts", "endpoint", "count"),
        ("ExpectColumnValuesToBeBetween", {"column": "count", "min_value": 0}),
        ("ExpectColumnValuesToBeBetween", {"column": "errors", "min_value": 0}),
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {
                "column_A": "count",
                "column_B": "errors",
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },
        ),
        *[
            (
                "ExpectColumnValuesToBeBetween",
                {"column": c, "min_value": 0, "max_value": MAX_LATENCY_MS},
            )
            for c in percentiles
        ],
        (
            "ExpectColumnPairValuesAToBeGreaterThanB",
            {
                "column_A": "p95",
                "column_B": "p50",
                "or_equal": True,
                "ignore_row_if": "either_value_is_missing",
            },
        ),
        *_in_window(start, end),
    ]


def kpi_points_suite(start: datetime, end: datetime | None) -> Suite:
    # KPIs are not tied to the run's window: business metrics arrive on their own clock.
    return _not_null("ts", "metric", "value")


SUITES = {
    "requests": requests_suite,
    "resources": resources_suite,
    "events": events_suite,
    "interval_stats": interval_stats_suite,
    "kpi_points": kpi_points_suite,
}
