"""Writing a report's four files to the reports folder and to the bucket.

Layout, the same under ``Settings.reports_root`` and under ``reports/`` in the bucket::

    runs/<run_id>/{summary.md, report.html, report.pdf, raw.jsonl}
    weekly/<iso week>/{summary.md, report.html, report.pdf, raw.jsonl}

Every file is written aside and renamed into place, so a reader never sees half a report and
re-running replaces the files (same paths, same keys).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import polars as pl

from metrics_pipeline.common.files import replace_bytes, replace_file
from metrics_pipeline.contracts.manifest import check_name

if TYPE_CHECKING:
    from metrics_pipeline.storage.objects import ObjectStore

BUCKET_PREFIX = "reports/"
FILES = ("summary.md", "report.html", "report.pdf", "raw.jsonl")
# Rows serialised per step when writing raw.jsonl: bounded memory for runs of millions of rows.
RAW_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class PublishedReport:
    """Where a report's files went: local paths and bucket keys, by file name."""

    paths: dict[str, Path]
    keys: dict[str, str]


def report_folder(kind: str, name: str) -> str:
    """``runs/<run_id>`` or ``weekly/<iso week>``, relative to the reports root."""
    if kind not in {"runs", "weekly"}:
        raise ValueError(f"report kind must be 'runs' or 'weekly', not {kind!r}")
    return f"{kind}/{check_name(name, 'report name')}"


def write_jsonl(path: Path, tables: Iterable[tuple[str, pl.LazyFrame]]) -> int:
    """Every row of every table as one JSON object per line, ``"table"`` first; rows written.

    NaN and infinities become null (JSON has neither); timestamps are ISO 8601 with offset.
    """
    written = 0

    def write(out: BinaryIO) -> None:
        nonlocal written
        for table, frame in tables:
            tagged = frame.select(pl.lit(table).alias("table"), pl.all()).collect()
            for offset in range(0, tagged.height, RAW_BATCH_ROWS):
                chunk = io.BytesIO()
                tagged.slice(offset, RAW_BATCH_ROWS).write_ndjson(chunk)
                out.write(chunk.getvalue())
            written += tagged.height

    replace_file(path, write)
    return written


def publish(
    root: Path,
    folder: str,
    contents: dict[str, bytes],
    raw: Iterable[tuple[str, pl.LazyFrame]],
    store: ObjectStore | None,
) -> PublishedReport:
    """Write ``contents`` (file name -> bytes) and ``raw.jsonl`` under ``root/folder``, then
    upload them to ``reports/<folder>/`` of ``store``."""
    target = Path(root) / folder
    paths = {}
    for name, data in contents.items():
        paths[name] = target / name
        replace_bytes(paths[name], data)
    paths["raw.jsonl"] = target / "raw.jsonl"
    write_jsonl(paths["raw.jsonl"], raw)
    keys = {}
    if store is not None:
        for name, path in paths.items():
            keys[name] = f"{BUCKET_PREFIX}{folder}/{name}"
            store.put_file(keys[name], path)
    return PublishedReport(paths, keys)
