"""k6 ``--out json`` NDJSON: one ``Metric`` declaration or ``Point`` sample per line.

Every line is a source record. A ``Point`` becomes at most one canonical row:

    k6 Point                               canonical
    http_req_duration                      ``requests`` row:
      data.time - data.value               ts (k6 stamps HTTP points at the request's end)
      tags.name, else tags.url             endpoint
      tags.method                          method
      tags.status                          status (int; "0" = no response -> null)
      tags.expected_response == "true"     ok (without the tag: status 200-399)
      data.value                           latency_ms
      tags.error_code                      error (e.g. "1500" = HTTP 500)
    vus, vus_max                           ``resources`` row: host "k6", metric = name, value
    any metric not in BUILTIN              ``resources`` row: host "k6", metric "k6.<name>"
    (custom counters/gauges/rates/trends, and k6's ws_*, grpc_*, browser_* metrics)

Accepted without a row (NOT_STORED): ``Metric`` declaration lines and the points of
``http_reqs``, ``http_req_failed``, ``http_req_blocked``, ``http_req_connecting``,
``http_req_tls_handshaking``, ``http_req_sending``, ``http_req_waiting``,
``http_req_receiving``, ``iterations``, ``iteration_duration``, ``group_duration``,
``data_sent``, ``data_received``, ``checks`` and ``dropped_iterations``. They repeat what the
request rows hold (one point of each per request) or describe iterations, and their totals are
in the k6 summary (``k6_summary``). ``bytes_received``/``bytes_sent`` stay null: k6 counts
``data_received``/``data_sent`` per iteration, not per request.

Quarantined: invalid JSON, a line type other than Metric/Point, an unknown metric type in a
declaration, a Point without metric, a missing or invalid time, a value that is not a JSON
number, a negative duration, and request points without endpoint or with a bad status.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    Batch,
    FileAccounting,
    RowError,
    Sniff,
    optional_int,
    parse_timestamp,
)
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits
from metrics_pipeline.formats.ndjson_blocks import (
    TIMEDELTA_MAX_MS,
    Block,
    exact_float,
    iso_timestamp,
    lines_block,
    parse_block,
    parse_ndjson,
    timedelta_micros,
)

NAME = "k6_ndjson"
TOOL = "k6"
LINE_TYPES = ("Metric", "Point")
METRIC_TYPES = ("counter", "gauge", "rate", "trend")
REQUEST_METRIC = "http_req_duration"
GAUGES = ("vus", "vus_max")
# Built-in timing trends (ms): a negative value is a broken sample, not a fast request.
DURATIONS = frozenset(
    {
        REQUEST_METRIC,
        "http_req_blocked",
        "http_req_connecting",
        "http_req_tls_handshaking",
        "http_req_sending",
        "http_req_waiting",
        "http_req_receiving",
        "iteration_duration",
        "group_duration",
    }
)
NOT_STORED = (DURATIONS - {REQUEST_METRIC}) | {
    "http_reqs",
    "http_req_failed",
    "iterations",
    "data_sent",
    "data_received",
    "checks",
    "dropped_iterations",
}
BUILTIN = NOT_STORED | {REQUEST_METRIC, *GAUGES}


def looks_like(sniff: Sniff) -> bool:
    """One of the first lines is a k6 Metric or Point object."""
    return any(
        record.get("type") in LINE_TYPES
        and isinstance(record.get("metric"), str)
        and isinstance(record.get("data"), dict)
        for record in sniff.json_objects()
    )


def _value(data: dict[str, Any]) -> float:
    value = data.get("value")
    # k6 writes JSON numbers; a string here means another writer, so it is not coerced.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError("wrong type: value")
    try:
        value = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise RowError("out of range: value") from None
    if not math.isfinite(value):
        raise RowError("not finite: value")
    return value


def _request_row(data: dict[str, Any], end: datetime, latency: float) -> dict[str, Any]:
    tags = data.get("tags") or {}
    if not isinstance(tags, dict):
        raise RowError("wrong type: tags")
    endpoint = tags.get("name") or tags.get("url")
    if not isinstance(endpoint, str):
        raise RowError("missing field: endpoint")
    status = optional_int(tags.get("status"), "status")
    if status is not None and not 0 <= status <= 999:
        raise RowError("out of range: status")
    if status == 0:
        status = None  # k6's status "0": no HTTP response at all (the error code says why)
    expected = tags.get("expected_response")
    if expected in ("true", "false"):
        ok = expected == "true"
    else:
        ok = status is not None and 200 <= status <= 399  # k6's default expected statuses
    error = tags.get("error_code")
    method = tags.get("method")
    try:
        # data.time is taken when the response has been received (k6 docs): the request
        # started latency_ms earlier. http_req_duration excludes blocked/connecting/TLS time,
        # so this is when the request began to be sent.
        start = end - timedelta(milliseconds=latency)
    except OverflowError:  # a duration of millennia, or a time at the start of year 1
        raise RowError("out of range: data.time minus value") from None
    return {
        "ts": start,
        "endpoint": endpoint,
        "method": str(method) if method is not None else None,
        "status": status,
        "ok": ok,
        "latency_ms": latency,
        "error": None if error in (None, "") else str(error),
    }


class _Parser:
    """Per-file state: which custom metrics are durations (from their Metric declarations)."""

    def __init__(self) -> None:
        self.durations = set(DURATIONS)

    def to_row(self, record: Any) -> tuple[str, dict[str, Any]] | None:
        """(table, row) for one line, None for a line accepted without a row, or RowError."""
        if not isinstance(record, dict):
            raise RowError("not a JSON object")
        kind, metric, data = record.get("type"), record.get("metric"), record.get("data")
        if kind not in LINE_TYPES:
            raise RowError("unknown line type")
        if not isinstance(metric, str) or not metric:
            raise RowError("missing field: metric")
        if not isinstance(data, dict):
            raise RowError("missing field: data")
        if kind == "Metric":
            if data.get("type") not in METRIC_TYPES:
                raise RowError("unknown metric type")
            if data.get("contains") == "time":
                self.durations.add(metric)
            return None
        if data.get("time") is None:
            raise RowError("missing field: time")
        ts = parse_timestamp(data["time"])
        value = _value(data)
        if value < 0 and metric in self.durations:
            raise RowError("negative: duration")
        if metric == REQUEST_METRIC:
            return "requests", _request_row(data, ts, value)
        if metric in NOT_STORED:
            return None
        name = metric if metric in GAUGES else f"k6.{metric}"
        return "resources", {"ts": ts, "host": "k6", "metric": name, "value": value}


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Stream ``stream`` into ``requests``/``resources`` batches (≤ BATCH_ROWS) plus quarantine.

    Point lines are parsed a block at a time (``ndjson_blocks``); Metric declarations, and every
    line the bulk path cannot take exactly, go through ``_Parser.to_row`` one by one, in order.
    """
    accounting.format = NAME
    yield from parse_ndjson(
        stream,
        accounting,
        options_for=lambda _first_line: PARSE_OPTIONS,
        convert=_bulk_points,
        to_row=_Parser().to_row,
        batch_rows=BATCH_ROWS,
        limits=limits,
    )


# --- the bulk path for Point lines -------------------------------------------------------------

TEXT = pa.string()
TAGS = ("name", "url", "method", "status", "expected_response", "error_code")
POINT = [("type", TEXT), ("metric", TEXT)]
DATA = [("time", TEXT), ("value", pa.float64())]
# Every line is read without its tags, then the request points (about one line in eleven of
# k6's output) again with them: six text columns for every line were a third of Arrow's time
# (8 MB of k6 output: 0.042-0.058 CPU-s with the tags, 0.028 without). No other line's row
# uses its tags, and a line the second reading cannot take exactly goes line by line.
PARSE_OPTIONS = [
    pj.ParseOptions(
        explicit_schema=pa.schema([*POINT, ("data", pa.struct(DATA))]),
        unexpected_field_behavior="ignore",
    )
]
REQUEST_OPTIONS = [
    pj.ParseOptions(
        explicit_schema=pa.schema(
            [*POINT, ("data", pa.struct([*DATA, ("tags", pa.struct([(t, TEXT) for t in TAGS]))]))]
        ),
        unexpected_field_behavior="ignore",
    )
]


NO_TAGS = pl.DataFrame(schema={"_row": pl.Int64, "tags": pl.Struct(dict.fromkeys(TAGS, pl.String))})


def _request_tags(frame: pl.DataFrame, block: Block) -> pl.DataFrame:
    """``_row`` and ``tags`` of the request points of ``frame`` (lines of ``block``), read
    again with their tags; a line Arrow cannot take exactly here is left out (no tags, so no
    endpoint: ``_bulk_points`` sends it line by line)."""
    rows = frame.filter(pl.col("metric") == REQUEST_METRIC)["_row"].to_numpy()
    again = lines_block([block.raw(int(i)) for i in rows]) if rows.size else None
    frames = parse_block(again, lambda _first_line: REQUEST_OPTIONS)[0] if again else []
    if not frames:
        return NO_TAGS
    read = pl.concat(frames)
    return pl.DataFrame(
        {"_row": rows[read["_row"].to_numpy()], "tags": read["data"].struct.field("tags")}
    )


def _bulk_points(frame: pl.DataFrame, block: Block) -> pl.DataFrame:
    """What ``_Parser.to_row`` gives for every parsed line, plus ``_fast``: whether that is
    certain (else the line goes line by line).

    Negative values take the per-line path: whether they are quarantined depends on the
    Metric declarations seen so far (``_Parser.durations``).
    """
    frame = frame.with_columns(_end=iso_timestamp(frame["data"].struct.field("time")))
    frame = frame.join(_request_tags(frame, block), on="_row", how="left", maintain_order="left")
    metric = pl.col("metric")
    value = pl.col("data").struct.field("value")
    tag = pl.col("tags").struct.field
    end = pl.col("_end")
    point = (pl.col("type") == "Point") & (metric != "") & end.is_not_null()
    point &= exact_float(value) & (value >= 0)
    is_request = metric == REQUEST_METRIC

    endpoint = pl.when(tag("name") != "").then(tag("name")).otherwise(tag("url"))
    status_text = tag("status")
    status_given = status_text.is_not_null() & (status_text != "")
    status_digits = status_text.str.contains(r"^[0-9]{1,3}$")
    status = pl.when(status_given).then(status_text.cast(pl.Int64, strict=False))
    status = pl.when(status != 0).then(status)  # "0": no response at all
    expected = tag("expected_response")
    ok = (
        pl.when(expected.is_in(["true", "false"]))
        .then(expected == "true")
        .otherwise(status.is_between(200, 399).fill_null(False))
    )
    request_fast = (
        endpoint.is_not_null() & (~status_given | status_digits) & (value <= TIMEDELTA_MAX_MS)
    )
    fast = (point & (~is_request | request_fast)).fill_null(False)
    table = (
        pl.when(is_request)
        .then(pl.lit("requests"))
        .when(~metric.is_in(list(NOT_STORED)))
        .then(pl.lit("resources"))
    )
    return frame.select(
        "_row",
        _fast=fast,
        _table=table,
        # k6 stamps HTTP points at the request's end (see _request_row).
        ts=pl.when(is_request)
        .then(end - pl.duration(microseconds=timedelta_micros(value)))
        .otherwise(end),
        endpoint=endpoint,
        method=tag("method"),
        status=status,
        ok=ok,
        latency_ms=value,
        error=pl.when(tag("error_code") != "").then(tag("error_code")),
        host=pl.lit("k6"),
        metric=pl.when(metric.is_in(list(GAUGES))).then(metric).otherwise("k6." + metric),
        value=value,
    )
