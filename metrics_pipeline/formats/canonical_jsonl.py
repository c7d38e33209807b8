"""Our canonical JSON lines: requests (also in the Locust request-hook shape), resources,
events and KPI points, one JSON object per line.

A line without a ``record`` field is a request. Custom harnesses write one object per request;
we accept our canonical field names and the names Locust's ``request`` event hook writes (the
model most harnesses copy)::

    canonical         Locust hook
    ts                time (ISO 8601) or timestamp (epoch seconds, request start)
    endpoint          name (falls back to url)
    latency_ms        response_time
    bytes_received    response_length
    error             exception

Other records name their table in ``record``::

    {"record": "resources", "ts": ..., "host": "web-1", "metric": "cpu_pct", "value": 71.5}
    {"record": "events", "ts": ..., "kind": "pod_restart", "subject": "api-7f9c", "detail": "..."}
    {"record": "kpi_points", "ts": ..., "metric": "signups", "value": 42, "dims": {"plan": "pro"}}

``host`` defaults to "localhost"; ``dims`` is an object of strings (stored as sorted JSON).
Unknown extra fields are ignored, never fatal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    MAX_LATENCY_MS,
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

NAME = "canonical_jsonl"
RECORDS = ("requests", "resources", "events", "kpi_points")
LATENCY_KEYS = ("latency_ms", "response_time")
TS_KEYS = ("ts", "time", "timestamp")
ENDPOINT_KEYS = ("endpoint", "name", "url")


def looks_like(sniff: Sniff) -> bool:
    """One of the first lines is a JSON object with a latency field or a known ``record``."""
    return any(
        record.get("record") in RECORDS or any(key in record for key in LATENCY_KEYS)
        for record in sniff.json_objects()
    )


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None:
            return value
    return None


def request_row(record: dict[str, Any]) -> dict[str, Any]:
    """Map one decoded JSON object to a canonical ``requests`` row or raise RowError."""
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


def _text(record: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = record.get(field)
    if value is None or value == "":
        if required:
            raise RowError(f"missing field: {field}")
        return None
    if not isinstance(value, str):
        raise RowError(f"wrong type: {field}")
    return value


def resource_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": parse_timestamp(_first(record, TS_KEYS)),
        "host": _text(record, "host", required=False) or "localhost",
        "metric": _text(record, "metric"),
        "value": number(record.get("value"), "value"),
    }


def event_row(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": parse_timestamp(_first(record, TS_KEYS)),
        "kind": _text(record, "kind"),
        "subject": _text(record, "subject", required=False),
        "detail": _text(record, "detail", required=False),
    }


def kpi_row(record: dict[str, Any]) -> dict[str, Any]:
    dims = record.get("dims") or {}
    if not isinstance(dims, dict) or not all(isinstance(v, str) for v in dims.values()):
        raise RowError("wrong type: dims (an object of strings)")
    return {
        "ts": parse_timestamp(_first(record, TS_KEYS)),
        "metric": _text(record, "metric"),
        "value": number(record.get("value"), "value"),
        "dims": json.dumps(dims, sort_keys=True),
    }


ROW_BUILDERS = {
    "requests": request_row,
    "resources": resource_row,
    "events": event_row,
    "kpi_points": kpi_row,
}


def to_row(record: Any) -> tuple[str, dict[str, Any]]:
    """(table, canonical row) of one decoded JSON value, or RowError."""
    if not isinstance(record, dict):
        raise RowError("not a JSON object")
    table = record.get("record", "requests")
    if table not in ROW_BUILDERS:
        raise RowError(f"unknown record: {str(table)[:40]}")
    return table, ROW_BUILDERS[table](record)


def parse(stream: BinaryIO, accounting: FileAccounting) -> Iterator[Batch]:
    """Stream ``stream`` into batches of at most BATCH_ROWS rows per table, plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    pending: dict[str, list[dict[str, Any]]] = {table: [] for table in RECORDS}
    try:
        for line_no, raw in numbered_lines(stream, accounting.file):
            accounting.rows_read += 1
            try:
                table, row = to_row(json.loads(raw.decode("utf-8-sig")))
            except UnicodeDecodeError:
                quarantine.add(line_no, "not UTF-8", raw)
                continue
            except RowError as exc:
                quarantine.add(line_no, str(exc), raw)
                continue
            except ValueError:
                quarantine.add(line_no, "invalid JSON", raw)
                continue
            if table == "requests":
                row["source_file"] = accounting.file
                row["line_no"] = line_no
            rows = pending[table]
            rows.append(row)
            accounting.rows_accepted += 1
            if len(rows) >= BATCH_ROWS:
                yield table, conform(table, pl.DataFrame(rows, infer_schema_length=None))
                pending[table] = []
                yield from quarantine.flush()
    finally:
        # Also on a corrupt stream: what was read before the damage is kept and accounted for.
        for table, rows in pending.items():
            if rows:
                yield table, conform(table, pl.DataFrame(rows, infer_schema_length=None))
        yield from quarantine.flush()
