"""Block-wise parsing of NDJSON for the line-oriented JSON adapters (canonical, k6).

``json.loads`` and a dict per row cost about 10 µs a line, and a 1 GB result file has 4-7 M
lines. So ``parse_ndjson`` reads a block of lines (about ``BLOCK_BYTES``), parses it at once
with Arrow's JSON reader against an explicit schema, and lets the adapter check its rules with
polars expressions (its ``convert``). Two threads do this for consecutive blocks while the
caller handles the blocks before (Arrow and polars release the GIL).

The bulk path only ever *accepts*: a line it cannot prove to give exactly the row of the
adapter's per-line ``to_row`` goes to ``to_row`` (the fallback), which alone decides
quarantine reasons. Results are therefore the same whichever path a line takes; only speed
differs. Lines take the fallback when:

* they are never given to Arrow: not valid UTF-8 (Arrow does not check the strings it skips),
  not starting with ``{`` (a BOM, which Arrow drops without a row; a top-level ``null``, on
  which pyarrow 26 crashes; arrays, numbers, garbage) or not ending with ``}`` (Arrow reads an
  object on across the newline, and its rows would no longer match the lines), with more
  opening brackets than ``ReadLimits.max_depth`` (the fallback refuses those nested deeper, on
  either path), or longer than Python's limit on the digits of an integer (``json.loads``
  refuses a longer one, Arrow reads it);
* Arrow rejects their range (invalid JSON, a field of another type than the schema's, a key
  given twice, ...) or reads it into another number of rows than it has lines (two objects on
  one line): the range is split in halves until the bad lines are isolated, and ranges of at
  most ``BISECT_MIN_LINES`` lines go to the fallback whole;
* Arrow read a float that ``json.loads`` may not give back: not finite (Arrow also takes
  ``Inf`` and ``-NaN``, which ``json.loads`` refuses) or ``-0`` (Arrow's ``-0.0``, Python's
  ``0``); or Arrow skipped a field not in the schema whose text may hold such a token;
* ``convert`` cannot vouch for their row (a timestamp it does not parse, a value out of range).
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import (
    INVALID_JSON,
    LONE_SURROGATE,
    NOT_UTF8,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    UnreadableFileError,
    encodable,
    line_too_long,
    read_failure,
)
from metrics_pipeline.formats.limits import (
    DEFAULT_LIMITS,
    ReadLimits,
    cap_frame,
    depth_reason,
    nested_deeper,
)

BLOCK_BYTES = 8 << 20
READ_BYTES = 1 << 20
ARROW_BLOCK_BYTES = 512 << 10
BISECT_MIN_LINES = 64
WORKERS = 2
LF, CR, OPEN_BRACE, CLOSE_BRACE, OPEN_BRACKET = 10, 13, ord("{"), ord("}"), ord("[")
# Tokens Arrow reads as numbers and json.loads refuses (it takes NaN, Infinity, -Infinity),
# where a value starts. Searched for in three steps, each cheaper than the next: a letter of
# theirs (memchr: 0.4 ms per 8 MB), the token (6 ms), the token where a value starts (50 ms;
# "/userInfo" has the token, not as a value).
NOT_JSON = ((b"I", b"Inf"), (b"N", b"-NaN"))
NOT_JSON_VALUE = re.compile(rb"[:\[,]\s*(?:-?Inf(?!inity)|-NaN)")
WHITESPACE = np.array([9, 10, 11, 12, 13, 32], np.uint8)  # what bytes.strip() removes

# The timestamps the bulk path parses: ISO 8601 with a 'T', seconds, an optional fraction and
# 'Z' or a ±HH:MM offset (or none: UTC), years 1000-2999 (far from datetime's limits, so
# no conversion can overflow). Anything else goes to base.parse_timestamp, line by line.
ISO_TIMESTAMP = (
    r"^([12][0-9]{3}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])"
    r"(?:\.([0-9]+))?(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)
# Epoch seconds the bulk path converts: 1970 to 3000.
EPOCH_MAX_S = 32_503_680_000.0
# Durations the bulk path converts (115 days): no timestamp minus one can leave datetime's range.
TIMEDELTA_MAX_MS = 1e10
TS = pl.Datetime("us", "UTC")


@dataclass
class Block:
    r"""Complete lines of a file: the non-blank ones by offsets (without ``\r\n``) and number."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    line_nos: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def raw(self, i: int) -> bytes:
        return self.data[self.starts[i] : self.ends[i]]


def _block(data: bytes, first_line_no: int) -> Block:
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == LF)
    ends = newlines if data.endswith(b"\n") else np.append(newlines, len(data))
    starts = np.concatenate(([0], newlines[: len(ends) - 1] + 1)).astype(np.int64)
    line_nos = first_line_no + np.arange(len(ends), dtype=np.int64)
    while True:  # rstrip(b"\r\n"): the \n is gone, strip trailing \r
        cr = ends > starts
        cr[cr] = buf[ends[cr] - 1] == CR
        if not cr.any():
            break
        ends = ends - cr
    # A line is blank when bytes.strip() leaves nothing: only lines starting with whitespace
    # can be, and those are few.
    blank = ends == starts
    first = np.zeros(len(ends), np.uint8)
    first[~blank] = buf[starts[~blank]]
    for i in np.flatnonzero(~blank & np.isin(first, WHITESPACE)):
        blank[i] = not data[starts[i] : ends[i]].strip()
    keep = ~blank
    return Block(data, starts[keep], ends[keep], line_nos[keep])


def lines_block(lines: list[bytes]) -> Block | None:
    """A block of ``lines`` (whole non-blank lines of another block), numbered from 0; None
    when they do not come back one line each (a line holding a newline)."""
    block = _block(b"\n".join(lines) + b"\n", 0)
    return block if len(block) == len(lines) else None


def read_chunks(
    stream: BinaryIO, file: str, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[tuple[bytes, int]]:
    """(about BLOCK_BYTES of whole lines, the number of its first line), numbered like
    ``base.numbered_lines``.

    A corrupt or truncated gzip stream, or a line longer than ``limits.max_line_bytes``,
    raises UnreadableFileError after the chunk of the lines that could be read, so the caller
    can keep what was good and report the rest. Memory is at most about BLOCK_BYTES plus one
    line.
    """
    read = getattr(stream, "read1", stream.read)
    pieces: list[bytes] = []
    size = 0
    line_no = 1  # the number of the first line not yet in a chunk
    partial = 0  # bytes read since the last newline: the line being read
    while True:
        try:
            piece = read(READ_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            data = b"".join(pieces)
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut], line_no
                line_no += data.count(b"\n", 0, cut)
            raise read_failure(file, exc, line_no - 1) from exc
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
        newline = piece.rfind(b"\n")
        partial = partial + len(piece) if newline < 0 else len(piece) - newline - 1
        if partial > limits.max_line_bytes:
            # Without this a line that never ends (a bomb of one line) would be held whole.
            data = b"".join(pieces)
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut], line_no
                line_no += data.count(b"\n", 0, cut)
            raise line_too_long(file, line_no, limits)
        if size >= BLOCK_BYTES and newline >= 0:
            # The chunk ends at the last newline, in the last piece: joined once, not copied
            # again to cut the partial line off.
            rest = piece[newline + 1 :]
            chunk = b"".join([*pieces[:-1], piece[: newline + 1]] if rest else pieces)
            yield chunk, line_no
            line_no += chunk.count(b"\n")
            pieces = [rest] if rest else []
            size = len(rest)
    if pieces:
        yield b"".join(pieces), line_no


def _bulk_candidates(block: Block, max_depth: int = DEFAULT_LIMITS.max_depth) -> np.ndarray:
    """Whether each line may go to Arrow: starts with '{' and ends with '}' (blanks aside: one
    whole object, see the module's docstring), is valid UTF-8, no longer than Python's limit on
    the digits of an integer, and has at most ``max_depth`` opening brackets (so cannot nest
    deeper: the fallback measures the others, and a line is refused for its depth whichever
    path it would take)."""
    buf = np.frombuffer(block.data, np.uint8)
    empty = np.zeros(0, np.uint8)
    first = buf[block.starts] if len(block) else empty
    last = buf[block.ends - 1] if len(block) else empty
    opens = first == OPEN_BRACE
    ok = opens.copy()
    for i in np.flatnonzero(np.isin(first, WHITESPACE)):  # leading blanks before the '{'
        ok[i] = block.raw(i).lstrip()[:1] == b"{"
    # A line that ends in anything but '}' (trailing blanks aside) is not one whole object:
    # Arrow would read on into the next line, one row for two lines.
    closed = last == CLOSE_BRACE
    for i in np.flatnonzero(np.isin(last, WHITESPACE)):
        closed[i] = block.raw(i).rstrip()[-1:] == b"}"
    ok &= closed
    if digits := sys.get_int_max_str_digits():  # 0: no limit
        ok &= (block.ends - block.starts) <= digits
    # Brackets are a few per line: their positions, not a running count over every byte (and
    # no pass for '[' in a block without one). Each line that starts with '{' holds that one:
    # when the block has fewer than max_depth others, no line can hold more than max_depth
    # (flat records, canonical's) and none needs counting.
    is_bracket = buf == OPEN_BRACE
    if b"[" in block.data:
        is_bracket |= buf == OPEN_BRACKET
    if np.count_nonzero(is_bracket) - np.count_nonzero(opens) >= max_depth:
        brackets = np.flatnonzero(is_bracket)
        counts = np.searchsorted(brackets, block.ends) - np.searchsorted(brackets, block.starts)
        ok &= counts <= max_depth
    if not block.data.isascii():
        try:
            block.data.decode("utf-8")
        except UnicodeDecodeError:
            for i in np.flatnonzero(ok):
                try:
                    block.raw(i).decode("utf-8")
                except UnicodeDecodeError:
                    ok[i] = False
    return ok


def parse_block(
    block: Block,
    options_for: Callable[[bytes], list[pj.ParseOptions]],
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> tuple[list[pl.DataFrame], list[int]]:
    """(frames of the ranges Arrow parsed, in line order, each with ``_row``, the index of its
    line in ``block``; the lines for the fallback, ascending).

    ``options_for`` gets the first line of a range and returns the Arrow parse options (schema,
    what to do with other fields) to try in turn: a schema may follow that line.
    """
    candidates = _bulk_candidates(block, max_depth)
    slow: list[int] = np.flatnonzero(~candidates).tolist()
    # Runs of consecutive candidates, each parsed as one contiguous range of the block.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], candidates.astype(np.int8), [0]))))
    ranges = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    longest = int((block.ends - block.starts).max()) if len(block) else 0
    # One thread per block: WORKERS blocks are parsed at a time already, and Arrow's own
    # threads on top cost CPU (a quarter more) without being faster.
    options = pj.ReadOptions(block_size=max(ARROW_BLOCK_BYTES, longest + 2), use_threads=False)
    view = memoryview(block.data)
    frames = []
    ranges.reverse()
    while ranges:
        lo, hi = ranges.pop()
        lines = view[block.starts[lo] : block.ends[hi - 1]]
        table = None
        for parse_options in options_for(block.raw(lo)):
            try:
                table = pj.read_json(
                    pa.BufferReader(pa.py_buffer(lines)),
                    read_options=options,
                    parse_options=parse_options,
                )
            except (pa.ArrowException, ValueError):
                continue
            break
        if table is not None and table.num_rows == hi - lo:
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(_row=pl.int_range(lo, hi, dtype=pl.Int64))
            doubtful = _doubtful_floats(frame)
            start, end = int(block.starts[lo]), int(block.ends[hi - 1])
            if parse_options.unexpected_field_behavior == "ignore" and any(
                block.data.find(letter, start, end) >= 0 and block.data.find(token, start, end) >= 0
                for letter, token in NOT_JSON
            ):
                hits = [m.start() for m in NOT_JSON_VALUE.finditer(block.data, start, end)]
                lines = np.searchsorted(block.starts, hits, side="right") - 1
                doubtful |= pl.Series(np.isin(np.arange(lo, hi), lines))
            if doubtful.any():
                slow.extend(frame.filter(doubtful)["_row"].to_list())
                frame = frame.filter(~doubtful)
            frames.append(frame)
        elif hi - lo <= BISECT_MIN_LINES:
            slow.extend(range(lo, hi))
        else:
            mid = (lo + hi) // 2
            ranges += [(mid, hi), (lo, mid)]
    slow.sort()
    return frames, slow


def exact_float(value: pl.Expr) -> pl.Expr:
    """Whether a float Arrow read is certainly the one ``json.loads`` gives: finite (Arrow
    also reads ``Inf`` and ``-NaN``, which ``json.loads`` refuses) and not ``-0.0`` (which
    Arrow makes of the integer ``-0``, where Python has ``0``)."""
    return value.is_finite() & ((value != 0) | (1.0 / value > 0))


def _doubtful_floats(frame: pl.DataFrame) -> pl.Series:
    """Rows with a float field that may not be what ``json.loads`` reads (see
    :func:`exact_float`), whichever field the adapter takes (an alias that loses to another
    is still part of the line ``json.loads`` must accept)."""
    floats = [name for name, dtype in frame.schema.items() if dtype == pl.Float64]
    if not floats:
        return pl.Series(np.zeros(frame.height, bool))
    exact = pl.all_horizontal(exact_float(pl.col(name)).fill_null(True) for name in floats)
    return frame.select(~exact)[:, 0]


# --- the driver ---------------------------------------------------------------------------------

# Given the frame Arrow made of some lines of a block (with ``_row``), a frame with ``_row``,
# ``_fast`` (the row is certain), ``_table`` (its table; null: accepted without a row) and the
# columns of the rows of every table.
Convert = Callable[[pl.DataFrame, Block], pl.DataFrame]
# The per-line path: a decoded JSON value -> (table, row), None (accepted without a row), or
# RowError with the quarantine reason.
ToRow = Callable[[Any], "tuple[str, dict[str, Any]] | None"]


@dataclass
class BulkBlock:
    block: Block
    rows: dict[str, pl.DataFrame]  # per table, in its schema plus ``_line``
    accepted: int  # lines the bulk path accepted (with or without a row)
    slow: list[int]  # lines for the fallback, ascending


def parse_ndjson(
    stream: BinaryIO,
    accounting: FileAccounting,
    *,
    options_for: Callable[[bytes], list[pj.ParseOptions]],
    convert: Convert,
    to_row: ToRow,
    batch_rows: int,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Iterator[Batch]:
    """Canonical batches (≤ ``batch_rows`` rows) of an NDJSON stream, plus quarantine.

    ``options_for`` gets the first line of a range and returns the Arrow parse options
    (schema, what to do with other fields) to try in turn: a schema may follow that line.
    ``limits`` bound line length and nesting; names and text are cut a block at a time.
    """
    quarantine = Quarantine(accounting)
    batches = Batches(batch_rows)

    def bulk(chunk: tuple[bytes, int]) -> BulkBlock:
        return _bulk_block(_block(*chunk), options_for, convert, accounting.file, limits)

    try:
        chunks = read_chunks(stream, accounting.file, limits)
        for bulk_block in _in_order(bulk, chunks):
            for table, frame in _complete(bulk_block, to_row, accounting, quarantine, limits):
                yield from batches.add(table, frame)
            yield from flush_quarantine(quarantine, batch_rows)
    except UnreadableFileError:
        # Also on a corrupt stream: what was read before the damage is kept and accounted for.
        yield from batches.flush()
        yield from flush_quarantine(quarantine, batch_rows)
        raise
    yield from batches.flush()
    yield from flush_quarantine(quarantine, batch_rows)


def _bulk_block(
    block: Block,
    options_for: Callable[[bytes], list[pj.ParseOptions]],
    convert: Convert,
    file: str,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> BulkBlock:
    frames, slow = parse_block(block, options_for, limits.max_depth)
    if len(frames) > 1 and all(frame.schema == frames[0].schema for frame in frames):
        # One conversion for the block, not one per range Arrow read (a block with bad lines
        # is read in many ranges): convert works row by row.
        frames = [pl.concat(frames)]
    converted = [convert(frame, block) for frame in frames]
    rows = pl.concat(converted) if converted else None
    tables: dict[str, pl.DataFrame] = {}
    accepted = 0
    if rows is not None:
        if not rows["_fast"].all():
            slow = sorted(slow + rows.filter(~pl.col("_fast"))["_row"].to_list())
            rows = rows.filter("_fast")
        accepted = rows.height
        rows = rows.with_columns(_line=pl.Series(block.line_nos[rows["_row"].to_numpy()]))
        for (table,), part in rows.partition_by("_table", as_dict=True).items():
            if table is None:
                continue
            if table == "requests":
                part = part.with_columns(source_file=pl.lit(file), line_no="_line")
            tables[table] = conform(table, part).with_columns(part["_line"])
    return BulkBlock(block, tables, accepted, slow)


def _complete(
    bulk: BulkBlock,
    to_row: ToRow,
    accounting: FileAccounting,
    quarantine: Quarantine,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Iterator[Batch]:
    """The rows of one block per table, in line order: the bulk ones and the fallback's, with
    names and text cut to ``limits`` (before they are batched: a batch stays bounded)."""
    block = bulk.block
    accounting.rows_read += len(block)
    accounting.rows_accepted += bulk.accepted
    pending: dict[str, tuple[list[dict[str, Any]], list[int]]] = defaultdict(lambda: ([], []))
    for i in bulk.slow:
        line_no, raw = int(block.line_nos[i]), block.raw(i)
        if nested_deeper(raw, limits.max_depth):
            # One hostile line is one quarantined record; the file goes on.
            quarantine.add(line_no, depth_reason(limits), raw)
            continue
        try:
            result = to_row(json.loads(raw.decode("utf-8-sig")))
        except UnicodeDecodeError:
            quarantine.add(line_no, NOT_UTF8, raw)
            continue
        except RowError as exc:
            quarantine.add(line_no, str(exc), raw)
            continue
        except (ValueError, RecursionError):
            quarantine.add(line_no, INVALID_JSON, raw)
            continue
        if result is not None and not encodable(result[1]):
            quarantine.add(line_no, LONE_SURROGATE, raw)
            continue
        accounting.rows_accepted += 1
        if result is None:
            continue
        table, row = result
        if table == "requests":
            row["source_file"] = accounting.file
            row["line_no"] = line_no
        pending[table][0].append(row)
        pending[table][1].append(line_no)
    for table in dict.fromkeys([*bulk.rows, *pending]):
        parts = [bulk.rows[table]] if table in bulk.rows else []
        if table in pending:
            rows, line_nos = pending[table]
            slow = conform(table, pl.DataFrame(rows, infer_schema_length=None))
            parts.append(slow.with_columns(_line=pl.Series(line_nos, dtype=pl.Int64)))
        merged = parts[0] if len(parts) == 1 else pl.concat(parts).sort("_line")
        yield table, cap_frame(table, merged.drop("_line"), limits)


A = TypeVar("A")
T = TypeVar("T")


def _in_order(work: Callable[[A], T], items: Iterator[A]) -> Iterator[T]:
    """``work`` of each item, done by WORKERS threads (Arrow and polars release the GIL: one
    block is parsed while the other is converted and the caller writes the one before), in
    the order of ``items``, with at most WORKERS + 1 items in flight.

    An UnreadableFileError of ``items`` (a corrupt stream) is raised after the results of the
    items read before it.
    """
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="ndjson-blocks") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) > WORKERS:
                    yield pending.popleft().result()
        except UnreadableFileError:
            while pending:
                yield pending.popleft().result()
            raise
        while pending:
            yield pending.popleft().result()


# --- timestamps, exactly as base.parse_timestamp and timedelta ---------------------------------


def iso_timestamp(text: pl.Series) -> pl.Series:
    """ISO_TIMESTAMP strings -> UTC, null for anything else (fraction truncated to µs).

    The usual shape (``Z``, at most 9 digits of fraction) is read from the string bytes with
    numpy (``_iso_utc_fast``); the others go the regex way (``_iso_timestamp``), which gives
    the same value for the usual shape too, only slower.
    """
    fast = _iso_utc_fast(text)
    missing = fast.is_null() & text.is_not_null()
    if missing.any():
        rows = missing.arg_true()
        fast = fast.scatter(rows, _iso_timestamp(text.gather(rows)))
    return fast.alias(text.name)


# "YYYY-MM-DDTHH:MM:SS" (19 bytes), then "Z" or "." + 1-9 digits + "Z".
ISO_BASE_BYTES = 19
ISO_FAST_BYTES = ISO_BASE_BYTES + 11
ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
ISO_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord("T"), 13: ord(":"), 16: ord(":")}
DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
MICROS_PER_DAY = 86_400_000_000


def _iso_utc_fast(text: pl.Series) -> pl.Series:
    """``_iso_timestamp`` of the strings "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" that ISO_TIMESTAMP
    takes (years 1000-2999, hours 00-23, minutes and seconds 00-59) and that are real dates;
    null for every other string (it may still be valid: the caller asks the regex way)."""
    n = len(text)
    micros = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    strings = text.to_arrow(compat_level=pl.CompatLevel.oldest())
    data_buffer = strings.buffers()[2]
    if n and data_buffer is not None:
        offsets = np.frombuffer(strings.buffers()[1], np.int64, n + 1, strings.offset * 8)
        data = np.frombuffer(data_buffer, np.uint8)
        lengths = np.diff(offsets)
        valid = text.is_not_null().to_numpy()
        for length in np.unique(lengths[valid]).tolist():  # mostly one
            if ISO_BASE_BYTES + 1 <= length <= ISO_FAST_BYTES and length != ISO_BASE_BYTES + 2:
                rows = np.flatnonzero(valid & (lengths == length))
                micros[rows], ok[rows] = _iso_fixed(data, offsets[rows], length)
    return pl.Series(text.name, micros).cast(TS).set(pl.Series(~ok), None)


def _iso_fixed(data: np.ndarray, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(µs since 1970, whether the string is of the fast shape) of the ``length``-byte strings
    at ``starts`` of ``data``."""
    m = starts.size
    if m > 1 and np.all(np.diff(starts) == length):  # one after the other: a view, no copy
        b = data[starts[0] : starts[0] + m * length].reshape(m, length)
    else:
        b = data[starts[:, None] + np.arange(length)]
    digits = b[:, ISO_DIGITS] - np.uint8(ord("0"))  # not a digit: wraps around, above 9
    good = (digits <= 9).all(axis=1) & (b[:, length - 1] == ord("Z"))
    for position, char in ISO_SEPARATORS.items():
        good &= b[:, position] == char
    fraction_us = np.zeros(m, np.int64)
    if length > ISO_BASE_BYTES + 1:
        good &= b[:, ISO_BASE_BYTES] == ord(".")
        fraction = b[:, ISO_BASE_BYTES + 1 : length - 1] - np.uint8(ord("0"))
        good &= (fraction <= 9).all(axis=1)
        # The first 6 digits, padded with zeros: µs, truncated.
        for column in range(min(6, fraction.shape[1])):
            fraction_us += fraction[:, column].astype(np.int64) * 10 ** (5 - column)
    d = digits.astype(np.int64)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    hour, minute, second = (
        d[:, 8] * 10 + d[:, 9],
        d[:, 10] * 10 + d[:, 11],
        d[:, 12] * 10 + d[:, 13],
    )
    good &= (year >= 1000) & (year <= 2999) & (hour <= 23) & (minute <= 59) & (second <= 59)
    good &= (month >= 1) & (month <= 12) & (day >= 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    good &= day <= DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    seconds = hour * 3600 + minute * 60 + second
    return days * MICROS_PER_DAY + seconds * 1_000_000 + fraction_us, good


def _iso_timestamp(text: pl.Series) -> pl.Series:
    """ISO_TIMESTAMP strings -> UTC, null for anything else, with a regular expression."""
    parts = text.str.extract_groups(ISO_TIMESTAMP).struct.unnest()
    base, fraction, offset = (pl.col(name) for name in parts.columns)
    naive = base.str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False)
    micros = fraction.str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64, strict=False)
    # Non-strict casts: polars evaluates both branches of when/then, on "Z" too.
    hours = offset.str.slice(1, 2).cast(pl.Int64, strict=False)
    minutes = offset.str.slice(4, 2).cast(pl.Int64, strict=False)
    sign = pl.when(offset.str.starts_with("-")).then(-1).otherwise(1)
    offset_minutes = (
        pl.when(offset.is_null() | (offset == "Z")).then(0).otherwise(sign * (hours * 60 + minutes))
    )
    utc = (
        naive + pl.duration(microseconds=micros.fill_null(0)) - pl.duration(minutes=offset_minutes)
    )
    return parts.select(utc.dt.replace_time_zone("UTC").alias(text.name)).to_series()


def epoch_timestamp(values: pl.Series) -> pl.Series:
    """Epoch seconds, or milliseconds from 1e11 on, -> UTC like ``datetime.fromtimestamp``:
    whole seconds plus the fraction rounded half-even to µs; null outside 1970-3000.

    numpy, not polars: polars may divide by a constant as a multiplication by its inverse,
    which differs from Python's ``value / 1000.0`` in the last bit, and so by a µs.
    """
    value = values.cast(pl.Float64).to_numpy()
    with np.errstate(invalid="ignore"):
        seconds = np.where(np.abs(value) >= 1e11, value / 1000.0, value)
        inside = (seconds >= 0) & (seconds < EPOCH_MAX_S)
        seconds = np.where(inside, seconds, 0.0)
    whole = np.floor(seconds)
    micros = whole.astype(np.int64) * 1_000_000 + np.rint((seconds - whole) * 1e6).astype(np.int64)
    return pl.Series(values.name, micros).cast(TS).set(pl.Series(~inside), None)


def timedelta_micros(ms: pl.Expr) -> pl.Expr:
    """``timedelta(milliseconds=ms)`` in µs with CPython's arithmetic (whole ms times 1000,
    plus the whole µs of fraction * 1000, plus its rest rounded half-even); null outside
    0 <= ms <= TIMEDELTA_MAX_MS."""
    ms = pl.when((ms >= 0) & (ms <= TIMEDELTA_MAX_MS)).then(ms)
    whole_ms = ms.floor()
    fraction_us = (ms - whole_ms) * 1000.0
    whole_us = fraction_us.floor()
    rest = fraction_us - whole_us
    micros = whole_ms.cast(pl.Int64) * 1000 + whole_us.cast(pl.Int64)
    odd = (micros % 2) == 1
    up = (rest > 0.5) | ((rest == 0.5) & odd)
    return micros + up.cast(pl.Int64)


# --- batches ------------------------------------------------------------------------------------


class Batches:
    """Rows per table, handed out in batches of exactly ``size`` rows (the last ones smaller)."""

    def __init__(self, size: int):
        self.size = size
        self.parts: dict[str, list[pl.DataFrame]] = defaultdict(list)
        self.rows: dict[str, int] = defaultdict(int)

    def add(self, table: str, frame: pl.DataFrame) -> Iterator[Batch]:
        if frame.height == 0:
            return
        self.parts[table].append(frame)
        self.rows[table] += frame.height
        if self.rows[table] < self.size:
            return
        rows = pl.concat(self.parts[table])
        full = rows.height - rows.height % self.size
        for offset in range(0, full, self.size):
            yield table, rows.slice(offset, self.size)
        rest = rows.slice(full)
        self.parts[table] = [rest] if rest.height else []
        self.rows[table] = rest.height

    def flush(self) -> Iterator[Batch]:
        for table, parts in self.parts.items():
            if parts:
                yield table, pl.concat(parts)
        self.parts.clear()
        self.rows.clear()


def flush_quarantine(quarantine: Quarantine, size: int) -> Iterator[Batch]:
    for table, frame in quarantine.flush():
        for offset in range(0, frame.height, size):
            yield table, frame.slice(offset, size)
