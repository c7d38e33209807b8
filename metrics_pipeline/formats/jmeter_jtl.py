"""JMeter JTL results, CSV flavour (one line per sample) -> ``requests``.

Column mapping (names are matched case-insensitively: ``Latency``/``latency``)::

    canonical        JTL column
    ts               timeStamp: the sample start by default; epoch ms, or a SimpleDateFormat
                     date (ISO-like or yyyy/MM/dd HH:mm:ss[.SSS]; without an offset = UTC)
    endpoint         label, verbatim (sampler names are the user's own identity for a request)
    method           the verb of a label like "GET /x", else null
    status           responseCode when it is 1-3 digits, else null ("Non HTTP response code:
                     java.net.ConnectException" is a transport failure: ok false)
    ok               success == "true" (when the column is absent: a 1xx-3xx status)
    latency_ms       elapsed
    bytes_received   bytes
    bytes_sent       sentBytes (JMeter >= 3.1)
    error            when not ok: failureMessage, else the non-numeric code and responseMessage

Layout: the first non-blank line decides. It is a header when it holds ``timeStamp``,
``elapsed`` and ``label``. Otherwise it must look like a sample: an epoch-ms or date first field
and "true"/"false" where the layout puts ``success``. Headerless layouts are chosen by field
count: 12 is the Debian JMeter 2.13 default, 16 the 2.13 "modern" set without sentBytes, any
other count the first columns of the documented full order (which also covers the 5.x default
for every column we use). The delimiter is the one of , TAB | ; that gives such a line with the
most fields. Quoted fields (with delimiters, quotes or newlines) are read with the csv module.

The XML flavour of JTL is not read here: it is left to the unknown-format path.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    NOT_UTF8,
    WRONG_FIELD_COUNT,
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
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits, cap_row

NAME = "jmeter_jtl"
TOOL = "jmeter"
DELIMITERS = (",", "\t", "|", ";")
REQUIRED = ("timestamp", "elapsed", "label")
# JMeter manual, "CSV Log format": the order is fixed, columns switched off are left out.
FULL_ORDER = (
    "timestamp", "elapsed", "label", "responsecode", "responsemessage", "threadname",
    "datatype", "success", "failuremessage", "bytes", "sentbytes", "grpthreads", "allthreads",
    "url", "filename", "latency", "connect", "encoding", "samplecount", "errorcount",
    "hostname", "idletime",
)  # fmt: skip
# Headerless layouts that are not a prefix of FULL_ORDER, by field count: the Debian JMeter
# 2.13 defaults, and 2.13 with the "modern" properties (sentBytes only exists since 3.1).
HEADERLESS = {
    12: (
        "timestamp", "elapsed", "label", "responsecode", "responsemessage", "threadname",
        "datatype", "success", "bytes", "grpthreads", "allthreads", "latency",
    ),
    16: (
        "timestamp", "elapsed", "label", "responsecode", "responsemessage", "threadname",
        "datatype", "success", "failuremessage", "bytes", "grpthreads", "allthreads", "url",
        "latency", "idletime", "connect",
    ),
}  # fmt: skip
# As for per-request JSON: latencies above an hour are a broken clock or unit, not a request.
MAX_LATENCY_MS = 3_600_000.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_MS = re.compile(r"\d{11,}")
DATE = re.compile(r"\d{4}[-/]\d{2}[-/]\d{2}")
STATUS = re.compile(r"\d{1,3}")
METHOD = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|TRACE|CONNECT)\s+\S")


@dataclass(frozen=True)
class Layout:
    delimiter: str
    columns: dict[str, int]  # lower-case column name -> position
    width: int
    header: tuple[str, ...] | None  # the header fields as written, None when headerless


def _split(line: str, delimiter: str) -> list[str] | None:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return None


def _is_sample(fields: list[str], columns: tuple[str, ...]) -> bool:
    if "success" not in columns:
        return False
    first = fields[0].strip()
    success = fields[columns.index("success")].strip().lower()
    return bool(EPOCH_MS.fullmatch(first) or DATE.match(first)) and success in ("true", "false")


def detect_layout(line: str) -> Layout | None:
    """The header or headerless layout of a JTL whose first non-blank line is ``line``."""
    best = None
    for delimiter in DELIMITERS:
        fields = _split(line, delimiter)
        if not fields:
            continue
        names = tuple(field.strip().lower() for field in fields)
        if all(name in names for name in REQUIRED):
            columns, header = names, tuple(fields)
        else:
            columns = HEADERLESS.get(len(fields), FULL_ORDER[: len(fields)])
            if not _is_sample(fields, columns):
                continue
            header = None
        layout = Layout(delimiter, {n: i for i, n in enumerate(columns)}, len(fields), header)
        if best is None or layout.width > best.width:
            best = layout
    return best


def looks_like(sniff: Sniff) -> bool:
    """The first line is a JTL header or a sample row (see the module docstring)."""
    if not sniff.lines:
        return False
    return detect_layout(sniff.lines[0].decode("utf-8-sig", "replace")) is not None


def _timestamp(text: str) -> datetime:
    text = text.strip()
    if text.isascii() and text.isdigit():
        try:
            return EPOCH + timedelta(milliseconds=int(text))
        except OverflowError:
            raise RowError("invalid timestamp: out of range") from None
    if DATE.match(text):
        # SimpleDateFormat's usual yyyy/MM/dd: make the date part ISO.
        text = text[:10].replace("/", "-") + text[10:]
    return parse_timestamp(text)


def to_row(fields: list[str], layout: Layout) -> dict[str, Any]:
    """Map one CSV record to a canonical ``requests`` row or raise RowError."""
    if len(fields) != layout.width:
        raise RowError(f"{WRONG_FIELD_COUNT}: expected {layout.width}, got {len(fields)}")
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        raise RowError(NOT_UTF8) from None

    def value(name: str) -> str:
        position = layout.columns.get(name)
        return "" if position is None else fields[position]

    label = value("label")
    if not label:
        raise RowError("missing field: label")
    latency = number(value("elapsed"), "latency_ms")
    if latency < 0:
        raise RowError("negative: latency_ms")
    if latency > MAX_LATENCY_MS:
        raise RowError("out of range: latency_ms above one hour")
    code = value("responsecode").strip()
    status = int(code) if STATUS.fullmatch(code) else None
    failure = value("failuremessage")
    success = value("success").strip().lower()
    if "success" not in layout.columns:
        ok = not failure and status is not None and 100 <= status < 400
    elif success in ("true", "false"):
        ok = success == "true" and not code.startswith("Non HTTP")
    else:
        raise RowError("invalid success: expected true or false")
    error = None
    if not ok:
        parts = (code if status is None else "", value("responsemessage"))
        error = failure or "; ".join(part for part in parts if part) or None
    method = METHOD.match(label)
    return {
        "ts": _timestamp(value("timestamp")),
        "endpoint": label,
        "method": method.group(1) if method else None,
        "status": status,
        "ok": ok,
        "latency_ms": latency,
        "bytes_received": optional_int(value("bytes"), "bytes_received"),
        "bytes_sent": optional_int(value("sentbytes"), "bytes_sent"),
        "error": error,
    }


class _Feed:
    """Hands csv.reader decoded lines and remembers the raw lines of the record being read."""

    def __init__(self, lines: Iterator[tuple[int, bytes]]):
        self.lines = lines
        self.pending: list[tuple[int, bytes]] = []

    def __iter__(self) -> Iterator[str]:
        for line_no, raw in self.lines:
            self.pending.append((line_no, raw))
            # surrogateescape defers bad bytes to to_row, which quarantines only that record.
            yield raw.decode("utf-8", "surrogateescape") + "\n"

    def take(self) -> list[tuple[int, bytes]]:
        pending, self.pending = self.pending, []
        return pending


def records(
    lines: Iterator[tuple[int, bytes]], layout: Layout
) -> Iterator[tuple[int, bytes, list[str] | None]]:
    """(first line number, raw bytes, fields or None when not valid CSV) per CSV record."""
    feed = _Feed(lines)
    reader = csv.reader(feed, delimiter=layout.delimiter)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:
            fields = None
        parts = feed.take()
        if len(parts) > 1 and (fields is None or len(fields) != layout.width):
            # A quote that is never closed swallows the lines after it: read them one by one.
            for line_no, raw in parts:
                yield line_no, raw, _split(raw.decode("utf-8", "surrogateescape"), layout.delimiter)
        elif parts:
            yield parts[0][0], b"\n".join(raw for _, raw in parts), fields


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Stream ``stream`` into ``requests`` batches of at most BATCH_ROWS rows plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    rows: list[dict[str, Any]] = []
    try:
        lines = numbered_lines(stream, accounting.file, limits)
        first = next(lines, None)
        if first is None:
            return
        first = (first[0], first[1].removeprefix(codecs.BOM_UTF8))
        layout = detect_layout(first[1].decode("utf-8", "replace"))
        if layout is None:
            # Not a layout we can map: every line is reported, none is guessed at.
            for line_no, raw in chain([first], lines):
                accounting.rows_read += 1
                quarantine.add(line_no, "unrecognised JTL columns", raw)
                if len(quarantine.rows) >= BATCH_ROWS:
                    yield from quarantine.flush()
            return
        source = lines if layout.header else chain([first], lines)
        for line_no, raw, fields in records(source, layout):
            if layout.header and fields is not None and tuple(fields) == layout.header:
                continue  # the header again, as in concatenated files: not a record
            accounting.rows_read += 1
            try:
                if fields is None:
                    raise RowError("invalid CSV")
                row = to_row(fields, layout)
            except RowError as exc:
                quarantine.add(line_no, str(exc), raw)
                if len(quarantine.rows) >= BATCH_ROWS:
                    yield from quarantine.flush()
                continue
            row["source_file"] = accounting.file
            row["line_no"] = line_no
            rows.append(cap_row("requests", row, limits))
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
