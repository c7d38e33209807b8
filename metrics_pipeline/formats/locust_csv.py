"""Locust ``--csv PREFIX`` files (locust 2.x), told apart by their header row, never by name.

``_stats.csv`` -> ``interval_stats``, one row per endpoint for the whole run:
    endpoint = Name (Type, the method, has no column), ts = null (the file has none; the ingest
    fills in the run start), interval_s = null, count = Request Count, errors = Failure Count,
    mean = Average Response Time, min = Min Response Time, p50/p90/p95/p99 = 50%/90%/95%/99%,
    max = Max Response Time (exact; the 100% column is rounded like every Locust percentile).
    The Aggregated row is accepted but not stored: it is the sum of the other rows.
``_stats_history.csv`` -> ``interval_stats``, one row per (Timestamp, endpoint):
    ts = Timestamp (when Locust wrote the row, i.e. the end of its window). count and errors are
    the growth of Total Request Count / Total Failure Count since the entry's previous row, so
    they add up to the run totals (a counter that goes down was reset and counts from zero);
    interval_s = seconds since that previous row (for an entry's first row: since the previous
    Timestamp of the file, null on the very first one); mean = growth of Total Average x Total
    Request Count divided by count. p50..p99 and max (= 100%) are Locust's own 10 s sliding
    window; min = null (only the cumulative minimum is written). Aggregated rows are stored
    (endpoint "(all)", ``base.ALL_ENDPOINTS``, the run's total as for every tool) only in
    files without per-endpoint rows, i.e. without ``--csv-full-history``; otherwise they are
    accepted and not stored.
``_failures.csv`` -> ``events``: kind "request_failures", ts = First Seen,
    subject = "Method Name", detail = "Occurrences x Error".
``_exceptions.csv`` -> ``events``: kind "exception", ts = null, subject = Message,
    detail = "Count x Traceback" cut to 4 KiB.

"N/A" percentiles (no request in the window) and the latencies of rows without requests are null.
Quoted fields may hold commas and newlines; a record is quarantined with its first line number.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.contracts.tables import RAW_EXCERPT_BYTES, conform
from metrics_pipeline.formats.base import (
    ALL_ENDPOINTS,
    BATCH_ROWS,
    INVALID_CSV,
    NOT_UTF8,
    WRONG_FIELD_COUNT,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    Sniff,
    UnreadableFileError,
    line_too_long,
    number,
    optional_int,
    parse_timestamp,
    read_failure,
)
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits, cap_row

NAME = "locust_csv"
TOOL = "locust"
STATS, HISTORY, FAILURES, EXCEPTIONS = "stats", "history", "failures", "exceptions"
# The columns each file must have. Percentile columns are optional: PERCENTILES_TO_REPORT is
# configurable in Locust, and a missing one is stored as null.
REQUIRED = {
    HISTORY: (
        "Timestamp",
        "Type",
        "Name",
        "Total Request Count",
        "Total Failure Count",
        "Total Average Response Time",
    ),
    STATS: ("Type", "Name", "Request Count", "Failure Count", "Average Response Time"),
    FAILURES: ("Method", "Name", "Error", "Occurrences"),
    EXCEPTIONS: ("Count", "Message", "Traceback"),
}
TABLE = {
    STATS: "interval_stats",
    HISTORY: "interval_stats",
    FAILURES: "events",
    EXCEPTIONS: "events",
}
PERCENTILES = {"p50": "50%", "p90": "90%", "p95": "95%", "p99": "99%"}
AGGREGATED = "Aggregated"


def file_kind(header: list[str]) -> str | None:
    columns = {column.strip() for column in header}
    return next((kind for kind, need in REQUIRED.items() if columns.issuperset(need)), None)


def looks_like(sniff: Sniff) -> bool:
    """The first line is the header of one of Locust's CSV files."""
    if not sniff.lines:
        return False
    first = sniff.lines[0]
    # A Locust header is short; anything long (a 10 MB JSON line) is not one and would trip
    # the csv module's field size limit.
    if len(first) > 4096:
        return False
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), [])
    except (UnicodeDecodeError, csv.Error):
        return False
    return file_kind(header) is not None


class _Lines:
    """Decoded lines for csv.reader that remember the raw bytes of the record being read."""

    def __init__(self, stream: BinaryIO, file: str, limits: ReadLimits = DEFAULT_LIMITS):
        self.stream = stream
        self.file = file
        self.limits = limits
        self.line_no = 0
        self.raw: list[bytes] = []
        self.bad_utf8 = False

    def __iter__(self) -> Iterator[str]:
        limit = self.limits.max_line_bytes
        try:
            # A bounded readline: a line without end costs at most the limit, never the file.
            while line := self.stream.readline(limit + 1):
                self.line_no += 1
                if len(line) > limit and not line.endswith(b"\n"):
                    raise line_too_long(self.file, self.line_no, self.limits)
                self.raw.append(line)
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    self.bad_utf8 = True
                    text = line.decode("utf-8", errors="replace")
                yield text.removeprefix("\ufeff") if self.line_no == 1 else text
        except (OSError, EOFError, zlib.error) as exc:
            raise read_failure(self.file, exc, self.line_no) from exc

    def take(self) -> tuple[int, bytes, bool]:
        """(first line number, raw bytes, any line not UTF-8) of the record just read."""
        record = (self.line_no - len(self.raw) + 1, b"".join(self.raw), self.bad_utf8)
        self.raw, self.bad_utf8 = [], False
        return record


def _float(record: dict[str, str], column: str) -> float | None:
    value = record.get(column)
    if value is None or value.strip() in ("", "N/A"):
        return None
    return number(value, column)


def _count(record: dict[str, str], column: str) -> int:
    value = optional_int(record[column].strip(), column)
    if value is None:
        raise RowError(f"missing field: {column}")
    if value < 0:
        raise RowError(f"negative: {column}")
    return value


def _name(record: dict[str, str]) -> str:
    if not record["Name"]:
        raise RowError("missing field: Name")
    return record["Name"]


def _is_aggregated(record: dict[str, str]) -> bool:
    return record["Type"] == "" and record["Name"] == AGGREGATED


def _cut(text: str) -> str:
    return text.encode()[:RAW_EXCERPT_BYTES].decode("utf-8", errors="ignore")


def _stats_row(record: dict[str, str]) -> dict[str, Any]:
    count = _count(record, "Request Count")
    row: dict[str, Any] = {
        "endpoint": _name(record),
        "count": count,
        "errors": _count(record, "Failure Count"),
    }
    if count:  # Locust writes 0 latencies for an entry without requests
        row["mean"] = _float(record, "Average Response Time")
        row["min"] = _float(record, "Min Response Time")
        row["max"] = _float(record, "Max Response Time")
        row.update({key: _float(record, column) for key, column in PERCENTILES.items()})
    return row


class _History:
    """Turns cumulative history rows into per-interval rows; remembers each entry's last row."""

    def __init__(self) -> None:
        # (Type, Name) -> (Timestamp, total requests, total failures, total response time ms)
        self.last: dict[tuple[str, str], tuple[float, int, int, float]] = {}
        self.tick: float | None = None
        self.previous_tick: float | None = None

    def row(self, record: dict[str, str]) -> dict[str, Any]:
        key = (record["Type"], _name(record))
        seconds = number(record["Timestamp"], "Timestamp")
        ts = parse_timestamp(seconds)
        total = _count(record, "Total Request Count")
        failures = _count(record, "Total Failure Count")
        total_ms = (_float(record, "Total Average Response Time") or 0.0) * total
        window = {field: _float(record, column) for field, column in PERCENTILES.items()}
        window["max"] = _float(record, "100%")
        # Locust writes 0 when it has no 10 s snapshot yet; with every request slower than
        # 0.5 ms (Total Min) a 0 ms bucket is impossible, so such a 0 means "unknown".
        if (_float(record, "Total Min Response Time") or 0.0) > 0.5:
            window = {field: None if value == 0 else value for field, value in window.items()}

        if self.tick != seconds:
            self.previous_tick, self.tick = self.tick, seconds
        before = self.last.get(key)
        start = before[0] if before else self.previous_tick
        if before is None or total < before[1] or failures < before[2]:
            before = (seconds, 0, 0, 0.0)  # first row of the entry, or its counters were reset
        self.last[key] = (seconds, total, failures, total_ms)
        count = total - before[1]
        return {
            "ts": ts,
            "endpoint": key[1],
            "interval_s": None if start is None else seconds - start,
            "count": count,
            "errors": failures - before[2],
            "mean": (total_ms - before[3]) / count if count else None,
            **window,
        }


def _failure_row(record: dict[str, str]) -> dict[str, Any]:
    first_seen = record.get("First Seen", "").strip()
    return {
        "ts": parse_timestamp(first_seen) if first_seen else None,
        "kind": "request_failures",
        "subject": f"{record['Method']} {_name(record)}".strip(),
        "detail": _cut(f"{_count(record, 'Occurrences')} x {record['Error']}"),
    }


def _exception_row(record: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "exception",
        "subject": record["Message"],
        "detail": _cut(f"{_count(record, 'Count')} x {record['Traceback']}"),
    }


ROW_OF = {STATS: _stats_row, FAILURES: _failure_row, EXCEPTIONS: _exception_row}


def _fields(
    reader: Iterator[list[str]], lines: _Lines, accounting: FileAccounting, quarantine: Quarantine
) -> Iterator[tuple[list[str], tuple[int, bytes, bool]]]:
    """Each parsed line's fields with its number, raw bytes and whether it was UTF-8; a line
    the CSV reader rejects is counted and quarantined here."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_no, raw, _ = lines.take()
            accounting.rows_read += 1
            quarantine.add(line_no, f"{INVALID_CSV}: {exc}", raw)
            continue
        yield fields, lines.take()


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Stream one Locust CSV file into bounded batches plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    lines = _Lines(stream, accounting.file, limits)
    reader = csv.reader(lines)
    header: list[str] | None = None
    kind = ""
    history = _History()
    # History files: Aggregated rows wait here until the file shows whether it has endpoints.
    aggregated_only: bool | None = None
    pending: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    try:
        for fields, (line_no, raw, bad_utf8) in _fields(reader, lines, accounting, quarantine):
            if not any(field.strip() for field in fields):
                continue  # blank line
            if header is None:
                header = [field.strip() for field in fields]
                kind = file_kind(header) or ""
                if not kind:
                    raise UnreadableFileError(accounting.file, "not a Locust CSV header")
                continue
            accounting.rows_read += 1
            if bad_utf8:
                quarantine.add(line_no, NOT_UTF8, raw)
                continue
            if len(fields) != len(header):
                reason = f"{WRONG_FIELD_COUNT}: expected {len(header)}, got {len(fields)}"
                quarantine.add(line_no, reason, raw)
                continue
            record = dict(zip(header, fields, strict=True))
            try:
                row = history.row(record) if kind == HISTORY else ROW_OF[kind](record)
            except RowError as exc:
                quarantine.add(line_no, str(exc), raw)
                continue
            row = cap_row(TABLE[kind], row, limits)
            accounting.rows_accepted += 1
            if kind in (STATS, HISTORY) and _is_aggregated(record):
                if kind == STATS or aggregated_only is False:
                    continue  # derivable from the endpoint rows
                # Locust writes a tick's endpoint rows before its Aggregated row: requests
                # counted without endpoint rows mean the file was written without full history.
                if aggregated_only is None and row["count"] == 0 and len(pending) < BATCH_ROWS:
                    pending.append(row | {"endpoint": ALL_ENDPOINTS})
                    continue
                aggregated_only = True
                rows.extend(pending)
                pending = []
                # The run's total, named as every tool's total is: judged and summarised only
                # where the run has no per-endpoint data (a per-request file beside it).
                row = row | {"endpoint": ALL_ENDPOINTS}
            elif kind == HISTORY and aggregated_only is None:
                aggregated_only = False
                pending = []
            rows.append(row)
            while len(rows) >= BATCH_ROWS:
                yield _batch(TABLE[kind], rows[:BATCH_ROWS])
                rows = rows[BATCH_ROWS:]
                yield from quarantine.flush()
    finally:
        # Also on a corrupt stream: what was read before the damage is kept and accounted for.
        rows.extend(pending)  # a history file of Aggregated rows without any request
        for start in range(0, len(rows), BATCH_ROWS):
            yield _batch(TABLE[kind], rows[start : start + BATCH_ROWS])
        yield from quarantine.flush()


def _batch(table: str, rows: list[dict[str, Any]]) -> Batch:
    return table, conform(table, pl.DataFrame(rows, infer_schema_length=None))
