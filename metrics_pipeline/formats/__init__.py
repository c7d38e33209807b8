"""Load-test result formats -> canonical frames (design section 4), with per-file accounting.

Formats are recognised from content, not file names. Every adapter is pure and streaming:
``iter_file`` yields bounded batches, ``read_results`` collects them for small inputs.

Result files are untrusted: ``ReadLimits`` (``limits.py``) bounds what one file may cost, and
a file that breaks a limit, is damaged or truncated gets an ``error`` in its accounting while
the other files are read as usual. The records read before a file failed are kept (and
accounted for: read = accepted + quarantined); ``error`` says the file's data is incomplete.
"""

from __future__ import annotations

import io
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from metrics_pipeline.contracts.tables import CANONICAL_TABLES, RAW_EXCERPT_BYTES, empty
from metrics_pipeline.formats import (
    artillery_json,
    canonical_jsonl,
    jmeter_jtl,
    k6_ndjson,
    k6_summary,
    locust_csv,
    locust_json,
    sysmon_ndjson,
)
from metrics_pipeline.formats.base import (
    NOT_A_RECORD,
    SNIFF_BYTES,
    Batch,
    FileAccounting,
    Quarantine,
    UnreadableFileError,
    excerpt,
    open_maybe_gzip,
    read_failure,
    sniff,
)
from metrics_pipeline.formats.limits import (
    DEFAULT_LIMITS,
    ReadLimits,
    cap_frame,
    depth_reason,
    nested_deeper,
)

__all__ = [
    "ADAPTERS",
    "DEFAULT_LIMITS",
    "RESULT_SUFFIXES",
    "FileAccounting",
    "ParsedResults",
    "ReadLimits",
    "UnreadableFileError",
    "add_fingerprints",
    "commonest",
    "earliest_timestamp",
    "fingerprint",
    "is_result_file",
    "iter_file",
    "kept_as",
    "known_format",
    "measuring_tools",
    "quarantined_rows",
    "read_results",
    "result_files",
    "run_manifests",
    "too_much_quarantined",
    "unreadable_files",
]

ADAPTERS = (
    canonical_jsonl,
    k6_ndjson,
    k6_summary,
    jmeter_jtl,
    artillery_json,
    locust_csv,
    locust_json,
    sysmon_ndjson,
)
RESULT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".csv", ".jtl")
MANIFEST_NAME = "run.json"
# Folders of tools and dependencies, never of results (hidden folders are skipped too).
SKIPPED_FOLDERS = frozenset({"node_modules", "venv", "__pycache__"})
# The errors of files that are no result file at all (skipped, with a note), as opposed to a
# result file that could not be read (damaged, truncated, over a limit: its data is missing).
EMPTY_FILE = "empty file"
UNKNOWN_FORMAT = "unknown format"
NOT_RESULT_FILE = (EMPTY_FILE, UNKNOWN_FORMAT)


def is_result_file(name: str) -> bool:
    """Whether an object or file name is a result file of a run (the manifest is not)."""
    base = name.rsplit("/", 1)[-1]
    if base == MANIFEST_NAME:
        return False
    base = base.removesuffix(".gz")
    return base.endswith(RESULT_SUFFIXES)


def detect(stream: io.BufferedReader, name: str, limits: ReadLimits = DEFAULT_LIMITS):
    """The first adapter that recognises the content (one damaged line is not fatal)."""
    sample = sniff(stream, name, limits=limits)
    return next((adapter for adapter in ADAPTERS if adapter.looks_like(sample)), None)


def iter_file(
    stream: BinaryIO, file: str, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Yield canonical batches of one file; problems end up in ``accounting``, never raised.

    An empty file, an unknown format, a corrupt or truncated stream or a file beyond one of
    ``limits`` sets ``accounting.error`` (and, for lines that were read, keeps them accounted
    for); the caller decides whether that is fatal. Names and free text in the batches are cut
    to ``limits`` (see ``limits.cap_frame``).
    """
    try:
        text_stream = open_maybe_gzip(stream, limits)
        adapter = detect(text_stream, file, limits)
    except (OSError, EOFError, zlib.error) as exc:
        accounting.error = read_failure(file, exc).reason
        return
    if adapter is None:
        head = text_stream.peek(RAW_EXCERPT_BYTES)[:RAW_EXCERPT_BYTES]
        if not head.strip():
            accounting.error = EMPTY_FILE
            return
        # The whole file is one quarantined unit (line 0): reported and kept, never fatal.
        # JSON too deep to look at is said to be that, not just "unknown".
        sample = text_stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        too_deep = sample.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"[", b"{") and (
            nested_deeper(sample, limits.max_depth)
        )
        accounting.error = depth_reason(limits) if too_deep else UNKNOWN_FORMAT
        quarantine = Quarantine(accounting)
        accounting.rows_read += 1
        quarantine.add(0, accounting.error, head)
        yield from quarantine.flush()
        return
    # A document's last line says nothing of a cut (its parse does), and may be long: the
    # stream stops following it.
    document = getattr(adapter, "DOCUMENT", False)
    text_stream.raw.follow_last_line = not document  # type: ignore[attr-defined]
    last_quarantined: dict | None = None  # the row of the last line quarantined
    try:
        for table, frame in adapter.parse(text_stream, accounting, limits):
            if table == "quarantine" and frame.height and not document:
                last = frame.row(int(frame["line_no"].arg_max()), named=True)
                if last_quarantined is None or last["line_no"] >= last_quarantined["line_no"]:
                    last_quarantined = last
            if table == "interval_stats":
                # Several files of one run may summarise the same requests (Locust writes three):
                # the source lets consumers pick one per endpoint.
                frame = frame.with_columns(source_file=pl.lit(file))
            # Every adapter's names, whatever path made them, end up within the limits here.
            yield table, cap_frame(table, frame, limits)
    except UnreadableFileError as exc:
        accounting.error = exc.reason
    except (OSError, EOFError, zlib.error) as exc:  # adapters convert these; this is a backstop
        accounting.error = read_failure(file, exc).reason
    except RecursionError:
        # The nesting limit is checked before json.loads; should a structure still be too
        # deep for Python, it is this file's error, not the run's.
        accounting.error = depth_reason(limits)
    else:
        if accounting.error is None:
            accounting.error = _cut_short(text_stream, last_quarantined)


def _cut_short(text_stream: io.BufferedReader, last_quarantined: dict | None) -> str | None:
    """The error of a text file cut off in its last line (None if it was not): the file ends
    without a newline and that last line was quarantined as no record at all (invalid JSON,
    the wrong number of fields: ``NOT_A_RECORD``), as a record cut in two is; a whole record
    with a bad value is only quarantined. The lines before were read, but the data after the
    cut is missing (an upload or copy that stopped): the run's data is incomplete, as with a
    truncated gzip stream."""
    last_line = text_stream.raw.last_line  # type: ignore[attr-defined]
    if last_quarantined is None or not last_line.strip():
        return None
    if not last_quarantined["reason"].startswith(NOT_A_RECORD):
        return None
    if excerpt(last_line).rstrip("\r\n") != last_quarantined["raw"].rstrip("\r\n"):
        return None
    return (
        f"truncated: line {last_quarantined['line_no']}, the last, ends without a newline and "
        "is not a whole record"
    )


def known_format(file: Path, limits: ReadLimits = DEFAULT_LIMITS) -> str | None:
    """The name of the format ``file`` is recognised as from its first MiB (decompressed), as
    ``iter_file`` would read it; None when it is empty, of no known format or cannot be read
    from the start (missing, damaged gzip): no result file at all."""
    try:
        with file.open("rb") as stream:
            adapter = detect(open_maybe_gzip(stream, limits), file.name, limits)
    except (OSError, EOFError, zlib.error):
        return None
    return None if adapter is None else adapter.NAME


def measuring_tools(accounting: Iterable[dict]) -> set[str]:
    """The load-testing tools whose own formats hold a run's requests (``TOOL`` of each
    adapter that read rows; the canonical and system-sample formats name no tool). Two tools
    time the same requests differently (client overhead, whole milliseconds), so runs of
    different tools are not the same measurement."""
    tools = {adapter.NAME: adapter.TOOL for adapter in ADAPTERS}
    return {
        tools[acc["format"]]
        for acc in accounting
        if acc["rows_accepted"] and tools.get(acc["format"])
    }


# The share of a run's rows that may be quarantined (not readable as a row) for the run to be
# judged. The rows left out may be just those that matter (failures written in another
# shape): past 1 % they could move an error rate by more than a percentage point or a p99 to
# another value, so the run is not judged on the rest (compare exits 2, the ingested run is
# invalid). Below it, the quarantine is reported.
MAX_QUARANTINED_SHARE = 0.01


def quarantined_rows(
    accounting: Iterable[dict], ignore: Iterable[str] = ()
) -> tuple[int, int, Counter[str]]:
    """(rows read, rows quarantined, quarantined rows by reason) of a run's result files
    (accounting dicts; files that are no result file left out), without the rows quarantined
    for a reason in ``ignore``."""
    ignored = set(ignore)
    read = quarantined = 0
    reasons: Counter[str] = Counter()
    for acc in accounting:
        if acc["error"] in NOT_RESULT_FILE:
            continue
        left_out = sum(n for reason, n in acc["reasons"].items() if reason in ignored)
        read += acc["rows_read"] - left_out
        quarantined += acc["rows_quarantined"] - left_out
        reasons.update({r: n for r, n in acc["reasons"].items() if r not in ignored})
    return read, quarantined, reasons


def commonest(reasons: Counter[str], count: int = 3) -> str:
    """``"reason: rows; ..."`` of the ``count`` commonest quarantine reasons."""
    return "; ".join(f"{reason}: {rows}" for reason, rows in reasons.most_common(count))


def too_much_quarantined(read: int, quarantined: int) -> bool:
    """Whether more than ``MAX_QUARANTINED_SHARE`` of ``read`` rows were quarantined."""
    return quarantined > MAX_QUARANTINED_SHARE * read


# The columns that tell request rows apart (when, what, how long, the answer), and those that
# say only where a row came from: a copy of a file has the same rows, from other places.
REQUEST_IDENTITY = ("ts", "endpoint", "status", "latency_ms")
PROVENANCE = ("run_id", "source_file", "line_no")


def fingerprint(table: str, frame: pl.DataFrame) -> tuple[int, int]:
    """(rows, the sum of their hashes modulo 2**64) of rows of ``table``: over
    ``REQUEST_IDENTITY`` for requests, every column but ``PROVENANCE`` otherwise. A sum does
    not depend on the order, so fingerprints add up (:func:`add_fingerprints`): a file's over
    its batches, a run's over its files. Hashing four columns costs about 0.1 s per GB."""
    if frame.height == 0:
        return 0, 0
    columns = (
        REQUEST_IDENTITY
        if table == "requests"
        else [column for column in frame.columns if column not in PROVENANCE]
    )
    hashes = frame.select(columns).hash_rows().to_numpy()
    return frame.height, int(hashes.sum(dtype=np.uint64))  # numpy's uint64 sum wraps around


def add_fingerprints(*prints: tuple[int, int]) -> tuple[int, int]:
    """The fingerprint of the rows of all of ``prints`` together."""
    return sum(rows for rows, _ in prints), sum(digest for _, digest in prints) % 2**64


def kept_as(file: dict) -> str:
    """What a file's accepted rows became, for the file tables (``IngestReport.files``):
    "3,984 requests" where its 44,877 accepted lines were k6's points of every metric."""
    kept = file.get("rows_kept") or {}
    return ", ".join(f"{n:,} {table}" for table, n in sorted(kept.items()) if n) or "nothing"


def unreadable_files(accounting: Iterable[dict]) -> list[str]:
    """``"file: error"`` for every file (an accounting dict) that is a result file but could
    not be read whole: damaged, truncated, over a limit. Empty files and files of an unknown
    format are not: they are no result files and are only reported."""
    return [
        f"{acc['file']}: {acc['error']}"
        for acc in accounting
        if acc["error"] is not None and acc["error"] not in NOT_RESULT_FILE
    ]


@dataclass
class ParsedResults:
    """Canonical frames of one file or folder, and one accounting dict per file."""

    requests: pl.DataFrame = field(default_factory=lambda: empty("requests"))
    resources: pl.DataFrame = field(default_factory=lambda: empty("resources"))
    events: pl.DataFrame = field(default_factory=lambda: empty("events"))
    interval_stats: pl.DataFrame = field(default_factory=lambda: empty("interval_stats"))
    kpi_points: pl.DataFrame = field(default_factory=lambda: empty("kpi_points"))
    quarantine: pl.DataFrame = field(default_factory=lambda: empty("quarantine"))
    accounting: list[dict] = field(default_factory=list)


def result_files(path: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """``path`` itself when it is a file, else the result files below the folder ``path``
    (by name: ``is_result_file``), sorted.

    Below ``path``, hidden folders (``.git``, ``.venv``, ``.metrics_home``...), the folders of
    ``SKIPPED_FOLDERS`` and the folders ``skip`` names (the pipeline's own METRICS_HOME) are
    not looked into: a load test run from a project's root must not take its dependencies'
    ``package.json`` for results. ``path`` itself is looked into whatever its name.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    """
    if path.is_dir():
        return sorted(file for file in _files_below(path, skip) if is_result_file(file.name))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return [path]


def run_manifests(path: Path) -> list[Path]:
    """The run manifests (``run.json``) in the folder ``path`` and below, looked for where
    :func:`result_files` looks: more than one, and the folder holds several runs."""
    return sorted(file for file in _files_below(path) if file.name == MANIFEST_NAME)


def _files_below(path: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    """Every file in the folder ``path`` and below, but in the folders :func:`result_files`
    does not look into."""
    skipped = {Path(folder).resolve() for folder in skip}
    # Not into linked folders, as pathlib's rglob before it: a link to a parent folder would
    # read the run's files again and again (or never end).
    for folder, subfolders, names in os.walk(path):
        # Pruned in place, so os.walk never descends into them.
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".")
            and name not in SKIPPED_FOLDERS
            and (not skipped or Path(folder, name).resolve() not in skipped)
        ]
        yield from (Path(folder, name) for name in names if Path(folder, name).is_file())


def read_results(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> ParsedResults:
    """Read a result file or every result file below a folder into canonical frames.

    A file that cannot be opened or read gets an error in its accounting; the others are read.
    """
    path = Path(path)
    parts: dict[str, list[pl.DataFrame]] = {table: [] for table in CANONICAL_TABLES}
    accounting = []
    for file in result_files(path):
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        acc = FileAccounting(file=name)
        try:
            stream = file.open("rb")
        except OSError as exc:  # permissions, a file removed meanwhile
            acc.error = f"cannot open: {exc.strerror or exc}"
        else:
            with stream:
                for table, frame in iter_file(stream, name, acc, limits):
                    parts[table].append(frame)
        accounting.append(acc.as_dict())
    frames = {
        table: pl.concat(frames) if frames else empty(table) for table, frames in parts.items()
    }
    return ParsedResults(**frames, accounting=accounting)


def earliest_timestamp(files: list[Path]) -> datetime | None:
    """The earliest timestamp in the first batch with timestamps of each file (a file is read
    only that far: one batch, unless it has none). Batches without one are passed over: a bad
    line among the first is a batch of quarantine rows before the first batch of requests, and
    a run dated by nothing would start at the upload, with every request outside its window."""
    earliest = None
    for file in files:
        try:
            stream = file.open("rb")
        except OSError:
            continue  # reported when the file is read for its rows
        with stream:
            for _table, frame in iter_file(stream, file.name, FileAccounting(file=file.name)):
                if "ts" in frame.columns and frame["ts"].null_count() < frame.height:
                    first = frame["ts"].min()
                    earliest = first if earliest is None else min(earliest, first)
                    break
    return earliest
