"""Run a suite of ``validation.suites`` with Great Expectations' SQL engine on DuckDB.

The data (a run partition's Parquet files, or a polars frame) is a view in an in-memory DuckDB
database, and GX's ``SqlAlchemyExecutionEngine`` (through the ``duckdb-engine`` dialect) turns
the suite into aggregate queries on it: the row-wise rules share one scan (a
``sum(case when ...)`` per expectation), the compound-key uniqueness is one ``GROUP BY``
joined back to the rows. Nothing is copied to pandas and DuckDB reads only the columns a query
needs. The suite is first checked with GX's ``BOOLEAN_ONLY`` result format (which expectations
hold: one count each, no values); only those that fail are run again, with ``BASIC``, for their
counts and a few unexpected values.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.util
import sys
import tempfile
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from metrics_pipeline.contracts.tables import empty
from metrics_pipeline.validation.suites import SUITES

# DuckDB's share of a validating process: two threads, and a memory limit past which the
# uniqueness check's GROUP BY and join spill to a temporary folder instead of growing. Spilling
# costs little (a 1 GB run: as fast as with 2 GB), but it needs room: with 256 MB a 5 GB run's
# 34.5 M keys ran out of memory, 384 MB was enough; 512 MB leaves a margin for larger runs. A
# check that does run out fails with the reason (``ExpectationOutcome.error``).
DUCKDB_THREADS = 2
DUCKDB_MEMORY_LIMIT = "512MB"
# Values of a failing expectation kept as its sample (GX's ``partial_unexpected_count``); each
# is one ``LIMIT`` query, the count itself needs no rows.
SAMPLE_SIZE = 10
# Distinct values past which a text key column stays text (see ``_create_view``).
ENUM_MAX_VALUES = 10_000
# Modules Great Expectations imports for expectations and renderers the suites never use (the
# KL-divergence and KS-test expectations, Vega charts): a third of its import, 1.2 s of 3.6 s
# and 80 MB (issue #16). Loaded on first use instead (see ``_Deferred``).
GX_UNUSED_MODULES = ("scipy.stats", "altair")


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    unexpected_sample: list
    # Why GX could not compute the expectation (it then fails), e.g. DuckDB out of memory.
    error: str | None = None


@dataclass(frozen=True)
class ValidationResult:
    table: str
    rows: int
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_markdown(self) -> str:
        lines = ["| expectation | column | ok | unexpected |", "|---|---|---|---|"]
        lines += [
            f"| {o.expectation} | {o.column or ''} | {'yes' if o.success else 'NO'} "
            f"| {o.unexpected_count} |"
            for o in self.outcomes
        ]
        return "\n".join(lines)


def _is_duckdb_type(value: Any) -> bool:
    return type(value).__name__ == "DuckDBPyType"


@cache
def _release_duckdb_types_at_exit() -> None:
    """At exit, drop every reference to a DuckDB type object (``duckdb.sqltypes.BIGINT``, the
    result types cached by the engines Great Expectations keeps).

    With Great Expectations and duckdb-engine loaded in one process, such objects are still
    alive when DuckDB's nanobind extension is torn down, and it prints 40-100 lines of
    "nanobind: leaked ..." to stderr at every exit (benign: the process is ending, but the CLI
    and the demo would end on a wall of them). Released first, they are freed quietly.
    """

    def release() -> None:
        # Whatever still holds a DuckDB type (module constants, result-type caches of the
        # engines Great Expectations keeps, closures) lets go of it; the process is ending.
        gc.collect()
        for holder in gc.get_objects():
            try:
                if isinstance(holder, dict):
                    for key, value in list(holder.items()):
                        if _is_duckdb_type(key) or _is_duckdb_type(value):
                            del holder[key]
                elif isinstance(holder, list):
                    holder[:] = [item for item in holder if not _is_duckdb_type(item)]
                elif type(holder).__name__ == "cell" and _is_duckdb_type(holder.cell_contents):
                    del holder.cell_contents
            except (TypeError, ValueError, RuntimeError):  # immutable or emptied meanwhile
                continue
        gc.collect()

    atexit.register(release)


class _Deferred(types.ModuleType):
    """A module in ``sys.modules`` that imports the real one on its first attribute lookup.

    It then takes the real module's attributes, so references held from before (``from scipy
    import stats`` in a GX module) work as the module itself. ``importlib.util.LazyLoader`` is
    the standard tool, but Python 3.11's import statement reads ``__spec__`` of a module
    already in ``sys.modules``, which makes a lazy module load at once; this one has its spec.
    A first touch by ``import scipy.stats.<submodule>`` runs that submodule's code twice
    (the real package imports it, then the import statement does), as with any module
    imported during its parent's import; for scipy.stats' re-exporting submodules that is
    harmless, and the project's imports (statsmodels' included) touch the package first.
    """

    _lock = threading.Lock()

    def __init__(self, spec) -> None:
        super().__init__(spec.name)
        self.__spec__ = spec

    def __getattr__(self, attr: str) -> Any:
        # The lock covers taking the stand-in out, never the import: an import holds the
        # import system's module locks, and a thread that holds one of them (importing a
        # submodule) may be the one asking for an attribute here. The import system then
        # makes concurrent importers of the real module wait for the first.
        with self._lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def import_great_expectations() -> types.ModuleType:
    """``great_expectations``, imported without the modules of ``GX_UNUSED_MODULES``."""
    for name in GX_UNUSED_MODULES:
        if name not in sys.modules and (spec := importlib.util.find_spec(name)) is not None:
            sys.modules[name] = _Deferred(spec)
    import great_expectations

    return great_expectations


@cache
def _context():
    # Great Expectations costs seconds to import: only processes that validate pay for it.
    gx = import_great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


class _ReadOnlyConnection:
    """A DuckDB connection whose transaction calls are no-ops, for GX's engine.

    GX reads a query's rows after it has closed the SQLAlchemy connection, and closing rolls
    back the transaction SQLAlchemy began: on DuckDB that ROLLBACK discards the pending result
    (every expectation then failed with ``MetricResolutionError: list index out of range``).
    The engine only reads, each statement is its own transaction, so there is nothing to begin,
    commit or roll back.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self._connection = connection

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def validate(
    table: str,
    data: Sequence[Path | str] | pl.DataFrame | pl.LazyFrame,
    window: tuple[datetime, datetime | None] = (datetime.min.replace(tzinfo=UTC), None),
    filesystem=None,
) -> ValidationResult:
    """Validate ``data`` against the suite of ``table`` (timestamps inside ``window``, the
    run's window with its clock skew); never raises on failing data.

    ``data`` is the Parquet files of a run partition (``Warehouse.files``; the run id is read
    from their hive folder ``run_id=<id>/``, columns the files lack are nulls, as
    ``Warehouse.scan`` reads them) or a frame. Only the columns the suite looks at are read.
    Files in an object store are URLs read through ``filesystem`` (``Warehouse.filesystem``,
    an fsspec filesystem).
    """
    suite = SUITES[table](*window)
    used = sorted(
        {
            column
            for _, kwargs in suite
            for key in ("column", "column_A", "column_B")
            if (column := kwargs.get(key))
        }
        | {column for _, kwargs in suite for column in kwargs.get("column_list", [])}
    )
    with tempfile.TemporaryDirectory(prefix="validation-duckdb-") as spill:
        database = duckdb.connect(
            config={
                "threads": DUCKDB_THREADS,
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "temp_directory": spill,
            }
        )
        try:
            # Values come back in UTC, and a naive timestamp would be compared as UTC (what the
            # warehouse writes), whatever the machine's time zone.
            database.execute("set global TimeZone = 'UTC'")
            if filesystem is not None:
                database.register_filesystem(filesystem)
            keys = sorted({c for _, kwargs in suite for c in kwargs.get("column_list", [])})
            _create_view(database, table, data, used, keys)
            rows = database.execute(f'select count(*) from "{table}"').fetchone()[0]
            outcomes = _run_suite(database, table, suite)
        finally:
            database.close()
    return ValidationResult(table=table, rows=rows, outcomes=outcomes)


def _create_view(
    database: duckdb.DuckDBPyConnection,
    table: str,
    data: Sequence[Path | str] | pl.DataFrame | pl.LazyFrame,
    columns: list[str],
    keys: list[str],
) -> None:
    """The view ``table`` with ``columns`` of ``data`` (a column ``data`` lacks is null).

    A text column of the compound ``keys`` with few values (``source_file``: one per file) is
    an ENUM: the uniqueness check's GROUP BY and join then hash small integers, not strings
    (a 5 GB run's 34.5 M keys ran out of 256 MB as text, and fit as an ENUM).
    """
    if isinstance(data, pl.DataFrame | pl.LazyFrame):
        names = data.collect_schema().names()
        arrow = data.lazy().select([c for c in columns if c in names]).collect().to_arrow()
        # A registered frame is seen by this connection only, not by GX's cursors: a copy in
        # the database is (frames are the small path: tests, ad hoc checks).
        database.register("source_arrow", arrow)
        database.execute("create table source_frame as select * from source_arrow")
        database.unregister("source_arrow")
        source = "source_frame"
    else:
        # str, not Path: a URL's "//" would collapse.
        files = [f.as_posix() if isinstance(f, Path) else str(f) for f in data]
        if not files:
            raise ValueError(f"no Parquet files to validate for {table}")
        # Hive values stay text (a run id "2026-11-01" is not a date), files are unioned by
        # column name (a partition written before a column existed lacks it).
        source = (
            f"read_parquet([{', '.join(_literal(f) for f in files)}], hive_partitioning = true, "
            "hive_types_autocast = false, union_by_name = true)"
        )
    present = {
        name: kind
        for name, kind, *_ in database.execute(f"describe select * from {source}").fetchall()
    }
    missing = [c for c in columns if c not in present]
    types: dict[str, str] = {}
    if missing:
        arrow = empty(table).select(missing).to_arrow()
        types |= dict(zip(missing, map(str, database.from_arrow(arrow).types), strict=True))
    for column in keys:
        if present.get(column) == "VARCHAR" and (enum := _enum(database, source, column)):
            types[column] = enum

    def expression(column: str) -> str:
        value = f'"{column}"' if column in present else "null"
        return f'cast({value} as {types[column]}) as "{column}"' if column in types else value

    select = ", ".join(expression(c) for c in columns)
    database.execute(f'create view "{table}" as select {select} from {source}')


def _enum(database: duckdb.DuckDBPyConnection, source: str, column: str) -> str | None:
    """The name of an ENUM type of ``column``'s values, or None when there are too many (or
    none)."""
    values = database.execute(
        f'select distinct "{column}" from {source} where "{column}" is not null '
        f"limit {ENUM_MAX_VALUES + 1}"
    ).fetchall()
    if not values or len(values) > ENUM_MAX_VALUES:
        return None
    name = f"{column}_values"
    listed = ", ".join(_literal(value) for (value,) in values)
    database.execute(f'create type "{name}" as enum ({listed})')
    return f'"{name}"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _run_suite(database: duckdb.DuckDBPyConnection, table: str, suite) -> list[ExpectationOutcome]:
    gx = import_great_expectations()
    import great_expectations.expectations as gxe
    from duckdb_engine import ConnectionWrapper
    from sqlalchemy.pool import StaticPool

    # GX's engines get connections (cursors) of the one in-memory database that holds the
    # view; the static pool keeps one per engine for the engine's life. GX keeps the engine
    # objects after the datasource is deleted: they keep only this emptied holder.
    holder = [database]

    def connect() -> ConnectionWrapper:
        return ConnectionWrapper(_ReadOnlyConnection(holder[0].cursor()))

    _release_duckdb_types_at_exit()
    context = _context()
    name = f"duckdb_{table}_{id(database)}"
    source = context.data_sources.add_sql(
        name,
        connection_string="duckdb:///:memory:",
        kwargs={"creator": connect, "poolclass": StaticPool},
    )
    try:
        asset = source.add_table_asset(table, table_name=table)
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        expectations = [
            getattr(gxe, kind)(**kwargs, meta={"position": position})
            for position, (kind, kwargs) in enumerate(suite)
        ]
        # First which expectations hold: one count per expectation, no values (GX computes
        # the uniqueness count with a GROUP BY joined back to the rows; a sample would be a
        # second such join). A passing expectation has no unexpected value.
        checked = batch.validate(
            gx.ExpectationSuite(name=table, expectations=expectations),
            result_format="BOOLEAN_ONLY",
        )
        results = {item.expectation_config.meta["position"]: item for item in checked.results}
        failed = [expectations[p] for p, item in sorted(results.items()) if not item.success]
        if failed:
            # Then the counts and at most SAMPLE_SIZE values of the failing ones; no
            # unexpected rows, indices or value counts are materialised.
            detailed = batch.validate(
                gx.ExpectationSuite(name=f"{table}_failures", expectations=failed),
                result_format={"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE},
            )
            results |= {item.expectation_config.meta["position"]: item for item in detailed.results}
    finally:
        engines = {source.get_engine(), source.get_execution_engine().engine}
        context.data_sources.delete(name)
        for engine in engines:
            engine.dispose()
        holder.clear()
    return [_outcome(results[position]) for position in range(len(suite))]


def _outcome(item) -> ExpectationOutcome:
    config = item.expectation_config
    details = item.result or {}
    columns = config.kwargs.get("column_list") or [
        c for c in (config.kwargs.get("column_A"), config.kwargs.get("column_B")) if c
    ]
    return ExpectationOutcome(
        expectation=config.type,
        column=config.kwargs.get("column") or ",".join(columns) or None,
        success=bool(item.success),
        unexpected_count=int(details.get("unexpected_count") or 0),
        unexpected_sample=list(details.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
        error=None if item.success else _error(item.exception_info or {}),
    )


def _error(info: dict) -> str | None:
    """The first exception message of a GX result's ``exception_info`` (flat, or one entry
    per metric that failed)."""
    for entry in (info, *info.values()):
        if isinstance(entry, dict) and entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "exception")
            # SQLAlchemy appends the statement: the first line says what went wrong.
            return message.strip().splitlines()[0][:300]
    return None
