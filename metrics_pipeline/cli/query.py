"""``metrics-pipeline sql``: the warehouse's DuckDB catalog from the command line, without a
DuckDB CLI installed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.output import console, err, fail, print_json
from metrics_pipeline.settings import Settings

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "csv", "json")
# What a statement may be: a query. The catalog is opened read-only, but that guards its own
# file only: COPY ... TO could write Parquet files into the warehouse's partitions, ATTACH
# open the catalog for writing, SET change what later statements see.
QUERIES = ("SELECT", "EXPLAIN")
# A terminal table longer than this says how many rows it left out (csv and json print all).
MAX_TABLE_ROWS = 200


def sql(
    query: Annotated[
        str | None,
        typer.Argument(help="One SQL statement. Omit it to type statements, one per line."),
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Query the warehouse with DuckDB SQL: every documented table is a view (empty until it
    has rows), the SQL marts are tables. Read-only. Exit 2 on an invalid statement."""
    if output not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {output!r}")
    import duckdb  # only this command needs it: the others start faster

    from metrics_pipeline.storage import open_warehouse

    warehouse = open_warehouse(Settings.from_env())
    with warehouse.open_catalog() as con:
        if query is not None:
            try:
                _print(con.sql(_query(query)), output)
            except (duckdb.Error, NotAQueryError) as exc:
                fail(str(exc))
            return
        _shell(con, output)


def _shell(con: duckdb.DuckDBPyConnection, output: str) -> None:
    """One statement per line until end of input or ``.quit``; an error is printed and the
    next statement read."""
    import duckdb

    interactive = sys.stdin.isatty()
    if interactive:
        err.print(f"{len(_views(con))} views; .tables lists them, .quit or Ctrl-D leaves")
    while True:
        try:
            line = input("sql> " if interactive else "")
        except EOFError:
            return
        statement = line.strip().rstrip(";")
        if not statement:
            continue
        if statement in {".quit", ".exit"}:
            return
        if statement == ".tables":
            console.print(", ".join(_views(con)), soft_wrap=True)
            continue
        try:
            _print(con.sql(_query(statement)), output)
        except (duckdb.Error, NotAQueryError) as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")


class NotAQueryError(ValueError):
    """A statement that is not a query (``QUERIES``)."""


def _query(text: str) -> str:
    """``text`` if each of its statements is a query, else :class:`NotAQueryError`; DuckDB
    itself tells them apart (and raises its own error for text that does not parse)."""
    import duckdb

    for statement in duckdb.extract_statements(text):
        kind = statement.type.name
        if kind not in QUERIES:
            raise NotAQueryError(
                f"only queries ({', '.join(QUERIES)}) run here, not {kind}: the warehouse is "
                "read-only from this command"
            )
    return text


def _views(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select view_name from duckdb_views() where not internal "
        "union select table_name from duckdb_tables() order by 1"
    ).fetchall()
    return [name for (name,) in rows]


def _print(relation: duckdb.DuckDBPyRelation | None, output: str) -> None:
    """The statement's rows (a statement without rows, e.g. ``describe``-less pragmas, prints
    nothing)."""
    if relation is None:
        return
    frame = relation.pl()
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        print_json(frame.to_dicts())
    else:
        table = Table(show_lines=False)
        for column in frame.columns:
            table.add_column(escape(column))
        for row in frame.head(MAX_TABLE_ROWS).iter_rows():
            table.add_row(*("" if v is None else escape(str(v)) for v in row))
        console.print(table)
        more = frame.height - MAX_TABLE_ROWS
        console.print(f"{frame.height} row(s)" + (f", {more} not shown" if more > 0 else ""))
