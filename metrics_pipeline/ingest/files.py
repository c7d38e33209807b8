"""From raw result files to warehouse partitions: the one code path behind the ingest asset and
the ``ingest`` command."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import polars as pl

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.manifest import ManifestError, RunManifest
from metrics_pipeline.contracts.tables import (
    DERIVED_RUN_TABLES,
    INGESTED_TABLES,
    RAW_EXCERPT_BYTES,
    conform,
)
from metrics_pipeline.formats import (
    DEFAULT_LIMITS,
    MANIFEST_NAME,
    MAX_QUARANTINED_SHARE,
    FileAccounting,
    ReadLimits,
    add_fingerprints,
    commonest,
    fingerprint,
    is_result_file,
    iter_file,
    quarantined_rows,
    result_files,
    too_much_quarantined,
    unreadable_files,
)
from metrics_pipeline.ingest.discovery import upload_version
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import ObjectStore
from metrics_pipeline.validation import ValidationResult, validate
from metrics_pipeline.validation.suites import SUITES

# Tables whose rows may lack a timestamp in some formats: they then get the run's start.
UNTIMED_TABLES = ("interval_stats", "events")

NOT_VALIDATED = "not validated yet"
# The quarantine reason of a request outside the run's window (the manifest's start and end).
OUTSIDE_WINDOW = "ts outside the run window"
# The error of a file whose request rows another file of the run holds too.
DUPLICATE_ROWS = "holds the same request rows as"

Opener = Callable[[], AbstractContextManager[BinaryIO]]


class RunNotFoundError(MetricsPipelineError, LookupError):
    """No complete upload (with run.json) exists for a run id."""


@dataclass
class IngestReport:
    manifest: RunManifest
    files: list[dict] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # objects not part of the upload
    version: str | None = None  # the upload's version (None for local files)

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
        """``"file: error"`` of each result file that could not be read whole (which makes
        the run invalid); an empty file or one of no known format is no result file: listed
        in ``files`` with its note, never fatal."""
        return unreadable_files(self.files)

    @property
    def quarantine_problem(self) -> str | None:
        """Why the run cannot be judged on the rows read (None when it can): more than
        ``MAX_QUARANTINED_SHARE`` of them not readable as rows. Requests outside the run's
        window do not count: they were read, and are outside by the manifest's choice."""
        read, quarantined, reasons = quarantined_rows(self.files, ignore=[OUTSIDE_WINDOW])
        if not too_much_quarantined(read, quarantined):
            return None
        return (
            f"{quarantined} of {read} rows quarantined ({quarantined / read:.1%}, more than "
            f"{MAX_QUARANTINED_SHARE:.0%}: {commonest(reasons)}): the rows left out may be "
            "those that matter"
        )

    @property
    def window_problem(self) -> str | None:
        """Why a run whose files held requests has none to judge (None when it has some): every
        one lies outside the window of its manifest (a start or end that is wrong, or the rows
        of another run)."""
        outside = sum(f["reasons"].get(OUTSIDE_WINDOW, 0) for f in self.files)
        if not outside or self.rows.get("requests", 0):
            return None
        start, end = self.manifest.window(skew=timedelta(0))
        until = f"{end:%Y-%m-%d %H:%M:%S}Z" if end else "open"
        return (
            f"all {outside} requests lie outside the run's window, {start:%Y-%m-%d %H:%M:%S}Z "
            f"to {until} (run.json's started_at and finished_at)"
        )


@dataclass(frozen=True)
class UploadRecord:
    """One version of a run's upload: what the ``upload_versions`` table records."""

    version: str
    uploaded_by: str | None
    uploaded_at: datetime
    files: list[tuple[str, int | None]]  # (name, size) of the run's files
    ignored: list[str]  # objects under the prefix that are not part of this upload

    def row(self, run_id: str, ingested_at: datetime) -> dict:
        return {
            "run_id": run_id,
            "version": self.version,
            "uploaded_by": self.uploaded_by,
            "uploaded_at": self.uploaded_at,
            "files": json.dumps([{"name": n, "size": s} for n, s in self.files]),
            "file_count": len(self.files),
            "bytes": sum(s or 0 for _, s in self.files),
            "ingested_at": ingested_at,
        }


def ingest_files(
    files: Iterable[tuple[str, Opener]],
    manifest: RunManifest,
    warehouse: Warehouse,
    *,
    now: datetime | None = None,
    version: UploadRecord | None = None,
    missing: dict[str, str] | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> IngestReport:
    """Parse every file and replace the run's partitions with the result (idempotent); the
    partitions later steps derive from them (``DERIVED_RUN_TABLES``) are emptied.

    ``missing`` names files of the run that cannot be read, with the reason (reported like a
    file that failed to parse); ``version`` is recorded in ``upload_versions``. ``limits``
    bound what one file may cost (``formats.ReadLimits``).
    """
    report = IngestReport(manifest)
    run_id = manifest.run_id
    window = manifest.window()
    now = now or datetime.now(UTC)
    for name, reason in (missing or {}).items():
        report.files.append(FileAccounting(file=name, error=reason).as_dict())
    first_with: dict[tuple[int, int], str] = {}  # request rows' fingerprint -> file
    with warehouse.replace_partitions(run_id, INGESTED_TABLES + DERIVED_RUN_TABLES) as writer:
        for name, opener in files:
            accounting = FileAccounting(file=name)
            requests = (0, 0)  # their fingerprint
            # A file that cannot be opened or read, is truncated or breaks one of ``limits`` gets
            # its error in ``accounting`` (so in report.file_errors) and the other files are
            # read as usual. The rows it gave before it failed are kept and accounted for
            # (read = accepted + quarantined); its error says the rest is missing.
            with ExitStack() as opened:
                try:
                    stream = opened.enter_context(opener())
                except OSError as exc:  # removed since it was listed, no permission
                    accounting.error = f"cannot open: {exc.strerror or exc}"
                else:
                    for table, frame in iter_file(stream, name, accounting, limits):
                        if table == "requests":
                            requests = add_fingerprints(requests, fingerprint(table, frame))
                            frame, rejected = split_by_window(frame, window)
                            writer.write("quarantine", quarantine_rows(rejected, accounting))
                        elif table in UNTIMED_TABLES:
                            # Summaries without timestamps (Locust _stats.csv) describe the run.
                            started = manifest.started_at
                            frame = frame.with_columns(pl.col("ts").fill_null(started))
                        writer.write(table, frame.with_columns(run_id=pl.lit(run_id)))
                        accounting.rows_kept[table] += frame.height
            if requests[0]:
                twin = first_with.setdefault(requests, name)
                if twin != name and accounting.error is None:
                    # A copy, or a file left beside its .gz: every request counted twice.
                    accounting.error = (
                        f"{DUPLICATE_ROWS} {twin}: every request would count twice; upload "
                        "one of them"
                    )
            report.files.append(accounting.as_dict())
        # Fail closed: the run is not usable (as a baseline, in series) until validate_run
        # has passed, whatever path ingested it and whatever fails in between.
        catalog_row = manifest.to_row() | {
            "ingested_at": now,
            "valid": False,
            "invalid_reason": NOT_VALIDATED,
            "upload_version": version and version.version,
        }
        writer.write("runs", pl.DataFrame([catalog_row]))
        if version is not None:
            report.ignored, report.version = version.ignored, version.version
            # The partition is replaced: earlier versions are carried over, this one added.
            earlier = warehouse.read("upload_versions", [run_id])
            writer.write(
                "upload_versions",
                pl.concat(
                    [
                        earlier.filter(pl.col("version") != version.version),
                        conform("upload_versions", pl.DataFrame([version.row(run_id, now)])),
                    ]
                ),
            )
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
    accounting.rows_accepted -= rejected.height
    accounting.rows_quarantined += rejected.height
    if rejected.height:
        accounting.reasons[OUTSIDE_WINDOW] += rejected.height
    return rejected.select(
        "source_file",
        "line_no",
        reason=pl.lit(OUTSIDE_WINDOW),
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
    """Ingest the upload ``raw/<suite>/<run_id>/`` of ``store``.

    The run is the files its manifest lists (a listed file that is absent or has another size
    is reported as unreadable), or every result file under the prefix when the manifest lists
    none; objects left by an earlier upload are ignored and reported.
    """
    _, manifest = load_manifest(store, run_id)
    prefix = store.run_prefix(manifest.suite, run_id)
    objects = list(store.list(prefix))
    present = {info.key.removeprefix(prefix): info for info in objects}
    if manifest.files is None:
        wanted = {name: None for name in present if is_result_file(name)}
    else:
        wanted = {f.name: f.size for f in manifest.files}
    files: list[tuple[str, Opener]] = []
    problems: dict[str, str] = {}
    for name, size in wanted.items():
        info = present.get(name)
        if info is None:
            problems[name] = "listed in run.json but not uploaded"
        elif size is not None and info.size != size:
            problems[name] = f"{info.size} bytes, run.json says {size}: upload incomplete"
        else:
            files.append((name, lambda key=info.key: store.open(key)))
    ignored = sorted(name for name in present if name != MANIFEST_NAME and name not in wanted)
    version = upload_version(objects)
    uploaded_at = datetime.fromtimestamp(max(info.last_modified for info in objects), UTC)
    report = ingest_files(
        files,
        manifest,
        warehouse,
        now=now,
        version=UploadRecord(
            version, manifest.uploaded_by, uploaded_at, list(wanted.items()), ignored
        ),
        missing=problems,
    )
    return report


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


def validate_run(
    warehouse: Warehouse,
    manifest: RunManifest,
    file_errors: Iterable[str] = (),
    problems: Iterable[str] = (),
) -> RunValidation:
    """Run every table's suite on the run's partition and record the verdict in ``runs``.

    An invalid run keeps its rows (they can be inspected) but is excluded from baselines. A
    file that could not be read whole (``file_errors`` of the ingest: damaged, cut short, over
    a limit, or holding another file's requests again) makes the run invalid too: its data is
    incomplete or wrong; so does each of ``problems`` (the ingest's, about the run as a whole:
    ``IngestReport.quarantine_problem``).
    """
    run_id = manifest.run_id
    results = []
    problems = [*(f"file not read whole: {error}" for error in file_errors), *problems]
    for table in SUITES:
        files = warehouse.files(table, [run_id])
        # Parquet footers only: a table the run has no rows of has no suite to meet.
        if not files or warehouse.scan(table, [run_id]).select(pl.len()).collect().item() == 0:
            continue
        result = validate(table, files, manifest.window(), warehouse.filesystem)
        results.append(result)
        problems += [
            f"{table}.{o.column or '*'}: {o.expectation} "
            + (f"(not computed: {o.error})" if o.error else f"({o.unexpected_count} unexpected)")
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
