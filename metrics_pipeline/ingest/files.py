"""From raw result files to warehouse partitions: the one code path behind the ingest asset and
the ``ingest`` command."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import polars as pl

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.manifest import ManifestError, RunManifest
from metrics_pipeline.contracts.tables import INGESTED_TABLES, RAW_EXCERPT_BYTES
from metrics_pipeline.formats import FileAccounting, is_result_file, iter_file, result_files
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import ObjectStore
from metrics_pipeline.validation import ValidationResult, validate
from metrics_pipeline.validation.suites import SUITES

# Tables whose rows may lack a timestamp in some formats: they then get the run's start.
UNTIMED_TABLES = ("interval_stats", "events")

Opener = Callable[[], AbstractContextManager[BinaryIO]]


class RunNotFoundError(MetricsPipelineError, LookupError):
    """No complete upload (with run.json) exists for a run id."""


@dataclass
class IngestReport:
    manifest: RunManifest
    files: list[dict] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def rows_read(self) -> int:
        return sum(f["rows_read"] for f in self.files)

    @property
    def rows_accepted(self) -> int:
        return sum(f["rows_accepted"] for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f["rows_quarantined"] for f in self.files)

    @property
    def file_errors(self) -> list[str]:
        return [f"{f['file']}: {f['error']}" for f in self.files if f["error"]]


def ingest_files(
    files: Iterable[tuple[str, Opener]],
    manifest: RunManifest,
    warehouse: Warehouse,
    *,
    now: datetime | None = None,
) -> IngestReport:
    """Parse every file and replace the run's partitions with the result (idempotent)."""
    report = IngestReport(manifest)
    run_id = manifest.run_id
    window = manifest.window()
    with warehouse.replace_partitions(run_id, INGESTED_TABLES) as writer:
        for name, opener in files:
            accounting = FileAccounting(file=name)
            with opener() as stream:
                for table, frame in iter_file(stream, name, accounting):
                    if table == "requests":
                        frame, rejected = split_by_window(frame, window)
                        writer.write("quarantine", quarantine_rows(rejected, accounting))
                    elif table in UNTIMED_TABLES:
                        # Summaries without timestamps (Locust _stats.csv) describe the run.
                        frame = frame.with_columns(pl.col("ts").fill_null(manifest.started_at))
                    writer.write(table, frame.with_columns(run_id=pl.lit(run_id)))
            report.files.append(accounting.as_dict())
        catalog_row = manifest.to_row() | {
            "ingested_at": now or datetime.now(UTC),
            "valid": True,
            "invalid_reason": None,
        }
        writer.write("runs", pl.DataFrame([catalog_row]))
    report.rows = dict(writer.rows)
    return report


def split_by_window(
    requests: pl.DataFrame, window: tuple[datetime, datetime | None]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows inside the run's window, rows outside it)."""
    start, end = window
    inside = pl.col("ts") >= start
    if end is not None:
        inside &= pl.col("ts") <= end
    mask = requests.select(inside.fill_null(False)).to_series()
    return requests.filter(mask), requests.filter(~mask)


def quarantine_rows(rejected: pl.DataFrame, accounting: FileAccounting) -> pl.DataFrame:
    """Requests outside the run window become quarantine rows; the file's counts follow.

    A request row is one source record in every format, so moving it keeps
    read = accepted + quarantined.
    """
    reason = "ts outside the run window"
    accounting.rows_accepted -= rejected.height
    accounting.rows_quarantined += rejected.height
    if rejected.height:
        accounting.reasons[reason] += rejected.height
    return rejected.select(
        "source_file",
        "line_no",
        reason=pl.lit(reason),
        raw=pl.struct(pl.exclude("run_id")).struct.json_encode().str.slice(0, RAW_EXCERPT_BYTES),
    )


def load_manifest(store: ObjectStore, run_id: str) -> tuple[str, RunManifest]:
    """Find and validate a run's manifest; its run id and suite must match the folder's."""
    suite = store.find_run(run_id)
    if suite is None:
        raise RunNotFoundError(f"no complete upload of run {run_id!r} (no raw/*/{run_id}/run.json)")
    key = f"{store.run_prefix(suite, run_id)}run.json"
    manifest = RunManifest.parse(store.get_bytes(key), source=key)
    if manifest.run_id != run_id or manifest.suite != suite:
        raise ManifestError(
            f"invalid manifest {key}: run_id/suite ({manifest.run_id!r}/{manifest.suite!r}) "
            f"must match the folder raw/{suite}/{run_id}/"
        )
    return key, manifest


def ingest_from_store(
    store: ObjectStore, warehouse: Warehouse, run_id: str, *, now: datetime | None = None
) -> IngestReport:
    """Ingest the upload ``raw/<suite>/<run_id>/`` of ``store``."""
    _, manifest = load_manifest(store, run_id)
    prefix = store.run_prefix(manifest.suite, run_id)
    keys = [info.key for info in store.list(prefix) if is_result_file(info.key)]
    files = [(key.removeprefix(prefix), lambda key=key: store.open(key)) for key in keys]
    return ingest_files(files, manifest, warehouse, now=now)


def ingest_paths(
    paths: Iterable[Path], manifest: RunManifest, warehouse: Warehouse
) -> IngestReport:
    """Ingest local files or folders (backfills, benchmarks) with the same code as the asset."""
    files = []
    for path in paths:
        for file in result_files(Path(path)):
            files.append((file.name, lambda file=file: file.open("rb")))
    return ingest_files(files, manifest, warehouse)


@dataclass
class RunValidation:
    """The table-level verdict on one ingested run."""

    run_id: str
    results: list[ValidationResult]
    problems: list[str]

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_markdown(self) -> str:
        parts = [f"**{r.table}** ({r.rows} rows)\n\n{r.as_markdown()}" for r in self.results]
        if self.problems:
            parts.insert(0, "**Run marked invalid:** " + "; ".join(self.problems))
        return "\n\n".join(parts)


def validate_run(warehouse: Warehouse, manifest: RunManifest) -> RunValidation:
    """Run every table's suite on the run's partition and record the verdict in ``runs``.

    An invalid run keeps its rows (they can be inspected) but is excluded from baselines.
    """
    run_id = manifest.run_id
    results, problems = [], []
    for table in SUITES:
        frame = warehouse.scan(table, [run_id])
        if frame.select(pl.len()).collect().item() == 0:
            continue
        result = validate(table, frame, manifest.window())
        results.append(result)
        problems += [
            f"{table}.{o.column or '*'}: {o.expectation} ({o.unexpected_count} unexpected)"
            for o in result.failures
        ]
    if not any(r.table in {"requests", "interval_stats"} for r in results):
        problems.append("no request or interval data")
    warehouse.write_partition(
        "runs",
        run_id,
        warehouse.read("runs", [run_id]).with_columns(
            valid=pl.lit(not problems),
            invalid_reason=pl.lit("; ".join(problems) or None, pl.String),
        ),
    )
    return RunValidation(run_id, results, problems)
