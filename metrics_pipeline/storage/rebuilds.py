"""What a warehouse rebuild keeps beside the warehouse: its lock, the folder it builds, the old
folder it moves aside and its Postgres schema; and what rebuilds that died left of them.

The rebuild itself (``orchestration.rebuild``) runs the pipeline's jobs; this is the part
``metrics-pipeline check`` needs too, without Dagster.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage.postgres import PostgresWarehouse

# What a rebuild names beside the warehouse, by its tag of 8 hex digits: the folder it builds
# (``warehouse.rebuild-<tag>``), the old folder moved aside at the swap (``warehouse.old-<tag>``)
# and its Postgres schema (``metrics_rebuild_<tag>``).
BUILDING, OLD, SCHEMA = ".rebuild-", ".old-", "_rebuild_"
# The folder, inside the one it builds, where a rebuild writes the runs' reports.
REPORTS = "_reports"


class RebuildRunningError(MetricsPipelineError, RuntimeError):
    """Another rebuild of the same warehouse holds the lock."""


@dataclass(frozen=True)
class DeadRebuilds:
    """The folders and Postgres schemas of rebuilds that did not end (a process killed)."""

    folders: list[Path]
    schemas: list[str]

    def __len__(self) -> int:
        return len(self.folders) + len(self.schemas)

    def names(self) -> list[str]:
        return [str(folder) for folder in self.folders] + [
            f"Postgres schema {schema}" for schema in self.schemas
        ]


def lock_file(target: Path) -> Path:
    """The rebuild lock of the warehouse folder ``target``: beside it, as the swap renames it."""
    return target.with_name(f"{target.name}.rebuild.lock")


@contextlib.contextmanager
def one_rebuild(target: Path) -> Iterator[None]:
    """Hold the rebuild lock of the warehouse folder ``target``, or raise
    :class:`RebuildRunningError`."""
    lock = lock_file(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildRunningError(f"another rebuild of {target} is running") from None
        yield  # closing the file releases the lock


def dead_rebuilds(settings: Settings) -> DeadRebuilds:
    """What rebuilds of the configured warehouse left; only meaningful under
    :func:`one_rebuild` (a running rebuild's folder and schema look the same)."""
    target = settings.warehouse_root
    name = glob.escape(target.name)
    folders = sorted(
        folder
        for pattern in (f"{name}{BUILDING}*", f"{name}{OLD}*")
        for folder in target.parent.glob(pattern)
        if folder.is_dir()
    )
    schemas: list[str] = []
    if settings.postgres_url:
        import psycopg

        built = f"^{re.escape(settings.postgres_schema + SCHEMA)}[0-9a-f]{{8}}$"
        with psycopg.connect(settings.postgres_url) as con:
            rows = con.execute(
                "select nspname from pg_namespace where nspname ~ %s order by 1", (built,)
            )
            schemas = [schema for (schema,) in rows]
    return DeadRebuilds(folders, schemas)


def remove_dead_rebuilds(settings: Settings, dead: DeadRebuilds) -> None:
    """Remove ``dead`` (from :func:`dead_rebuilds` under the same lock)."""
    for folder in dead.folders:
        shutil.rmtree(folder, ignore_errors=True)
    for schema in dead.schemas:
        assert settings.postgres_url is not None  # listed only with one
        PostgresWarehouse(settings.postgres_url, schema).drop_schema()
