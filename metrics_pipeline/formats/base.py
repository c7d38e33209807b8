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
from metrics_pipeline.formats.limits import (
    DEFAULT_LIMITS,
    CountingReader,
    LimitExceededError,
    ReadLimits,
    depth_reason,
    nested_deeper,
    size_text,
)

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
    """Rows read = rows accepted + rows quarantined, per file (the design's invariant).

    A row read is a source record (a line, a CSV row); an accepted one need not become a
    table row (k6's metric declarations and the points of metrics not stored): ``rows_kept``
    counts the rows each canonical table got from the file."""

    file: str
    format: str = "unknown"
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    rows_kept: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "reasons": dict(self.reasons),
            "error": self.error,
            "rows_kept": dict(self.rows_kept),
        }


# A batch is (canonical table name, frame in that table's schema without run_id).
Batch = tuple[str, pl.DataFrame]


# Quarantine reasons of a line that is not a record at all (as opposed to a record with a bad
# value); a line cut off part way is quarantined for one of them (prefixes).
INVALID_JSON = "invalid JSON"
INVALID_CSV = "invalid CSV"
NOT_UTF8 = "not UTF-8"
WRONG_FIELD_COUNT = "wrong number of fields"
NOT_A_RECORD = (INVALID_JSON, INVALID_CSV, NOT_UTF8, WRONG_FIELD_COUNT)


def excerpt(raw: bytes) -> str:
    """The first 4 KiB of a raw line as text, as the quarantine keeps it."""
    # Replacement characters take 3 bytes: cut again after decoding to keep the 4 KiB bound.
    return (
        raw[:RAW_EXCERPT_BYTES]
        .decode("utf-8", errors="replace")
        .encode()[:RAW_EXCERPT_BYTES]
        .decode("utf-8", errors="ignore")
    )


class Quarantine:
    """Collects rejected rows of one file with their reason and the first 4 KiB of the raw line."""

    def __init__(self, accounting: FileAccounting):
        self.accounting = accounting
        self.rows: list[dict] = []

    def add(self, line_no: int, reason: str, raw: bytes) -> None:
        self.accounting.rows_quarantined += 1
        self.accounting.reasons[reason] += 1
        self.rows.append(
            {
                "source_file": self.accounting.file,
                "line_no": line_no,
                "reason": reason,
                "raw": excerpt(raw),
            }
        )

    def flush(self) -> Iterator[Batch]:
        if self.rows:
            yield "quarantine", conform("quarantine", pl.DataFrame(self.rows))
            self.rows = []


def open_maybe_gzip(stream: BinaryIO, limits: ReadLimits = DEFAULT_LIMITS) -> io.BufferedReader:
    """A peekable stream, gzip decompressed when the magic bytes (not the name) say so, that
    raises LimitExceededError (an OSError) once more than ``limits.max_file_bytes`` came out.

    The buffer is large enough for ``sniff_lines`` to see whole records of a few hundred KiB.
    """
    buffered = io.BufferedReader(stream, buffer_size=SNIFF_BYTES)  # type: ignore[arg-type]
    content: io.BufferedIOBase = buffered
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        content = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
    # Counted after decompression: a bomb is stopped when its output passes the limit.
    counted = CountingReader(content, limits.max_file_bytes)
    return io.BufferedReader(counted, buffer_size=SNIFF_BYTES)


@dataclass(frozen=True)
class Sniff:
    """What format detection may look at: the file's name and its first bytes and lines.

    ``head`` is up to 1 MiB of the (decompressed) content; ``lines`` its first 20 complete
    non-blank lines, stripped; ``max_depth`` the nesting beyond which a line is not looked
    into. Nothing of the stream is consumed.
    """

    name: str
    head: bytes
    lines: list[bytes]
    max_depth: int = DEFAULT_LIMITS.max_depth

    def json_objects(self) -> list[dict]:
        """The lines that parse as JSON objects (for line-oriented JSON formats); lines nested
        deeper than ``max_depth`` are none."""
        objects = []
        for line in self.lines:
            if nested_deeper(line, self.max_depth):
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                objects.append(value)
        return objects


def sniff(
    stream: io.BufferedReader, name: str, count: int = 20, limits: ReadLimits = DEFAULT_LIMITS
) -> Sniff:
    head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
    lines = head.split(b"\n")
    if len(lines) > 1 and len(head) >= SNIFF_BYTES:
        lines = lines[:-1]  # the last one may be cut by the buffer
    stripped = [line.strip() for line in lines if line.strip()][:count]
    return Sniff(name, head, stripped, limits.max_depth)


def read_failure(file: str, exc: BaseException, line_no: int | None = None) -> UnreadableFileError:
    """The UnreadableFileError for a stream that failed (damaged, truncated, over a limit)
    after ``line_no`` lines (None: before anything was parsed)."""
    where = "" if line_no is None else f" after line {line_no}"
    if isinstance(exc, LimitExceededError):
        return UnreadableFileError(file, f"stopped{where}: {exc}")
    if isinstance(exc, EOFError):  # gzip's word for a cut file is not self-explanatory
        return UnreadableFileError(file, f"unreadable{where}: truncated ({exc})")
    return UnreadableFileError(file, f"unreadable{where}: {exc}")


def line_too_long(file: str, line_no: int, limits: ReadLimits) -> UnreadableFileError:
    """A line longer than ``limits.max_line_bytes``: no tool writes one, and reading on would
    mean holding it whole, so the file stops there."""
    size = size_text(limits.max_line_bytes)
    return UnreadableFileError(file, f"line {line_no} longer than {size} (limit max_line_bytes)")


def numbered_lines(
    stream: BinaryIO, file: str, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line without newline) for non-blank lines.

    A corrupt or truncated gzip stream, or one over a limit, raises UnreadableFileError after
    the lines that could be read, so the caller can keep what was good and report the rest.
    """
    line_no = 0
    limit = limits.max_line_bytes
    try:
        # A bounded readline: a line without end costs at most the limit, never the file.
        while line := stream.readline(limit + 1):
            line_no += 1
            if len(line) > limit and not line.endswith(b"\n"):
                raise line_too_long(file, line_no, limits)
            stripped = line.rstrip(b"\r\n")
            if stripped.strip():
                yield line_no, stripped
    except (OSError, EOFError, zlib.error) as exc:
        raise read_failure(file, exc, line_no) from exc


class RowError(MetricsPipelineError, ValueError):
    """One line that cannot become a canonical row; the message is the quarantine reason."""


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (any offset, 'Z', up to nanoseconds) or epoch seconds/milliseconds -> UTC."""
    if isinstance(value, bool):
        raise RowError("invalid timestamp: boolean")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise RowError("invalid timestamp: out of range") from None
        if not math.isfinite(number):
            raise RowError("invalid timestamp: not finite")
        # Epoch milliseconds are common (JMeter, browsers); seconds before year 5138 are < 1e11.
        seconds = number / 1000.0 if abs(number) >= 1e11 else number
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
        try:
            return as_utc(parsed)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first UTC datetime
            raise RowError("invalid timestamp: out of range") from None
    raise RowError("missing field: ts")


# The quarantine reason of a row with a text no UTF-8 column can hold.
LONE_SURROGATE = "not UTF-8: a lone surrogate escape in a text"


def encodable(row: dict[str, Any]) -> bool:
    r"""Whether every text of a row can be stored: ``json.loads`` turns ``"\ud800"`` into a
    lone surrogate, which no UTF-8 column holds (building the frame would raise)."""
    try:
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RowError(f"wrong type: {field}")
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"wrong type: {field}") from None
    except OverflowError:  # an integer of hundreds of digits
        raise RowError(f"out of range: {field}") from None
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


READ_BYTES = 1 << 20


def read_json_document(
    stream: BinaryIO, quarantine: Quarantine, limits: ReadLimits = DEFAULT_LIMITS
) -> tuple[Any, bytes] | None:
    """Read a whole JSON document (summaries and reports are small): (document, raw bytes).

    A document that cannot be read as JSON (not UTF-8, invalid, larger than
    ``limits.max_document_bytes``, nested deeper than ``limits.max_depth``) is quarantined as
    one unit (line 0), the reason is the file's error, and None is returned: nothing of the
    file can be trusted. A stream that cannot be read at all raises UnreadableFileError.
    """
    pieces: list[bytes] = []
    size = 0
    try:
        # In pieces, never one read() to the end: a bomb is stopped at the limit, not
        # decompressed whole first.
        while piece := stream.read(READ_BYTES):
            size += len(piece)
            if size > limits.max_document_bytes:
                head = (pieces[0] if pieces else piece)[:RAW_EXCERPT_BYTES]
                limit = size_text(limits.max_document_bytes)
                reason = f"JSON document larger than {limit} (limit max_document_bytes)"
                reject_document(quarantine, head, reason, failed=True)
                return None
            pieces.append(piece)
    except (OSError, EOFError, zlib.error) as exc:
        raise read_failure(quarantine.accounting.file, exc) from exc
    raw = b"".join(pieces)
    del pieces
    if nested_deeper(raw, limits.max_depth):
        reject_document(quarantine, raw, depth_reason(limits), failed=True)
        return None
    try:
        return json.loads(raw.decode("utf-8-sig")), raw
    except UnicodeDecodeError:
        reject_document(quarantine, raw, NOT_UTF8, failed=True)
    except (ValueError, RecursionError):
        reject_document(quarantine, raw, INVALID_JSON, failed=True)
    return None


def reject_document(
    quarantine: Quarantine, raw: bytes, reason: str, *, failed: bool = False
) -> None:
    """Quarantine a whole document as one unit: without its structure no entry can be trusted.

    ``failed``: the document could not be read at all (rather than read and found not to be
    the format's), so ``reason`` is also the file's error: the run's data is incomplete.
    """
    quarantine.accounting.rows_read += 1
    quarantine.add(0, reason, raw)
    if failed:
        quarantine.accounting.error = reason
