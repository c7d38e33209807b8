"""Retention's trash: the partitions a retention pass took out, kept for a grace period and
restorable until then.

One folder per pass, named after the pass's time, where the warehouse keeps its files
(:meth:`Warehouse.private_folder`)::

    local folder  <root>/.trash-retention/<UTC time>-<token>/<table>/run_id=<id>/part-*.parquet
    object store  <bucket>/<prefix>/_trash-retention/<UTC time>-<token>/<table>/run_id=<id>/...

The trash works on the warehouse's pyarrow file system, so both take one code path. A local
folder lies outside every ``<root>/<table>/`` folder, so ``Warehouse.files``, ``run_ids`` and the
DuckDB views (which glob ``<root>/<table>/run_id=*``) never see it, and apart from the
Warehouse's own ``.trash/`` (a swap's leftovers, removed at once) and ``.staging/``; its files
are hard links of the partition's. In the object store readers list only the manifests' keys,
so the prefix is unseen too; its objects are server-side copies of the partition's, and every
host sharing the bucket sees the same trash.

A partition is copied into the trash, then deleted by the warehouse (Parquet and mirror); it is
restored by bringing its files into a local staging folder under the warehouse's ``root`` and
publishing them like any partition, then removing them from the trash. The time in the name is
the caller's clock, not the files' times: the grace period counts on the same clock as
retention's ages, and tests inject it. A rebuild swaps in a new warehouse folder and so drops a
local trash with the old one (the bucket holds every run anyway).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs

from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.contracts.manifest import check_name
from metrics_pipeline.contracts.tables import SNAPSHOT_TABLES
from metrics_pipeline.storage.warehouse import PARTITION_KEY, STAGING_DIR, Warehouse

TRASH_FOLDER = ".trash-retention"
# Sorts in time order, and has no "-": the pass folder is "<time>-<token>".
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class TrashedPartition:
    """One partition in the trash: its table, run, the time of the pass that took it, and
    where its files are (a folder of :attr:`RetentionTrash.fs`: a local path, or
    ``bucket/key-prefix`` in the object store)."""

    table: str
    run_id: str
    trashed_at: datetime
    path: str


@dataclass(frozen=True)
class Restored:
    """What :meth:`RetentionTrash.restore` brought back, and what it left in the trash
    because the warehouse holds that partition again (a newer ingest wins) or a newer pass
    trashed it too."""

    restored: list[TrashedPartition]
    left: list[TrashedPartition]


class RetentionTrash:
    """The trash of ``warehouse``: folder :data:`TRASH_FOLDER` of its own, in the file system
    ``fs`` under the path ``root`` (see the module docstring)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.fs, self.root = warehouse.private_folder(TRASH_FOLDER)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def trash(self, partitions: Iterable[tuple[str, str]], at: datetime) -> list[TrashedPartition]:
        """Take ``partitions`` (``(table, run_id)``, in the order given) out of the warehouse,
        Parquet and mirror, into one new pass folder stamped ``at``; absent ones are skipped.

        Each partition's files are linked into the trash first (a copy where the file system
        cannot link; a server-side copy in an object store), then the Warehouse deletes the
        partition its own way (Parquet and mirror together, under its locks), if it still has
        those files: a run ingested again meanwhile keeps its new partition, and the copy goes.
        A crash in between leaves the partition in place and a spare copy in the trash: the
        next pass takes it again, and the copy is purged in time.
        """
        at = as_utc(at)
        folder = f"{self.root}/{at.strftime(STAMP_FORMAT)}-{uuid.uuid4().hex[:8]}"
        trashed = []
        for table, run_id in partitions:
            check_name(run_id)  # it names a folder of the trash
            if table in SNAPSHOT_TABLES:  # whole-table snapshots have no run partitions
                continue
            # The warehouse's current files: a local folder's, or the manifest's keys (an
            # object store also holds unpublished and replaced objects under the same prefix).
            current = self.warehouse.files(table, [run_id])
            if not current:
                continue
            target = f"{folder}/{table}/{PARTITION_KEY}={run_id}"
            for file in map(_fs_path, current):
                self._copy(file, f"{target}/{posixpath.basename(file)}")
            if not self.warehouse.delete_partition(table, run_id, files=current):
                self.fs.delete_dir(target)
                continue
            trashed.append(TrashedPartition(table, run_id, at, target))
        return trashed

    def entries(self, run_id: str | None = None) -> list[TrashedPartition]:
        """Every partition in the trash (only ``run_id``'s when given), oldest pass first."""
        return [
            entry
            for _, _, held in self._passes()
            for entry in held
            if run_id is None or entry.run_id == run_id
        ]

    def restore(self, run_id: str) -> Restored:
        """Move ``run_id``'s partitions back into the warehouse (Parquet and mirror); the newest
        pass's copy of a table wins.

        A table whose partition the warehouse holds again is left in the trash: newer data is
        never overwritten. So is every partition trashed before the run was last ingested
        (``runs.ingested_at``): that version replaced the one in the trash whole, including
        the tables it has no rows of. The ``runs`` catalog row comes back last,
        so a restore cut short leaves no catalog row pointing at missing data; running it again
        finishes it (a partition published but not yet removed from the trash is then held
        again, and left).
        """
        check_name(run_id)
        entries = sorted(
            self.entries(run_id),
            key=lambda e: (e.table == "runs", -e.trashed_at.timestamp()),
        )
        restored: list[TrashedPartition] = []
        left: list[TrashedPartition] = []
        catalog = self.warehouse.read("runs", [run_id])["ingested_at"].drop_nulls()
        ingested = catalog.max() if len(catalog) else None
        for entry in entries:
            if run_id in self.warehouse.run_ids(entry.table) or (
                ingested is not None and ingested > entry.trashed_at
            ):
                left.append(entry)
                continue
            # Published like any partition: Parquet and mirror together, under the run's locks.
            # The warehouse publishes a local folder (the object store uploads it anew).
            staging = self.warehouse.root / STAGING_DIR / f"restore-{uuid.uuid4().hex}"
            try:
                for file in self._files(entry.path):
                    self._copy(file, (staging / posixpath.basename(file)).as_posix(), out=True)
                # Into an empty place only, checked under the run's lock: an ingest that
                # landed since the check above wins.
                published = self.warehouse.publish(
                    run_id, {entry.table: staging}, unchanged={entry.table: []}
                )
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            if not published:
                left.append(entry)
                continue
            self.fs.delete_dir(entry.path)
            restored.append(entry)
        for folder, _, held in self._passes():
            if not held:
                self.fs.delete_dir(folder)
        return Restored(restored, left)

    def purge(self, now: datetime, grace: timedelta) -> list[TrashedPartition]:
        """Delete the passes older than ``grace`` at ``now``; what they held.

        A pass stamped after ``now`` (a clock that went back) is kept: it is not old.
        """
        cutoff = as_utc(now) - grace
        purged = []
        for folder, at, held in self._passes():
            if at < cutoff:
                purged += held
                self.fs.delete_dir(folder)
        return purged

    def expired(self, now: datetime, grace: timedelta) -> list[TrashedPartition]:
        """The partitions :meth:`purge` would delete."""
        cutoff = as_utc(now) - grace
        return [entry for _, at, held in self._passes() if at < cutoff for entry in held]

    def _passes(self) -> list[tuple[str, datetime, list[TrashedPartition]]]:
        """The pass folders, their times and the partitions they hold, oldest first (one
        listing); folders not named by :meth:`trash` are none of ours and left alone.

        A pass may hold no partition: emptied by a restore, or only the empty "folder" objects
        an object store's file system leaves behind when it deletes the last file of one.
        """
        listing = self.fs.get_file_info(
            pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        )
        passes: dict[str, set[tuple[str, str]]] = {}
        for info in listing:
            parts = info.path[len(self.root) + 1 :].split("/")
            if len(parts) == 1 and info.type != pafs.FileType.Directory:
                continue
            held = passes.setdefault(parts[0], set())
            # <pass>/<table>/run_id=<id>/<file>: a partition holds at least one file.
            partition = len(parts) == 4 and parts[2].startswith(f"{PARTITION_KEY}=")
            if partition and info.type == pafs.FileType.File:
                held.add((parts[1], parts[2].removeprefix(f"{PARTITION_KEY}=")))
        found = []
        for name in sorted(passes):
            at = _stamp_time(name)
            if at is None:
                continue
            folder = f"{self.root}/{name}"
            held = [
                TrashedPartition(table, run_id, at, f"{folder}/{table}/{PARTITION_KEY}={run_id}")
                for table, run_id in sorted(passes[name])
            ]
            found.append((folder, at, held))
        return found

    def _files(self, folder: str) -> list[str]:
        """The files of one trashed partition, in name order."""
        listing = self.fs.get_file_info(pafs.FileSelector(folder))
        return sorted(info.path for info in listing if info.type == pafs.FileType.File)

    def _copy(self, source: str, target: str, *, out: bool = False) -> None:
        """Copy one file into the trash, or ``out`` of it into a local staging folder."""
        if self.local or out:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        if self.local:
            # Parquet files are never changed in place (a rewrite swaps in a new folder), so a
            # hard link is as good as a copy and costs no space or time.
            _link_or_copy(source, target)
        elif out:
            pafs.copy_files(
                source,
                target,
                source_filesystem=self.fs,
                destination_filesystem=pafs.LocalFileSystem(),
            )
        else:
            # Within the bucket: the store copies it, nothing passes through this host.
            self.fs.copy_file(source, target)


def _fs_path(file: str | Path) -> str:
    """A file of ``Warehouse.files`` as its file system's path: an object store's ``s3://``
    URL is ``bucket/key`` there."""
    return str(file).removeprefix("s3://")


def _stamp_time(name: str) -> datetime | None:
    stamp, _, _ = name.partition("-")
    try:
        return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
