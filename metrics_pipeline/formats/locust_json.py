"""Locust ``--json`` / ``--json-file`` output: a JSON array with one object per endpoint.

Each object becomes one ``interval_stats`` row covering the whole run::

    interval_stats   Locust
    endpoint         name (method has no column)
    ts               start_time (epoch seconds)
    interval_s       last_request_timestamp - start_time
    count            num_requests
    errors           num_failures
    mean             total_response_time / (num_requests - num_none_requests)
    min, max         min_response_time, max_response_time (exact)
    p50 .. p99       from the response_times histogram {bucketed ms: count}

Percentiles use Locust's own rule (``calculate_response_time_percentile``), so they equal what
Locust prints for the same data: the bucket holding the value of rank floor(p * n) + 1 in
ascending order (nearest rank, one rank higher when p * n is a whole number), n being the number
of requests in the histogram. Per-second counts (num_reqs_per_sec) are not stored.

Each array element is a record; a quarantined element's line_no is its 1-based position in the
array. A document that does not parse is quarantined as one unit (line 0). An Aggregated entry
(not written by locust 2.47) would be accepted and not stored, like in the CSV files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    Sniff,
    number,
    optional_int,
    parse_timestamp,
    read_json_document,
    reject_document,
)
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits

NAME = "locust_json"
TOOL = "locust"
# One JSON document, not lines (see formats.iter_file).
DOCUMENT = True
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
MARKERS = (b'"num_requests"', b'"response_times"', b'"start_time"', b'"num_failures"')


def looks_like(sniff: Sniff) -> bool:
    """A JSON array whose first entry has Locust's stats fields.

    The empty array Locust leaves in the second of --json/--json-file is claimed only when the
    file name says locust (a tie-breaker: the content alone says nothing).
    """
    head = sniff.head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head.startswith(b"["):
        return False
    if head.rstrip() == b"[]":
        return "locust" in sniff.name.lower()
    return all(marker in head for marker in MARKERS)


def percentile(histogram: dict[float, int], percent: float) -> float | None:
    """The value of rank floor(percent * n) + 1 (capped at n) of a {value: count} histogram."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = min(int(total * percent) + 1, total)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise AssertionError("unreachable: rank <= total")


def _histogram(value: Any) -> dict[float, int]:
    if not isinstance(value, dict):
        raise RowError("wrong type: response_times")
    histogram: dict[float, int] = {}
    for bucket, count in value.items():
        count = optional_int(count, "response_times")
        if count is None or count < 0:
            raise RowError("wrong type: response_times")
        key = number(bucket, "response_times")
        histogram[key] = histogram.get(key, 0) + count
    return histogram


def _count(entry: dict[str, Any], field: str, default: int | None = None) -> int:
    value = optional_int(entry.get(field, default), field)
    if value is None:
        raise RowError(f"missing field: {field}")
    if value < 0:
        raise RowError(f"negative: {field}")
    return value


def to_row(entry: Any) -> dict[str, Any] | None:
    """One array element -> an ``interval_stats`` row, None for an Aggregated entry."""
    if not isinstance(entry, dict):
        raise RowError("not a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise RowError("missing field: name")
    start = number(entry.get("start_time"), "start_time")
    count = _count(entry, "num_requests")
    # Requests logged without a response time are not in the mean (the field may be absent).
    timed = count - _count(entry, "num_none_requests", default=0)
    histogram = _histogram(entry.get("response_times", {}))
    row = {
        "ts": parse_timestamp(start),
        "endpoint": name,
        "interval_s": None,
        "count": count,
        "errors": _count(entry, "num_failures"),
        "mean": None,
        "min": None,
        "max": None,
        **{key: percentile(histogram, p) for key, p in PERCENTILES.items()},
    }
    last = entry.get("last_request_timestamp")
    if last is not None:
        row["interval_s"] = number(last, "last_request_timestamp") - start
    if timed > 0:
        row["mean"] = number(entry.get("total_response_time"), "total_response_time") / timed
        for key in ("min", "max"):
            value = entry.get(f"{key}_response_time")
            row[key] = None if value is None else number(value, f"{key}_response_time")
    if name == "Aggregated" and not entry.get("method"):
        return None
    return row


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Read the whole document (one entry per endpoint: small) into ``interval_stats``."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    rows: list[dict[str, Any]] = []
    try:
        loaded = read_json_document(stream, quarantine, limits)
        if loaded is None:
            return
        document, data = loaded
        if not isinstance(document, list):
            reject_document(quarantine, data, "not a JSON array")
            return
        for position, entry in enumerate(document, start=1):
            accounting.rows_read += 1
            try:
                row = to_row(entry)
            except RowError as exc:
                quarantine.add(position, str(exc), json.dumps(entry).encode())
                continue
            accounting.rows_accepted += 1
            if row is not None:
                rows.append(row)
            if len(rows) >= BATCH_ROWS:
                yield _batch(rows)
                rows = []
                yield from quarantine.flush()
    finally:
        if rows:
            yield _batch(rows)
        yield from quarantine.flush()


def _batch(rows: list[dict[str, Any]]) -> Batch:
    return "interval_stats", conform("interval_stats", pl.DataFrame(rows, infer_schema_length=None))
