"""Retention's trash: the partitions a retention pass took out, kept for a grace period and
restorable until then.

One folder per pass, named after the pass's time::

    <warehouse root>/.trash-retention/<UTC time>-<token>/<table>/run_id=<id>/part-*.parquet

It lies outside every ``<root>/<table>/`` folder, so ``Warehouse.files``, ``run_ids`` and the
DuckDB views (which glob ``<root>/<table>/run_id=*``) never see it, and apart from the
Warehouse's own ``.trash/`` (a swap's leftovers, removed at once) and ``.staging/``. The time in
the name is the caller's clock, not the files' times: the grace period counts on the same clock
as retention's ages, and tests inject it. A rebuild swaps in a new warehouse folder and so drops
the trash with the old one (the bucket holds every run anyway).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.contracts.manifest import check_name
from metrics_pipeline.storage.warehouse import PARTITION_KEY, Warehouse

TRASH_FOLDER = ".trash-retention"
# Sorts in time order, and has no "-": the pass folder is "<time>-<token>".
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class TrashedPartition:
    """One partition in the trash: its table, run, the time of the pass that took it, and
    where its files are."""

    table: str
    run_id: str
    trashed_at: datetime
    path: Path


@dataclass(frozen=True)
class Restored:
    """What :meth:`RetentionTrash.restore` brought back, and what it left in the trash
    because the warehouse holds that partition again (a newer ingest wins) or a newer pass
    trashed it too."""

    restored: list[TrashedPartition]
    left: list[TrashedPartition]


class RetentionTrash:
    """The trash of ``warehouse`` (folder :data:`TRASH_FOLDER` under its root)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.root = warehouse.root / TRASH_FOLDER

    def trash(self, partitions: Iterable[tuple[str, str]], at: datetime) -> list[TrashedPartition]:
        """Take ``partitions`` (``(table, run_id)``, in the order given) out of the warehouse,
        Parquet and mirror, into one new pass folder stamped ``at``; absent ones are skipped.

        Each partition's files are linked into the trash first (a copy where the file system
        cannot link), then the Warehouse deletes the partition its own way (Parquet and mirror
        together, under its locks). A crash in between leaves the partition in place and a spare
        copy in the trash: the next pass takes it again, and the copy is purged in time.
        """
        at = as_utc(at)
        folder = self.root / f"{at.strftime(STAMP_FORMAT)}-{uuid.uuid4().hex[:8]}"
        trashed = []
        for table, run_id in partitions:
            source = self.warehouse.partition_dir(table, run_id)
            if not source.is_dir():
                continue
            target = folder / table / source.name
            # Parquet files are never changed in place (a rewrite swaps in a new folder), so a
            # hard link is as good as a copy and costs no space or time.
            shutil.copytree(source, target, copy_function=_link_or_copy)
            self.warehouse.delete_partition(table, run_id)
            trashed.append(TrashedPartition(table, run_id, at, target))
        return trashed

    def entries(self, run_id: str | None = None) -> list[TrashedPartition]:
        """Every partition in the trash (only ``run_id``'s when given), oldest pass first."""
        return [
            entry
            for folder, at in self._passes()
            for entry in _held(folder, at)
            if run_id is None or entry.run_id == run_id
        ]

    def restore(self, run_id: str) -> Restored:
        """Move ``run_id``'s partitions back into the warehouse (Parquet and mirror); the newest
        pass's copy of a table wins.

        A table whose partition the warehouse holds again (the run was ingested anew) is left in
        the trash: newer data is never overwritten. The ``runs`` catalog row comes back last,
        so a restore cut short leaves no catalog row pointing at missing data; running it again
        finishes it.
        """
        check_name(run_id)
        entries = sorted(
            self.entries(run_id),
            key=lambda e: (e.table == "runs", -e.trashed_at.timestamp()),
        )
        restored: list[TrashedPartition] = []
        left: list[TrashedPartition] = []
        for entry in entries:
            target = self.warehouse.partition_dir(entry.table, run_id)
            if target.exists():
                left.append(entry)
                continue
            # Published like any partition: Parquet and mirror together, under the run's locks.
            self.warehouse.publish(run_id, {entry.table: entry.path})
            restored.append(entry)
        self._remove_empty_folders()
        return Restored(restored, left)

    def purge(self, now: datetime, grace: timedelta) -> list[TrashedPartition]:
        """Delete the passes older than ``grace`` at ``now``; what they held.

        A pass stamped after ``now`` (a clock that went back) is kept: it is not old.
        """
        cutoff = as_utc(now) - grace
        purged = []
        for folder, at in self._passes():
            if at < cutoff:
                purged += _held(folder, at)
                shutil.rmtree(folder)
        return purged

    def expired(self, now: datetime, grace: timedelta) -> list[TrashedPartition]:
        """The partitions :meth:`purge` would delete."""
        cutoff = as_utc(now) - grace
        return [
            entry for folder, at in self._passes() if at < cutoff for entry in _held(folder, at)
        ]

    def _passes(self) -> list[tuple[Path, datetime]]:
        """The pass folders and their times, oldest first; folders not named by
        :meth:`trash` are none of ours and left alone."""
        if not self.root.is_dir():
            return []
        passes = []
        for folder in sorted(self.root.iterdir()):
            at = _stamp_time(folder.name)
            if folder.is_dir() and at is not None:
                passes.append((folder, at))
        return passes

    def _remove_empty_folders(self) -> None:
        for folder, _ in self._passes():
            for table in folder.iterdir():
                if table.is_dir() and not any(table.iterdir()):
                    table.rmdir()
            if not any(folder.iterdir()):
                folder.rmdir()


def _held(folder: Path, at: datetime) -> list[TrashedPartition]:
    """The partitions in one pass folder."""
    return [
        TrashedPartition(path.parent.name, path.name.removeprefix(f"{PARTITION_KEY}="), at, path)
        for path in sorted(folder.glob(f"*/{PARTITION_KEY}=*"))
    ]


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
