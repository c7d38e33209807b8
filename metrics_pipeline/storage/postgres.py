"""The Postgres side of the warehouse: the same tables, for queries and Grafana.

Tables are created from the schemas in ``contracts/tables.py`` and migrated by adding missing
columns. Every table of a run partition is replaced in one transaction (delete its rows, then
COPY the new ones) under a transaction-level advisory lock on the run, so readers never see
half a run, a failure leaves the old rows of every table, and two writers of one run take
turns instead of both deleting and then both inserting (which doubled the rows under READ
COMMITTED). Snapshot tables are replaced whole, under a lock on the table.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

from metrics_pipeline.contracts.tables import SCHEMAS, SNAPSHOT_TABLES, conform
from metrics_pipeline.settings import DEFAULT_POSTGRES_SCHEMA

# Rows per CSV slice of a COPY (a few MB of text at a time).
COPY_ROWS = 100_000
# Tries of a rebuild's take-over that Postgres aborts to break a deadlock with a live writer.
TAKE_OVER_ATTEMPTS = 5
# Microseconds and the UTC offset, which timestamptz reads exactly.
CSV_TIMESTAMP = "%Y-%m-%dT%H:%M:%S%.6f%:z"

PG_TYPES = {
    pl.String: "text",
    pl.Boolean: "boolean",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.Float64: "double precision",
}


def pg_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamptz"
    return PG_TYPES[dtype.base_type()]


class PostgresWarehouse:
    """Writes warehouse tables to the database at ``url`` (a libpq URL)."""

    def __init__(self, url: str, schema: str = DEFAULT_POSTGRES_SCHEMA):
        self.url = url
        self.schema = schema

    def connect(self) -> psycopg.Connection:
        # psycopg is imported by the first connection: a warehouse without Postgres (the
        # embedded default, every ``dagster dev`` run process) never pays for it.
        import psycopg

        return psycopg.connect(self.url, autocommit=False)

    def migrate(self, tables: Iterable[str] = SCHEMAS) -> None:
        """Create the schema and tables, and add columns that newer versions introduced."""
        from psycopg import sql

        # "if not exists" is no guard against a second process doing the same at the same
        # time (hosts starting together on a fresh database: a duplicate key in the catalog):
        # migrations take turns.
        with self.transaction("migrate") as con:
            con.execute(
                sql.SQL("create schema if not exists {}").format(sql.Identifier(self.schema))
            )
            for table in tables:
                columns = SCHEMAS[table]
                con.execute(
                    sql.SQL("create table if not exists {} ({})").format(
                        self._name(table),
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(pg_type(t)))
                            for c, t in columns.items()
                        ),
                    )
                )
                for column, dtype in columns.items():
                    con.execute(
                        sql.SQL("alter table {} add column if not exists {} {}").format(
                            self._name(table), sql.Identifier(column), sql.SQL(pg_type(dtype))
                        )
                    )
                if "run_id" in columns and table not in SNAPSHOT_TABLES:
                    con.execute(
                        sql.SQL("create index if not exists {} on {} (run_id)").format(
                            sql.Identifier(f"{table}_run_id"), self._name(table)
                        )
                    )

    @contextmanager
    def session_lock(self, name: str) -> Iterator[None]:
        """Hold the advisory lock named ``name`` for the block, among every process (on any
        host) that writes this warehouse's database: a lock file serialises only the
        processes sharing a folder. The lock lives in a connection of its own, so a worker
        that dies releases it with its session. Keyed by schema, apart from
        :meth:`transaction`'s locks (``lock:`` prefix)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as con:
            key = (f"{self.schema}:lock:{name}",)
            con.execute("select pg_advisory_lock(hashtextextended(%s, 0))", key)
            try:
                yield
            finally:
                # A connection that dropped meanwhile ended its session, and the lock with it.
                with suppress(psycopg.OperationalError):
                    con.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", key)

    @contextmanager
    def transaction(self, lock: str) -> Iterator[psycopg.Connection]:
        """A transaction holding the advisory lock named ``lock`` until it ends.

        Commits when the block exits normally, rolls back on an exception. The lock is keyed
        by schema, so two warehouses in one database do not wait for each other.
        """
        with self.connect() as con:
            con.execute(
                "select pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"{self.schema}:{lock}",),
            )
            yield con

    def replace_partitions(
        self, run_id: str, frames: Mapping[str, pl.DataFrame | None], con: psycopg.Connection
    ) -> None:
        """In ``con`` (a :meth:`transaction` on the run): replace the run's rows of every
        table in ``frames`` (``None`` deletes them)."""
        from psycopg import sql

        for table, frame in frames.items():
            con.execute(
                sql.SQL("delete from {} where run_id = %s").format(self._name(table)), (run_id,)
            )
            if frame is not None:
                self._copy(con, table, frame)

    def replace_partition(self, table: str, run_id: str, frame: pl.DataFrame) -> int:
        """Replace the run's rows of one ``table`` with ``frame``, in its own transaction."""
        with self.transaction(f"run:{run_id}") as con:
            self.replace_partitions(run_id, {table: frame}, con)
        return frame.height

    def delete_partition(self, table: str, run_id: str) -> None:
        with self.transaction(f"run:{run_id}") as con:
            self.replace_partitions(run_id, {table: None}, con)

    def replace_snapshot(
        self, table: str, frame: pl.DataFrame, con: psycopg.Connection | None = None
    ) -> int:
        """Replace the whole ``table``; in ``con`` when given (the caller commits), else in
        a transaction of its own."""
        from psycopg import sql

        if con is None:
            with self.transaction(f"table:{table}") as own:
                return self.replace_snapshot(table, frame, own)
        con.execute(sql.SQL("delete from {}").format(self._name(table)))
        self._copy(con, table, frame)
        return frame.height

    def take_over(self, built: PostgresWarehouse) -> None:
        """Give every table the rows of the same table in ``built`` (another schema of this
        database, where a rebuild wrote), in one transaction, and drop that schema.

        The rows are copied into the tables in place rather than the schemas renamed, so the
        tables keep their grants and the views on them. ``truncate`` locks the tables:
        readers wait while the rows are copied, then see the new ones, never a mix; a failure
        leaves the old rows.
        """
        from psycopg import errors

        if built.url != self.url or built.schema == self.schema:
            raise ValueError("take_over needs another schema of the same database")
        for attempt in range(1, TAKE_OVER_ATTEMPTS + 1):
            try:
                return self._take_over(built)
            except errors.DeadlockDetected:
                # A live transaction took the same tables in another order (the marts read
                # them in the models' order) and Postgres aborted this one: nothing changed.
                if attempt == TAKE_OVER_ATTEMPTS:
                    raise

    def _take_over(self, built: PostgresWarehouse) -> None:
        from psycopg import sql

        with self.transaction("migrate") as con:
            # Every table emptied (and locked) first, in one statement; a writer that holds
            # one of them is waited for.
            con.execute(sql.SQL("truncate {}").format(sql.SQL(", ").join(map(self._name, SCHEMAS))))
            for table, columns in SCHEMAS.items():
                names = sql.SQL(", ").join(map(sql.Identifier, columns))
                con.execute(
                    sql.SQL("insert into {} ({}) select {} from {}").format(
                        self._name(table), names, names, built._name(table)
                    )
                )
            con.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(built.schema)))

    def drop_schema(self) -> None:
        """Drop this warehouse's schema and everything in it (a rebuild's that failed)."""
        from psycopg import sql

        with self.transaction("migrate") as con:
            con.execute(
                sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(self.schema))
            )

    def partition_counts(self, table: str) -> dict[str, int]:
        """Rows per run id of a partitioned ``table``."""
        from psycopg import sql

        query = sql.SQL("select run_id, count(*) from {} group by run_id").format(self._name(table))
        with self.connect() as con:
            return dict(con.execute(query).fetchall())

    def read(self, table: str, where: str = "true", params: tuple = ()) -> pl.DataFrame:
        """Rows of ``table`` in the table's polars schema (for tests and parity checks)."""
        from psycopg import sql

        query = sql.SQL("select {} from {} where " + where).format(
            sql.SQL(", ").join(sql.Identifier(c) for c in SCHEMAS[table]), self._name(table)
        )
        with self.connect() as con, con.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=SCHEMAS[table], orient="row")

    def _copy(self, con: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
        """COPY ``frame`` into ``table`` as CSV that polars writes a slice at a time: a
        Python call per row (``write_row``) was half of a 50 MB run's ingest with the mirror.

        In PostgreSQL's CSV an unquoted empty field is NULL and ``""`` an empty string, as
        polars writes them; floats are written to round-trip (``NaN``, ``inf``, ``-inf`` are
        read back as such); timestamps carry their offset.
        """
        from psycopg import sql

        frame = conform(table, frame)
        if frame.height == 0:
            return
        statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
            self._name(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
        )
        with con.cursor() as cur, cur.copy(statement) as copy:
            for start in range(0, frame.height, COPY_ROWS):
                buffer = io.BytesIO()
                frame.slice(start, COPY_ROWS).write_csv(
                    buffer, include_header=False, datetime_format=CSV_TIMESTAMP
                )
                copy.write(buffer.getvalue())

    def _name(self, table: str) -> sql.Composed:
        from psycopg import sql

        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))
