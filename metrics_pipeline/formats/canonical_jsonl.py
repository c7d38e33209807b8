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

import functools
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    MAX_LATENCY_MS,
    Batch,
    FileAccounting,
    RowError,
    Sniff,
    number,
    optional_int,
    parse_timestamp,
)
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits
from metrics_pipeline.formats.ndjson_blocks import (
    TS,
    Block,
    epoch_timestamp,
    iso_timestamp,
    parse_ndjson,
)

NAME = "canonical_jsonl"
# Written by any tool (a request hook, a harness): names none.
TOOL = ""
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
    if not isinstance(table, str) or table not in ROW_BUILDERS:
        raise RowError(f"unknown record: {str(table)[:40]}")
    return table, ROW_BUILDERS[table](record)


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Stream ``stream`` into batches of at most BATCH_ROWS rows per table, plus quarantine.

    Request lines are parsed a block at a time (``ndjson_blocks``); every other line, and every
    request line the bulk path cannot take exactly, goes through ``to_row`` one by one.
    """
    accounting.format = NAME
    yield from parse_ndjson(
        stream,
        accounting,
        options_for=_parse_options,
        convert=_bulk_requests,
        to_row=to_row,
        batch_rows=BATCH_ROWS,
        limits=limits,
    )


# --- the bulk path for request lines -----------------------------------------------------------

TEXT, NUMBER = pa.string(), pa.float64()
# The fields the bulk path reads (timestamp keys are text unless the first line says number).
REQUEST_TYPES = {
    **dict.fromkeys(TS_KEYS, TEXT),
    "record": TEXT,
    **dict.fromkeys(ENDPOINT_KEYS, TEXT),
    **dict.fromkeys(LATENCY_KEYS, NUMBER),
    "status": pa.int64(),
    "ok": pa.bool_(),
    "error": TEXT,
    "exception": TEXT,
    "method": TEXT,
    "bytes_received": pa.int64(),
    "response_length": pa.int64(),
    "bytes_sent": pa.int64(),
}
# Not ``Schema.empty_table()``: that imports pandas (a third of a second of every command).
POLARS_TYPES = pl.from_arrow(
    pa.Table.from_batches([], schema=pa.schema(list(REQUEST_TYPES.items())))
).schema
# Integers beyond 2**53 lose digits in optional_int's float(): those lines go line by line.
EXACT_INT = 2**53


def _parse_options(first_line: bytes) -> list[pj.ParseOptions]:
    """How Arrow reads a range starting with ``first_line``: a timestamp key is a number when
    it is one there.

    Arrow is a third faster without absent fields in its schema. So when the first line has
    only request fields, the schema is exactly its fields and another field on any line is an
    error (then the range is read again with all request fields, others ignored).
    """
    try:
        first = json.loads(first_line)
    except (ValueError, RecursionError):  # the line is quarantined later, by the fallback
        first = None
    first = first if isinstance(first, dict) else {}
    numbers = frozenset(key for key in TS_KEYS if _is_number(first.get(key)))
    own = frozenset(first) if first and first.keys() <= REQUEST_TYPES.keys() else None
    return _options(numbers, own)


@functools.cache
def _options(numbers: frozenset[str], own: frozenset[str] | None) -> list[pj.ParseOptions]:
    types = REQUEST_TYPES | {key: NUMBER for key in numbers}
    options = []
    if own:
        exact = pa.schema([(key, types[key]) for key in types if key in own])
        options.append(pj.ParseOptions(explicit_schema=exact, unexpected_field_behavior="error"))
    full = pa.schema(list(types.items()))
    options.append(pj.ParseOptions(explicit_schema=full, unexpected_field_behavior="ignore"))
    return options


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Expr]:
    """``parse_timestamp(_first(record, TS_KEYS))``, null where the bulk path cannot tell;
    each key present is converted beforehand (into ``_<key>``)."""
    ts: pl.Expr = pl.lit(None, TS)
    for key in reversed(TS_KEYS):
        if frame[key].null_count() == frame.height:
            continue
        if frame.schema[key] == pl.Float64:
            parsed = epoch_timestamp(frame[key])
        else:
            parsed = iso_timestamp(frame[key])
        frame = frame.with_columns(parsed.alias(f"_{key}"))
        ts = pl.when(pl.col(key).is_not_null()).then(pl.col(f"_{key}")).otherwise(ts)
    return frame, ts


def _bulk_requests(frame: pl.DataFrame, block: Block) -> pl.DataFrame:
    """``request_row`` for every parsed line, plus ``_fast``: whether the row is certainly
    the one ``to_row`` gives (else the line goes line by line)."""
    # Without "record" in the schema Arrow used, that schema was a line's own fields and any
    # other key an error: no line of the frame names it, unescaped or escaped.
    may_name_record = "record" in frame.columns
    frame = frame.with_columns(  # fields not in the schema Arrow used: absent from every line
        pl.lit(None, dtype).alias(key) for key, dtype in POLARS_TYPES.items() if key not in frame
    )
    record = pl.col("record")
    is_request = record.is_null() | (record == "requests")
    if b"\\" in block.data or (may_name_record and b'"record"' in block.data):
        # An explicit "record": null is an unknown record, not a request, but Arrow reads it
        # like an absent key: lines that may name the key (maybe escaped) go line by line.
        keyed = [b'"record"' in raw or b"\\" in raw for raw in map(block.raw, frame["_row"])]
        is_request = (record.is_null() & ~pl.Series(keyed, dtype=pl.Boolean)) | (
            record == "requests"
        )
    endpoint = pl.coalesce(*ENDPOINT_KEYS)
    latency = pl.coalesce(*LATENCY_KEYS)
    status = pl.col("status")
    error = pl.coalesce("error", "exception")
    error = pl.when(error != "").then(error)
    bytes_received = pl.coalesce("bytes_received", "response_length")
    bytes_sent = pl.col("bytes_sent")
    frame, ts = _timestamp(frame)
    frame = frame.with_columns(_ts=ts)
    ts = pl.col("_ts")
    fast = (
        is_request
        & ts.is_not_null()
        & (endpoint != "")
        & latency.is_finite()
        & (latency >= 0)
        & (latency <= MAX_LATENCY_MS)
        & (status.is_null() | status.is_between(0, 999))
        & (bytes_received.is_null() | (bytes_received.abs() <= EXACT_INT))
        & (bytes_sent.is_null() | (bytes_sent.abs() <= EXACT_INT))
    ).fill_null(False)
    return frame.select(
        "_row",
        _fast=fast,
        _table=pl.lit("requests"),
        ts=ts,
        endpoint=endpoint,
        method=pl.col("method"),
        status=status,
        ok=pl.coalesce(
            pl.col("ok"), error.is_null() & (status.is_null() | status.is_between(100, 399))
        ),
        latency_ms=latency,
        bytes_received=bytes_received,
        bytes_sent=bytes_sent,
        error=error,
    )
