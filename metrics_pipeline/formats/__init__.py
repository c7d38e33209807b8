"""Load-test result formats -> canonical frames (design section 4), with per-file accounting.

Formats are recognised from content, not file names. Every adapter is pure and streaming:
``iter_file`` yields bounded batches, ``read_results`` collects them for small inputs.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

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
    Batch,
    FileAccounting,
    Quarantine,
    UnreadableFileError,
    open_maybe_gzip,
    sniff,
)

__all__ = [
    "ADAPTERS",
    "RESULT_SUFFIXES",
    "FileAccounting",
    "ParsedResults",
    "UnreadableFileError",
    "earliest_timestamp",
    "is_result_file",
    "iter_file",
    "read_results",
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


def is_result_file(name: str) -> bool:
    """Whether an object or file name is a result file of a run (the manifest is not)."""
    base = name.rsplit("/", 1)[-1]
    if base == MANIFEST_NAME:
        return False
    base = base.removesuffix(".gz")
    return base.endswith(RESULT_SUFFIXES)


def detect(stream: io.BufferedReader, name: str):
    """The first adapter that recognises the content (one damaged line is not fatal)."""
    sample = sniff(stream, name)
    return next((adapter for adapter in ADAPTERS if adapter.looks_like(sample)), None)


def iter_file(stream: BinaryIO, file: str, accounting: FileAccounting) -> Iterator[Batch]:
    """Yield canonical batches of one file; problems end up in ``accounting``, never raised.

    An empty file, an unknown format or a corrupt stream sets ``accounting.error`` (and, for
    lines that were read, keeps them accounted for); the caller decides whether that is fatal.
    """
    try:
        text_stream = open_maybe_gzip(stream)
        adapter = detect(text_stream, file)
    except (OSError, EOFError, zlib.error) as exc:
        accounting.error = f"unreadable: {exc}"
        return
    if adapter is None:
        head = text_stream.peek(RAW_EXCERPT_BYTES)[:RAW_EXCERPT_BYTES]
        if not head.strip():
            accounting.error = "empty file"
            return
        # The whole file is one quarantined unit (line 0): reported and kept, never fatal.
        accounting.error = "unknown format"
        quarantine = Quarantine(accounting)
        accounting.rows_read += 1
        quarantine.add(0, "unknown format", head)
        yield from quarantine.flush()
        return
    try:
        for table, frame in adapter.parse(text_stream, accounting):
            if table == "interval_stats":
                # Several files of one run may summarise the same requests (Locust writes three):
                # the source lets consumers pick one per endpoint.
                frame = frame.with_columns(source_file=pl.lit(file))
            yield table, frame
    except UnreadableFileError as exc:
        accounting.error = exc.reason


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


def result_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_result_file(p.name))
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return [path]


def read_results(path: str | Path) -> ParsedResults:
    """Read a result file or every result file below a folder into canonical frames."""
    path = Path(path)
    parts: dict[str, list[pl.DataFrame]] = {table: [] for table in CANONICAL_TABLES}
    accounting = []
    for file in result_files(path):
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        acc = FileAccounting(file=name)
        with file.open("rb") as stream:
            for table, frame in iter_file(stream, name, acc):
                parts[table].append(frame)
        accounting.append(acc.as_dict())
    frames = {
        table: pl.concat(frames) if frames else empty(table) for table, frames in parts.items()
    }
    return ParsedResults(**frames, accounting=accounting)


def earliest_timestamp(files: list[Path]) -> datetime | None:
    """The earliest timestamp in the first batch of each file (cheap: no full parse)."""
    earliest = None
    for file in files:
        with file.open("rb") as stream:
            for _table, frame in iter_file(stream, file.name, FileAccounting(file=file.name)):
                if "ts" in frame.columns and frame["ts"].null_count() < frame.height:
                    first = frame["ts"].min()
                    earliest = first if earliest is None else min(earliest, first)
                break
    return earliest
