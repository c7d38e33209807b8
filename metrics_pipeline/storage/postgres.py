"""The Postgres side of the warehouse: the same tables, for queries and Grafana.

Tables are created from the schemas in ``models.py`` and migrated by adding missing columns.
A run partition is replaced in one transaction (delete its rows, then COPY the new ones), so
readers never see half a run and re-running is safe; snapshot tables are replaced whole.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
import psycopg
from psycopg import sql

from metrics_pipeline.contracts.tables import SCHEMAS, SNAPSHOT_TABLES, conform

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

    def __init__(self, url: str, schema: str = "metrics"):
        self.url = url
        self.schema = schema

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=False)

    def migrate(self, tables: Iterable[str] = SCHEMAS) -> None:
        """Create the schema and tables, and add columns that newer versions introduced."""
        with self.connect() as con:
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

    def replace_partition(self, table: str, run_id: str, frame: pl.DataFrame) -> int:
        """Delete the run's rows of ``table`` and insert ``frame`` in one transaction."""
        with self.connect() as con:
            con.execute(
                sql.SQL("delete from {} where run_id = %s").format(self._name(table)), (run_id,)
            )
            self._copy(con, table, frame)
        return frame.height

    def delete_partition(self, table: str, run_id: str) -> None:
        with self.connect() as con:
            con.execute(
                sql.SQL("delete from {} where run_id = %s").format(self._name(table)), (run_id,)
            )

    def replace_snapshot(self, table: str, frame: pl.DataFrame) -> int:
        with self.connect() as con:
            con.execute(sql.SQL("delete from {}").format(self._name(table)))
            self._copy(con, table, frame)
        return frame.height

    def read(self, table: str, where: str = "true", params: tuple = ()) -> pl.DataFrame:
        """Rows of ``table`` in the table's polars schema (for tests and parity checks)."""
        query = sql.SQL("select {} from {} where " + where).format(
            sql.SQL(", ").join(sql.Identifier(c) for c in SCHEMAS[table]), self._name(table)
        )
        with self.connect() as con, con.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=SCHEMAS[table], orient="row")

    def _copy(self, con: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
        frame = conform(table, frame)
        if frame.height == 0:
            return
        statement = sql.SQL("copy {} ({}) from stdin").format(
            self._name(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
        )
        with con.cursor() as cur, cur.copy(statement) as copy:
            for row in frame.iter_rows():
                copy.write_row(row)

    def _name(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))
