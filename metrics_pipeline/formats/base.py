"""What every format adapter shares: per-file accounting, quarantine rows, line reading."""

from __future__ import annotations

import gzip
import io
import json
import math
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.tables import RAW_EXCERPT_BYTES, conform

BATCH_ROWS = 50_000
# The endpoint name of summaries over all endpoints (k6's http_req_duration, Artillery's
# http.response_time): a total, not an endpoint.
ALL_ENDPOINTS = "(all)"
# Latencies above an hour are not a slow request but a broken clock or unit.
MAX_LATENCY_MS = 3_600_000.0
SNIFF_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


class UnreadableFileError(MetricsPipelineError):
    """A file that cannot be read at all; the message names the file and the reason."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass
class FileAccounting:
    """Rows read = rows accepted + rows quarantined, per file (the design's invariant)."""

    file: str
    format: str = "unknown"
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "reasons": dict(self.reasons),
            "error": self.error,
        }


# A batch is (canonical table name, frame in that table's schema without run_id).
Batch = tuple[str, pl.DataFrame]


class Quarantine:
    """Collects rejected rows of one file with their reason and the first 4 KiB of the raw line."""

    def __init__(self, accounting: FileAccounting):
        self.accounting = accounting
        self.rows: list[dict] = []

    def add(self, line_no: int, reason: str, raw: bytes) -> None:
        self.accounting.rows_quarantined += 1
        self.accounting.reasons[reason] += 1
        # Replacement characters take 3 bytes: cut again after decoding to keep the 4 KiB bound.
        excerpt = (
            raw[:RAW_EXCERPT_BYTES]
            .decode("utf-8", errors="replace")
            .encode()[:RAW_EXCERPT_BYTES]
            .decode("utf-8", errors="ignore")
        )
        self.rows.append(
            {
                "source_file": self.accounting.file,
                "line_no": line_no,
                "reason": reason,
                "raw": excerpt,
            }
        )

    def flush(self) -> Iterator[Batch]:
        if self.rows:
            yield "quarantine", conform("quarantine", pl.DataFrame(self.rows))
            self.rows = []


def open_maybe_gzip(stream: BinaryIO) -> io.BufferedReader:
    """A peekable stream, gzip decompressed when the magic bytes (not the name) say so.

    The buffer is large enough for ``sniff_lines`` to see whole records of a few hundred KiB.
    """
    buffered = io.BufferedReader(stream, buffer_size=SNIFF_BYTES)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=buffered), buffer_size=SNIFF_BYTES)
    return buffered


@dataclass(frozen=True)
class Sniff:
    """What format detection may look at: the file's name and its first bytes and lines.

    ``head`` is up to 1 MiB of the (decompressed) content; ``lines`` its first 20 complete
    non-blank lines, stripped. Nothing of the stream is consumed.
    """

    name: str
    head: bytes
    lines: list[bytes]

    def json_objects(self) -> list[dict]:
        """The lines that parse as JSON objects (for line-oriented JSON formats)."""
        objects = []
        for line in self.lines:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                objects.append(value)
        return objects


def sniff(stream: io.BufferedReader, name: str, count: int = 20) -> Sniff:
    head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    lines = head.split(b"\n")
    if len(lines) > 1 and len(head) >= SNIFF_BYTES:
        lines = lines[:-1]  # the last one may be cut by the buffer
    return Sniff(name, head, [line.strip() for line in lines if line.strip()][:count])


def numbered_lines(stream: BinaryIO, file: str) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line without newline) for non-blank lines.

    A corrupt or truncated gzip stream raises UnreadableFileError after the lines that could be
    read, so the caller can keep what was good and report the rest.
    """
    line_no = 0
    try:
        for line_no, line in enumerate(stream, start=1):
            stripped = line.rstrip(b"\r\n")
            if stripped.strip():
                yield line_no, stripped
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFileError(file, f"unreadable after line {line_no}: {exc}") from exc


class RowError(MetricsPipelineError, ValueError):
    """One line that cannot become a canonical row; the message is the quarantine reason."""


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (any offset, 'Z', up to nanoseconds) or epoch seconds/milliseconds -> UTC."""
    if isinstance(value, bool):
        raise RowError("invalid timestamp: boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise RowError("invalid timestamp: not finite")
        # Epoch milliseconds are common (JMeter, browsers); seconds before year 5138 are < 1e11.
        seconds = value / 1000.0 if abs(value) >= 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise RowError("invalid timestamp: out of range") from None
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        # Python parses at most microseconds: trim the fraction of nanosecond timestamps.
        if "." in text:
            head, _, tail = text.partition(".")
            digits = len(tail) - len(tail.lstrip("0123456789"))
            text = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(f"invalid timestamp: {value[:40]!r}") from None
        return as_utc(parsed)
    raise RowError("missing field: ts")


def number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(f"wrong type: {field}")
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"wrong type: {field}") from None
    if not math.isfinite(number):
        raise RowError(f"not finite: {field}")
    return number


def optional_int(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    value = number(value, field)
    if value != int(value):
        raise RowError(f"wrong type: {field}")
    if not -(2**63) <= value < 2**63:
        raise RowError(f"out of range: {field}")
    return int(value)


def read_json_document(stream: BinaryIO, quarantine: Quarantine) -> tuple[Any, bytes] | None:
    """Read a whole JSON document (summaries and reports are small): (document, raw bytes).

    A document that is not UTF-8 JSON is quarantined as one unit (line 0) and None returned;
    a stream that cannot be read at all raises UnreadableFileError.
    """
    try:
        raw = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFileError(quarantine.accounting.file, f"unreadable: {exc}") from exc
    try:
        return json.loads(raw.decode("utf-8-sig")), raw
    except UnicodeDecodeError:
        reject_document(quarantine, raw, "not UTF-8")
    except (ValueError, RecursionError):
        reject_document(quarantine, raw, "invalid JSON")
    return None


def reject_document(quarantine: Quarantine, raw: bytes, reason: str) -> None:
    """Quarantine a whole document as one unit: without its structure no entry can be trusted."""
    quarantine.accounting.rows_read += 1
    quarantine.add(0, reason, raw)
