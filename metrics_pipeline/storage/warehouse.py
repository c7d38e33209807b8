"""Hive-partitioned Parquet tables (``<table>/run_id=<id>/part-*.parquet``) and DuckDB views.

Every run partition is written to a staging folder and swapped into place when the writer
commits, so re-running a partition replaces it (no duplicates) and readers never see half of
one. The run id lives in the folder name only, as hive partitioning expects.

With a Postgres mirror, a partition is published in this order: open a transaction holding the
run's advisory lock, replace the rows of every table, swap the Parquet folders, commit. A
failure before the swap leaves both stores old; a failure between the swap and the commit (the
database gone at that instant) leaves a marker in ``.pending/`` that ``storage.integrity``
reports and repairs, and that the next publication of the run clears. Publishers of one run
also take a file lock, so two ingests on one machine take turns without a database too.
"""

from __future__ import annotations

import fcntl
import functools
import json
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from metrics_pipeline.contracts.manifest import check_name
from metrics_pipeline.contracts.tables import (
    SCHEMAS,
    SEQUENTIAL_COLUMNS,
    SNAPSHOT_TABLES,
    conform,
    empty,
)
from metrics_pipeline.storage.postgres import PostgresWarehouse
from metrics_pipeline.storage.sql_models import Model, run_duckdb, run_postgres

PARTITION_KEY = "run_id"
CATALOG_FILE = "warehouse.duckdb"
SNAPSHOT_FILE = "data.parquet"
PENDING_DIR = ".pending"
STAGING_DIR = ".staging"
# Leftovers of interrupted writes younger than this may belong to a write under way.
LEFTOVER_AGE_S = 24 * 3600.0
# Reads of a table that a concurrent publication changed under them, tried again (each swap is
# a couple of renames: two writers of one run in a row make at most a few).
READ_ATTEMPTS = 5


def encodings(schema: pa.Schema) -> dict:
    """``ParquetWriter`` options per column: rising columns (``SEQUENTIAL_COLUMNS``) as deltas,
    floating-point measurements plain, the rest (names, codes, flags) as dictionaries.

    Measured on 6.9 M requests (bench/README.md, "Parquet encodings"): deltas store line
    numbers in 0.1 MB instead of 20 and timestamps in 10 MB instead of 27; latencies rarely
    repeat, so a dictionary cost a third more CPU for the same bytes. The file is half the size
    and written in 60 % of the CPU time; every reader here (DuckDB, polars, Arrow) reads it.
    """
    sequential = [
        field.name
        for field in schema
        if field.name in SEQUENTIAL_COLUMNS
        and (pa.types.is_integer(field.type) or pa.types.is_timestamp(field.type))
    ]
    plain = [field.name for field in schema if pa.types.is_floating(field.type)]
    return {
        "use_dictionary": [
            field.name for field in schema if field.name not in {*sequential, *plain}
        ],
        "column_encoding": dict.fromkeys(sequential, "DELTA_BINARY_PACKED")
        | dict.fromkeys(plain, "PLAIN"),
    }


class PartitionChanged(Exception):
    """A conditional publication found the partition changed by another writer (see
    :meth:`Warehouse.publish`)."""


class PartitionWriter:
    """Streams batches of several tables of one run partition into staging Parquet files."""

    def __init__(self, staging: Path, run_id: str):
        self.staging = staging
        self.run_id = run_id
        self.rows: dict[str, int] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def write(self, table: str, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        data = conform(table, frame).drop(PARTITION_KEY).to_arrow()
        writer = self._writers.get(table)
        if writer is None:
            folder = self.staging / table
            folder.mkdir(parents=True)
            # A name of its own per publication: a reader that saw a partition's files can
            # tell they were replaced (Warehouse.publish's ``unchanged``).
            writer = pq.ParquetWriter(
                folder / f"part-{uuid.uuid4().hex[:16]}.parquet",
                data.schema,
                compression="zstd",
                **encodings(data.schema),
            )
            self._writers[table] = writer
        writer.write_table(data)
        self.rows[table] = self.rows.get(table, 0) + frame.height

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class Warehouse:
    """The embedded warehouse under ``root``: Parquet files plus a DuckDB catalog of views.

    With a ``mirror`` (the Postgres warehouse), every committed partition and snapshot is also
    replaced there, so both hold the same rows.
    """

    def __init__(self, root: str | Path, mirror: PostgresWarehouse | None = None):
        self.root = Path(root)
        self.mirror = mirror
        if mirror is not None:
            _migrate_once(mirror)

    def partition_dir(self, table: str, run_id: str) -> Path:
        return self.root / table / f"{PARTITION_KEY}={check_name(run_id)}"

    def private_folder(self, name: str) -> tuple[pafs.FileSystem, str]:
        r"""Where the warehouse's own folder ``name`` is, beside the tables' files.

        No reader lists it: retention's trash keeps its passes there (``storage.trash``).

        Parameters
        ----------
        name
            The folder's name in the local layout, a dot-name as ``.pending``.

        Returns
        -------
        tuple[pyarrow.fs.FileSystem, str]
            The file system of the tables' files and the folder's path in it (here an
            absolute local path; ``storage.object_warehouse``: ``bucket/prefix/_name``).
        """
        return pafs.LocalFileSystem(), (self.root / name).absolute().as_posix()

    @contextmanager
    def replace_partitions(self, run_id: str, tables: Iterable[str]) -> Iterator[PartitionWriter]:
        """Replace the ``run_id`` partition of every table in ``tables`` with what is written.

        A table that receives no rows ends up with an empty partition (its old rows removed).
        On an exception nothing is replaced.
        """
        check_name(run_id)  # before anything is written: the id names folders
        tables = list(tables)
        staging = self.root / STAGING_DIR / f"{run_id}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        writer = PartitionWriter(staging, run_id)
        try:
            yield writer
            writer.close()
            self.publish(run_id, {table: staging / table for table in tables})
        finally:
            writer.close()
            shutil.rmtree(staging, ignore_errors=True)

    def write_partition(self, table: str, run_id: str, frame: pl.DataFrame) -> int:
        with self.replace_partitions(run_id, [table]) as writer:
            writer.write(table, frame)
        return frame.height

    def publish(
        self,
        run_id: str,
        folders: dict[str, Path],
        unchanged: dict[str, list[str]] | None = None,
    ) -> bool:
        """Move each table's folder of Parquet files (absent: no rows) into place as the run's
        partition, and replace the mirror's rows in the same step (see the module docstring for
        the order). The folders are consumed.

        With ``unchanged`` (table -> :meth:`files` of the run, as the caller saw them), only if
        the run's partitions of those tables still have exactly those files, checked under the
        run's lock: a caller that read a partition and decided from it (retention moving it to
        its trash, a restore into an empty place) does not undo a publication made meanwhile.
        Returns whether it published. (An object store checks the condition again at each
        table's swap: give it for one table at a time.)
        """
        with self._folder_lock(f"run={run_id}"):
            if unchanged and any(
                sorted(self.files(table, [run_id])) != sorted(files)
                for table, files in unchanged.items()
            ):
                return False
            # The catalog row first: an ingest writes it "not validated yet", so a publication
            # cut between two tables leaves the run failing closed (no verdict, no baseline)
            # until it is published again, never valid beside another version's rows.
            staged = {
                table: self._stage(table, run_id, folders[table])
                for table in sorted(folders, key=lambda table: table != "runs")
            }
            expected = unchanged or {}
            marker = f"run={run_id}"
            if self.mirror is None:
                # The tables are swapped one by one: the marker lets `check` name a
                # publication a crash cut midway (the next one of the run clears it).
                self._mark_pending(marker, list(folders))
                try:
                    for table, files in staged.items():
                        self._put(table, run_id, files, expected.get(table))
                except PartitionChanged:
                    self.clear_pending(marker)
                    for files in staged.values():
                        self._discard(files)
                    return False
                self.clear_pending(marker)
                return True
            frames = {
                table: _read_folder(folder).with_columns(run_id=pl.lit(run_id))
                if folder.exists()
                else None
                for table, folder in folders.items()
            }
            try:
                with self.mirror.transaction(marker) as con:
                    self.mirror.replace_partitions(run_id, frames, con)
                    self._mark_pending(marker, list(folders))
                    for table, files in staged.items():
                        self._put(table, run_id, files, expected.get(table))
            except PartitionChanged:  # the mirror rolled back; nothing was swapped
                self.clear_pending(marker)
                for files in staged.values():
                    self._discard(files)
                return False
            # Only now: a fault after the swap (the COMMIT cut) leaves the marker for `check`.
            self.clear_pending(marker)
        return True

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock on ``name`` among the processes sharing this folder and, with a
        Postgres mirror, among every process writing to it, on any host (an advisory lock,
        :meth:`PostgresWarehouse.session_lock`): for read-change-write of shared tables
        (alerts, triage marks)."""
        with self._folder_lock(name):
            if self.mirror is None:
                yield
            else:
                with self.mirror.session_lock(name):
                    yield

    @contextmanager
    def _folder_lock(self, name: str) -> Iterator[None]:
        """A lock file of this folder: the swap of a partition's folders. (Their Postgres side
        is serialised by the transaction's own advisory lock.)"""
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{name}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _mark_pending(self, marker: str, tables: list[str]) -> None:
        folder = self.root / PENDING_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{marker}.json").write_text(json.dumps(tables))

    def clear_pending(self, marker: str) -> None:
        (self.root / PENDING_DIR / f"{marker}.json").unlink(missing_ok=True)

    def pending(self) -> dict[str, list[str]]:
        """Publications whose Parquet side was swapped but whose mirror commit was not seen:
        ``{"run=<id>" or "snapshot=<table>": [tables]}``."""
        folder = self.root / PENDING_DIR
        if not folder.exists():
            return {}
        return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}

    # Publishing is two steps so that the slow one can happen before the mirror's transaction:
    # ``_stage`` brings a folder's files where ``_put`` can make them the data at once (here
    # they already are), ``_put`` makes them the run's partition (``run_id`` None: the table's
    # snapshot). ``storage.object_warehouse`` uploads in the first and swaps a manifest in the
    # second.

    def _stage(self, table: str, run_id: str | None, folder: Path) -> Path:
        return folder

    def _put(
        self, table: str, run_id: str | None, staged: Path, expected: list[str] | None = None
    ) -> None:
        # ``expected`` was checked under the run's lock in ``publish``, which covers every
        # writer of a local folder; an object store checks it again at its manifest's swap.
        self._swap(
            staged, self.root / table if run_id is None else self.partition_dir(table, run_id)
        )

    def _discard(self, staged: Path) -> None:
        """What a refused publication staged: here the caller's folder, which it removes."""

    def _swap(self, new: Path, target: Path) -> None:
        # rename() is atomic per folder; the old partition is moved aside first so a reader sees
        # either the old or the new files, and a crash leaves at worst a trash folder behind.
        trash = self.root / ".trash" / uuid.uuid4().hex
        if target.exists():
            trash.parent.mkdir(parents=True, exist_ok=True)
            target.rename(trash)
        if new.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            new.rename(target)
        shutil.rmtree(trash, ignore_errors=True)

    def write_snapshot(self, table: str, frame: pl.DataFrame) -> int:
        """Replace a whole-table snapshot (the nightly and weekly analyses' outputs)."""
        folder = self.root / STAGING_DIR / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            conform(table, frame).write_parquet(folder / SNAPSHOT_FILE, compression="zstd")
            marker = f"snapshot={table}"
            with self._folder_lock(marker):
                staged = self._stage(table, None, folder)
                if self.mirror is None:
                    self._put(table, None, staged)
                    return frame.height
                with self.mirror.transaction(marker) as con:
                    self.mirror.replace_snapshot(table, frame, con)
                    self._mark_pending(marker, [table])
                    self._put(table, None, staged)
                self.clear_pending(marker)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return frame.height

    def delete_partition(self, table: str, run_id: str, files: list[str] | None = None) -> bool:
        """Delete the run's partition of ``table``; with ``files``, only if those are still
        its files (see :meth:`publish`). Returns whether it deleted."""
        unchanged = None if files is None else {table: files}
        return self.publish(run_id, {table: self.root / ".nothing"}, unchanged)

    def leftovers(
        self, older_than_s: float = LEFTOVER_AGE_S, now_s: float | None = None
    ) -> list[str]:
        r"""What interrupted writes left behind and nothing reads, older than ``older_than_s``
        at ``now_s`` (default: the wall clock; the files' times are the wall clock's).

        A publication killed before its swap leaves its staging folder (``.staging/``), one
        killed inside the swap the old partition moved aside (``.trash/``). Younger ones may
        belong to a write under way.
        """
        cutoff = (time.time() if now_s is None else now_s) - older_than_s
        return [
            str(entry)
            for folder in (self.root / STAGING_DIR, self.root / ".trash")
            if folder.is_dir()
            for entry in sorted(folder.iterdir())
            if entry.stat().st_mtime < cutoff
        ]

    def remove_leftovers(self, leftovers: Iterable[str]) -> None:
        """Remove what :meth:`leftovers` listed."""
        for entry in map(Path, leftovers):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    # Where the files are and how readers reach them: a local folder here; an object store
    # in ``storage.object_warehouse`` (URLs, a filesystem registered in DuckDB, polars options).
    filesystem = None  # an fsspec filesystem DuckDB reads the files through (local: none)
    storage_options: dict[str, str] | None = None  # polars' options for reading the files

    def files(self, table: str, run_ids: Iterable[str] | None = None) -> list[Path]:
        if table in SNAPSHOT_TABLES:
            snapshot = self.root / table / SNAPSHOT_FILE
            return [snapshot] if snapshot.exists() else []
        if run_ids is None:
            return sorted((self.root / table).glob(f"{PARTITION_KEY}=*/*.parquet"))
        return sorted(
            file
            for run_id in dict.fromkeys(run_ids)
            for file in self.partition_dir(table, run_id).glob("*.parquet")
        )

    def scan(self, table: str, run_ids: Iterable[str] | None = None) -> pl.LazyFrame:
        """Lazy frame of ``table`` (optionally only some runs), in the table's schema."""
        files = self.files(table, run_ids)
        if not files:
            return empty(table).lazy()
        schema = SCHEMAS[table]
        if table in SNAPSHOT_TABLES:
            return pl.scan_parquet(
                files,
                schema=dict(schema),
                missing_columns="insert",
                storage_options=self.storage_options,
            )
        return pl.scan_parquet(
            files,
            storage_options=self.storage_options,
            hive_partitioning=True,
            hive_schema={PARTITION_KEY: pl.String},
            schema={k: v for k, v in schema.items() if k != PARTITION_KEY},
            missing_columns="insert",
        ).select(list(schema.names()))

    def read(self, table: str, run_ids: Iterable[str] | None = None) -> pl.DataFrame:
        # Another writer may publish a partition between the listing of its files and their
        # reading (the swap moves the old files aside): then they are listed again.
        for _ in range(READ_ATTEMPTS - 1):
            with suppress(FileNotFoundError):
                return self.scan(table, run_ids).collect()
        return self.scan(table, run_ids).collect()

    def run_ids(self, table: str) -> list[str]:
        folder = self.root / table
        if not folder.exists():
            return []
        prefix = f"{PARTITION_KEY}="
        return sorted(p.name.removeprefix(prefix) for p in folder.glob(f"{prefix}*"))

    def _view_sql(self) -> list[str]:
        statements = []
        for table in SCHEMAS:
            files = self.files(table)
            if not files:
                # A view over no files fails when queried: a table without data yet is an
                # empty view of its schema, so every documented table can be queried.
                statements.append(f"create or replace view {table} as {_empty_select(table)}")
                continue
            if table in SNAPSHOT_TABLES:
                statements.append(
                    f"create or replace view {table} as select * from read_parquet('{files[0]}')"
                )
                continue
            statements.append(
                f"create or replace view {table} as select * from read_parquet("
                f"{self._partition_files_sql(table, files)}, hive_partitioning = true, "
                f"union_by_name = true, hive_types = {{'{PARTITION_KEY}': varchar}})"
            )
        return statements

    def _partition_files_sql(self, table: str, files: list) -> str:
        # A glob: the view also sees partitions published after the catalog was refreshed.
        return "'" + (self.root / table / f"{PARTITION_KEY}=*" / "*.parquet").as_posix() + "'"

    def _attach(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """``con`` able to read the warehouse's files (local: as it is)."""
        return con

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per table (empty until it has data)."""
        con = self._attach(duckdb.connect())
        for statement in self._view_sql():
            con.execute(statement)
        return con

    def build_marts(self, models: list[Model], attempts: int = 20) -> dict[str, int]:
        """Run the SQL models into the DuckDB catalog (and the Postgres mirror); rows per mart."""
        rows = self._with_catalog(lambda con: run_duckdb(con, models), attempts)
        if self.mirror is not None:
            run_postgres(self.mirror.url, self.mirror.schema, models)
        return rows

    def refresh_catalog(self, attempts: int = 20) -> Path:
        """(Re)create the views in ``warehouse.duckdb`` for people and tools to open."""
        self._with_catalog(lambda con: None, attempts)
        return self.root / CATALOG_FILE

    def open_catalog(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """A connection for people and tools: every table a view, and the SQL marts.

        ``read_only``: an in-memory database with the views (:meth:`connect`) and a copy of the
        marts, read from the catalog file under a read-only attach held only while copying. A
        session kept open (a ``metrics-pipeline sql`` shell) then holds no lock on the file:
        DuckDB lets one process write a database file only while no other has it open, and
        the pipeline refreshes the catalog after every partition and builds the marts in it.
        Otherwise the catalog file itself, writable.
        """
        if not read_only:
            return self._attach(duckdb.connect(str(self.root / CATALOG_FILE)))
        con = self.connect()
        if (self.root / CATALOG_FILE).exists():
            self._copy_marts(con)
        return con

    def _copy_marts(self, con: duckdb.DuckDBPyConnection, attempts: int = 20) -> None:
        """Copy the catalog file's tables (the marts) into ``con``, and define its other views
        (the models' staging and intermediate steps) there again; retried while a writer holds
        the file (a refresh takes a moment)."""
        path = str(self.root / CATALOG_FILE).replace("'", "''")
        for attempt in range(attempts):
            try:
                con.execute(f"attach '{path}' as catalog (read_only)")
                break
            except duckdb.IOException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        try:
            marts = con.execute(
                "select table_name from duckdb_tables() where database_name = 'catalog'"
            ).fetchall()
            for (name,) in marts:
                con.execute(f'create table "{name}" as select * from catalog."{name}"')
            views = con.execute(
                "select view_name, sql from duckdb_views() "
                "where database_name = 'catalog' and not internal"
            ).fetchall()
        finally:
            con.execute("detach catalog")
        # The tables' own views are built above; the models' views name them (and each other)
        # unqualified, so they are defined again here, each once what it reads exists.
        waiting = [sql for name, sql in views if name not in SCHEMAS]
        while waiting:
            left = []
            for sql in waiting:
                try:
                    con.execute(sql)
                except duckdb.Error:  # reads a view not defined yet (or no longer there)
                    left.append(sql)
            if len(left) == len(waiting):
                break  # what is left reads something that is not there: left out
            waiting = left

    def _with_catalog(self, work, attempts: int):
        """Refresh the catalog's views, then run ``work`` on it.

        Several processes may finish partitions at once and DuckDB allows one writer per file,
        so a lock conflict is retried with a short back-off.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            try:
                with self._attach(duckdb.connect(str(self.root / CATALOG_FILE))) as con:
                    for statement in self._view_sql():
                        con.execute(statement)
                    return work(con)
            except duckdb.IOException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))
        return None


def _read_folder(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(folder.glob("*.parquet")))


@functools.cache
def _empty_select(table: str) -> str:
    """A select of no rows with the table's columns and DuckDB types (cached: the catalog is
    refreshed after every partition write and the schemas never change)."""
    relation = duckdb.from_arrow(empty(table).to_arrow())
    columns = ", ".join(
        f'cast(null as {dtype}) as "{name}"'
        for name, dtype in zip(relation.columns, relation.types, strict=True)
    )
    return f"select {columns} where false"


_migrated: set[tuple[str, str]] = set()


def _migrate_once(mirror: PostgresWarehouse) -> None:
    # Creating and checking ~20 tables costs a few hundred statements: once per process.
    key = (mirror.url, mirror.schema)
    if key not in _migrated:
        mirror.migrate()
        _migrated.add(key)
