"""The expectations each canonical table must meet once ingested.

Row-level rules are enforced first by the parsers (bad rows go to quarantine); these suites
check that the contract really holds on what reached the warehouse.
"""

from __future__ import annotations

from typing import Any

from metrics_pipeline.formats.base import MAX_LATENCY_MS


def requests_suite() -> list[tuple[str, dict[str, Any]]]:
    """(GX expectation class name, kwargs) pairs for the ``requests`` table."""
    return [
        ("ExpectTableRowCountToBeBetween", {"min_value": 1}),
        *[
            ("ExpectColumnValuesToNotBeNull", {"column": column})
            for column in ("run_id", "ts", "endpoint", "ok", "latency_ms", "source_file", "line_no")
        ],
        (
            "ExpectColumnValuesToBeBetween",
            {"column": "latency_ms", "min_value": 0, "max_value": MAX_LATENCY_MS},
        ),
        ("ExpectColumnValuesToBeBetween", {"column": "status", "min_value": 0, "max_value": 999}),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["source_file", "line_no"]}),
    ]


SUITES = {"requests": requests_suite}
