"""How much one result file may make the readers do: bytes, line length, nesting, name length.

Result files are untrusted: a gzip bomb, a line without end, JSON nested 200,000
levels deep or a 5,000-character endpoint must cost bounded memory and time and end in a clear
error for that one file, never in a crash of the run. :class:`ReadLimits` declares every limit
once; the readers enforce them while streaming:

* the decompressed bytes of a file are counted as they are read (:class:`CountingReader`),
* lines are read with a bounded length (``base.numbered_lines``, ``ndjson_blocks.read_chunks``),
* whole-document formats (k6 summary, Locust JSON, Artillery JSON) are read up to a size,
* JSON nesting is measured before ``json.loads`` (:func:`nested_deeper`),
* names (endpoints, hosts, metrics, event kinds and subjects) are cut to a length with a marker
  and free text (error messages, event details) to a length with an ellipsis
  (:func:`cap_name`, :func:`cap_row`, :func:`cap_frame`).

The defaults are far above what real tools write; tests and callers pass smaller ones.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import polars as pl

from metrics_pipeline.common.errors import MetricsPipelineError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class ReadLimits:
    """Limits on one result file; a file beyond one gets a per-file error (or, for names and
    text, a cut value) and the run's other files are read as usual.

    Attributes
    ----------
    max_file_bytes : int
        Content of one file after decompression. 16 GiB: k6's JSON output, the most verbose
        format, takes about 2.7 KB per request (the fixture ``k6_out.json.gz``), so this is
        about 6 M requests, an hour at 1,650 requests/s. A gzip bomb needs 16 MB of
        compressed zeros to reach it; plain files are counted the same way.
    max_line_bytes : int
        One line of a line-oriented format (NDJSON, CSV, JTL). 16 MiB: tools write lines of
        hundreds of bytes; a record with a long traceback has tens of KiB.
    max_document_bytes : int
        A format read as one JSON document (k6 summary, Locust JSON, Artillery JSON), which
        ``json.loads`` holds in memory at several times its size. 256 MiB: Artillery's report
        grows by about 1 KB per endpoint every 10 s, so this holds a 24-hour run of 20
        endpoints; k6 summaries and Locust's JSON are a few KiB.
    max_depth : int
        Nesting of JSON arrays and objects. 64: the formats nest 3-6 levels (k6 summaries two
        more per nested group). Deeper documents are refused before ``json.loads``, which
        would raise RecursionError at about 1,000 levels.
    max_name_chars : int
        Names that group rows and label reports: endpoint, method, host, metric, event kind
        and subject. 512: long enough for URLs used as names (k6 without a ``name`` tag).
        Longer names are kept, cut, with a marker and a digest of the full name
        (:func:`cap_name`), so two long names stay two endpoints.
    max_text_chars : int
        Free text: request error messages and event details. 4096, the length of a
        quarantine excerpt; longer text is cut with an ellipsis.
    """

    max_file_bytes: int = 16 * GIB
    max_line_bytes: int = 16 * MIB
    max_document_bytes: int = 256 * MIB
    max_depth: int = 64
    max_name_chars: int = 512
    max_text_chars: int = 4096

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReadLimits.{field.name} must be a positive integer")
        # A cut name keeps some of its text besides the marker.
        if self.max_name_chars < 2 * MARKER_CHARS:
            raise ValueError(f"ReadLimits.max_name_chars must be at least {2 * MARKER_CHARS}")


def size_text(size: int) -> str:
    """``16 GiB``, ``64 MiB``, ``512 KiB`` or ``100 bytes`` (whole units when exact)."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            return f"{size // unit} {name}" if size % unit == 0 else f"{size / unit:.1f} {name}"
    return f"{size} bytes"


class LimitExceededError(MetricsPipelineError, OSError):
    """A file's content is larger than ``ReadLimits.max_file_bytes``.

    An ``OSError``, like a damaged gzip stream, so every reader treats it the same way: the
    records read before it are kept and the file gets an error.
    """


# How far from the end of each read the last newline is looked for (copied once per read);
# a last line longer than this is looked for in the whole read.
_TAIL_WINDOW = 64 << 10


class CountingReader(io.RawIOBase):
    """The bytes of ``source`` (a decompressed stream), raising LimitExceededError as soon as
    more than ``limit`` bytes have been read: a bomb is stopped at the limit, not at its end.

    ``last_line`` holds the first ``LAST_LINE_BYTES`` of what came after the last newline read
    so far: at the end, empty when the stream ended with a newline, else the beginning of a
    last line without one (the mark of a text file cut short). Reads stop following it once
    ``follow_last_line`` is False (a JSON document: its lines may be megabytes long).
    """

    LAST_LINE_BYTES = 4096

    def __init__(self, source: io.BufferedIOBase, limit: int):
        super().__init__()
        self.source = source
        self.limit = limit
        self.count = 0
        self.last_line = b""
        self.follow_last_line = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = self.source.readinto1(buffer)
        self.count += size
        if self.count > self.limit:
            raise LimitExceededError(
                f"file larger than {size_text(self.limit)} decompressed (limit max_file_bytes)"
            )
        if size and self.follow_last_line:
            self._follow_last_line(memoryview(buffer)[:size])
        return size

    def _follow_last_line(self, data: memoryview) -> None:
        window = bytes(data[-_TAIL_WINDOW:])
        newline = window.rfind(b"\n")
        if newline < 0 and len(data) > len(window):  # a line longer than the window
            window = bytes(data)
            newline = window.rfind(b"\n")
        if newline >= 0:
            self.last_line = window[newline + 1 : newline + 1 + self.LAST_LINE_BYTES]
        elif len(self.last_line) < self.LAST_LINE_BYTES:
            self.last_line += window[: self.LAST_LINE_BYTES - len(self.last_line)]


# --- JSON nesting --------------------------------------------------------------------------------

# A JSON string (its brackets do not nest anything); escapes are a backslash and one character.
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
OPENERS = np.zeros(256, np.int8) - 1
OPENERS[[ord("["), ord("{")]] = 1
DEPTH_CHUNK = 1 << 20


def nested_deeper(raw: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``raw`` nests arrays and objects more than ``max_depth`` deep.

    Exact for valid JSON (brackets inside strings do not count), cheap for the usual case: a
    text with at most ``max_depth`` brackets cannot be deeper, and that is two ``count`` calls.
    Otherwise strings are removed and the bracket depth summed up in numpy, a chunk at a time
    (bounded memory). For invalid JSON the answer may be off; ``json.loads`` then fails anyway.
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    text = STRING.sub(b"", raw) if b'"' in raw else raw
    brackets = text.translate(None, NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), DEPTH_CHUNK):
        chunk = np.frombuffer(brackets, np.uint8, min(DEPTH_CHUNK, len(brackets) - start), start)
        levels = depth + np.cumsum(OPENERS[chunk], dtype=np.int64)
        if levels.max() > max_depth:
            return True
        depth = int(levels[-1])
    return False


def depth_reason(limits: ReadLimits) -> str:
    return f"JSON nested deeper than {limits.max_depth} levels (limit max_depth)"


# --- names and free text -------------------------------------------------------------------------

# The columns of each canonical table that hold names (grouped by, shown in reports) and free
# text (shown, never grouped by).
NAME_COLUMNS = {
    "requests": ("endpoint", "method"),
    "interval_stats": ("endpoint",),
    "resources": ("host", "metric"),
    "events": ("kind", "subject"),
    "kpi_points": ("metric",),
}
TEXT_COLUMNS = {"requests": ("error",), "events": ("detail",)}
DIGEST_CHARS = 12
MARKER_CHARS = len("…[cut, sha256 ]") + DIGEST_CHARS


def cap_name(name: str, max_chars: int) -> str:
    """``name`` itself when it has at most ``max_chars`` characters, else its beginning and a
    marker with a digest of the whole name, ``max_chars`` characters in all.

    The digest keeps names apart that only differ after the cut (URLs with long query
    strings), and is the same in every run, so a cut endpoint is compared with itself.
    """
    if len(name) <= max_chars:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]
    return f"{name[: max_chars - MARKER_CHARS]}…[cut, sha256 {digest}]"


def cap_text(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def cap_row(table: str, row: dict[str, Any], limits: ReadLimits) -> dict[str, Any]:
    """A canonical row (a dict) with its names and free text cut (in place, and returned).

    Adapters that collect rows as dicts call this per row, so a batch never holds more than
    the limits allow however long the fields of the file are.
    """
    for column in NAME_COLUMNS.get(table, ()):
        value = row.get(column)
        if isinstance(value, str) and len(value) > limits.max_name_chars:
            row[column] = cap_name(value, limits.max_name_chars)
    for column in TEXT_COLUMNS.get(table, ()):
        value = row.get(column)
        if isinstance(value, str) and len(value) > limits.max_text_chars:
            row[column] = cap_text(value, limits.max_text_chars)
    return row


def _longer(text: pl.Series, chars: int) -> bool:
    """Whether a value of ``text`` has more than ``chars`` characters. A UTF-8 character
    takes at least one byte: the byte lengths (stored with each value) clear nearly every
    column without decoding a character."""
    return bool((text.str.len_bytes() > chars).any() and (text.str.len_chars() > chars).any())


def cap_frame(table: str, frame: pl.DataFrame, limits: ReadLimits) -> pl.DataFrame:
    """:func:`cap_row` for a frame: the same values, vectorised (names cut one distinct name
    at a time, as they are few)."""
    for column in NAME_COLUMNS.get(table, ()):
        if column not in frame.columns or frame[column].dtype != pl.String:
            continue
        if not _longer(frame[column], limits.max_name_chars):
            continue
        too_long = frame[column].str.len_chars() > limits.max_name_chars
        names = frame[column].filter(too_long).unique().to_list()
        cut = {name: cap_name(name, limits.max_name_chars) for name in names}
        frame = frame.with_columns(pl.col(column).replace(cut))
    for column in TEXT_COLUMNS.get(table, ()):
        if column not in frame.columns or frame[column].dtype != pl.String:
            continue
        if not _longer(frame[column], limits.max_text_chars):
            continue
        text = pl.col(column)
        frame = frame.with_columns(
            pl.when(text.str.len_chars() > limits.max_text_chars)
            .then(text.str.slice(0, limits.max_text_chars - 1) + "…")
            .otherwise(text)
            .alias(column)
        )
    return frame


DEFAULT_LIMITS = ReadLimits()
