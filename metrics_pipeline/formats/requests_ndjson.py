"""Per-request JSON lines: our canonical ``requests`` records and the Locust request-hook shape.

Custom harnesses write one object per request. We accept our canonical field names and the
names Locust's ``request`` event hook writes (the model most harnesses copy)::

    canonical         Locust hook
    ts                time (ISO 8601) or timestamp (epoch seconds, request start)
    endpoint          name (falls back to url)
    latency_ms        response_time
    bytes_received    response_length
    error             exception

Unknown extra fields are ignored, never fatal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    Sniff,
    number,
    numbered_lines,
    optional_int,
    parse_timestamp,
)
from metrics_pipeline.models import conform

NAME = "requests_ndjson"
LATENCY_KEYS = ("latency_ms", "response_time")
TS_KEYS = ("ts", "time", "timestamp")
ENDPOINT_KEYS = ("endpoint", "name", "url")
# Latencies above an hour are not a slow request but a broken clock or unit.
MAX_LATENCY_MS = 3_600_000.0


def looks_like(sniff: Sniff) -> bool:
    """One of the first lines is a JSON object with a latency field."""
    return any(any(key in record for key in LATENCY_KEYS) for record in sniff.json_objects())


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None:
            return value
    return None


def to_row(record: Any) -> dict[str, Any]:
    """Map one decoded JSON value to a canonical ``requests`` row or raise RowError."""
    if not isinstance(record, dict):
        raise RowError("not a JSON object")
    ts = parse_timestamp(_first(record, TS_KEYS))
    endpoint = _first(record, ENDPOINT_KEYS)
    if not isinstance(endpoint, str) or not endpoint:
        raise RowError("missing field: endpoint")
    latency_value = _first(record, LATENCY_KEYS)
    if latency_value is None:
        raise RowError("missing field: latency_ms")
    latency = number(latency_value, "latency_ms")
    if latency < 0:
        raise RowError("negative: latency_ms")
    if latency > MAX_LATENCY_MS:
        raise RowError("out of range: latency_ms above one hour")
    status = optional_int(record.get("status"), "status")
    if status is not None and not 0 <= status <= 999:
        raise RowError("out of range: status")
    error = _first(record, ("error", "exception"))
    error = None if error in (None, "") else str(error)
    ok = record.get("ok")
    if ok is None:
        # Without an explicit flag, a request is good when it has no error and a 1xx-3xx status.
        ok = error is None and (status is None or 100 <= status < 400)
    elif not isinstance(ok, bool):
        raise RowError("wrong type: ok")
    method = record.get("method")
    return {
        "ts": ts,
        "endpoint": endpoint,
        "method": str(method) if method is not None else None,
        "status": status,
        "ok": ok,
        "latency_ms": latency,
        "bytes_received": optional_int(
            _first(record, ("bytes_received", "response_length")), "bytes_received"
        ),
        "bytes_sent": optional_int(record.get("bytes_sent"), "bytes_sent"),
        "error": error,
    }


def parse(stream: BinaryIO, accounting: FileAccounting) -> Iterator[Batch]:
    """Stream ``stream`` into ``requests`` batches of at most BATCH_ROWS rows plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    rows: list[dict[str, Any]] = []
    try:
        for line_no, raw in numbered_lines(stream, accounting.file):
            accounting.rows_read += 1
            try:
                row = to_row(json.loads(raw.decode("utf-8-sig")))
            except UnicodeDecodeError:
                quarantine.add(line_no, "not UTF-8", raw)
                continue
            except RowError as exc:
                quarantine.add(line_no, str(exc), raw)
                continue
            except ValueError:
                quarantine.add(line_no, "invalid JSON", raw)
                continue
            row["source_file"] = accounting.file
            row["line_no"] = line_no
            rows.append(row)
            if len(rows) >= BATCH_ROWS:
                yield _batch(rows, accounting)
                rows = []
                yield from quarantine.flush()
    finally:
        # Also on a corrupt stream: what was read before the damage is kept and accounted for.
        if rows:
            yield _batch(rows, accounting)
        yield from quarantine.flush()


def _batch(rows: list[dict[str, Any]], accounting: FileAccounting) -> Batch:
    accounting.rows_accepted += len(rows)
    return "requests", conform("requests", pl.DataFrame(rows, infer_schema_length=None))
