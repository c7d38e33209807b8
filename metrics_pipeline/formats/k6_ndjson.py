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

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    Sniff,
    numbered_lines,
    optional_int,
    parse_timestamp,
)
from metrics_pipeline.models import conform

NAME = "k6_ndjson"
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
    if not math.isfinite(value):
        raise RowError("not finite: value")
    return float(value)


def _request_row(data: dict[str, Any], end: datetime, latency: float) -> dict[str, Any]:
    tags = data.get("tags") or {}
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
    return {
        # data.time is taken when the response has been received (k6 docs): the request
        # started latency_ms earlier. http_req_duration excludes blocked/connecting/TLS time,
        # so this is when the request began to be sent.
        "ts": end - timedelta(milliseconds=latency),
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


def parse(stream: BinaryIO, accounting: FileAccounting) -> Iterator[Batch]:
    """Stream ``stream`` into ``requests``/``resources`` batches (≤ BATCH_ROWS) plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    parser = _Parser()
    pending: dict[str, list[dict[str, Any]]] = {"requests": [], "resources": []}
    try:
        for line_no, raw in numbered_lines(stream, accounting.file):
            if len(quarantine.rows) >= BATCH_ROWS:  # a file of bad lines stays bounded too
                yield from quarantine.flush()
            accounting.rows_read += 1
            try:
                result = parser.to_row(json.loads(raw.decode("utf-8-sig")))
            except UnicodeDecodeError:
                quarantine.add(line_no, "not UTF-8", raw)
                continue
            except RowError as exc:
                quarantine.add(line_no, str(exc), raw)
                continue
            except ValueError:
                quarantine.add(line_no, "invalid JSON", raw)
                continue
            accounting.rows_accepted += 1
            if result is None:
                continue
            table, row = result
            if table == "requests":
                row["source_file"] = accounting.file
                row["line_no"] = line_no
            rows = pending[table]
            rows.append(row)
            if len(rows) >= BATCH_ROWS:
                yield _batch(table, rows)
                pending[table] = []
    finally:
        # Also on a corrupt stream: what was read before the damage is kept and accounted for.
        for table, rows in pending.items():
            if rows:
                yield _batch(table, rows)
        yield from quarantine.flush()


def _batch(table: str, rows: list[dict[str, Any]]) -> Batch:
    return table, conform(table, pl.DataFrame(rows, infer_schema_length=None))
