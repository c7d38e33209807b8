"""The SQL models of ``dbt_like_sql/``, run on DuckDB and on Postgres from one source.

A model is one ``.sql`` file holding one ``select``, written in DuckDB's dialect: files under
``staging/`` and ``intermediate/`` become views, files under ``marts/`` tables. Each file starts
with a header::

    -- grain: one row per run x host x metric
    -- depends on: ref('stg_resources')

and names its inputs with placeholders: ``{{ ref('model') }}`` for another model and
``{{ source('table') }}`` for a warehouse table. The header's list must name exactly the
placeholders the body uses, so the stated lineage cannot drift from the SQL. For Postgres each
``select`` is transpiled by sqlglot; nobody keeps a second copy.
"""

from __future__ import annotations

import functools
import graphlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

# sqlglot (0.3 s) and psycopg are imported where they are used: the code location lists the
# models (names, references) at every load, and only the Postgres runner and the portability
# check need them.
if TYPE_CHECKING:
    from sqlglot import exp

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.tables import empty
from metrics_pipeline.settings import shipped_path

MODELS_DIR = shipped_path("dbt_like_sql")
# staging: renames and casts of one source; intermediate: logic several marts share (the
# interval-latency approximation); both are views. marts: tables at a stated grain.
KINDS = {"staging": "view", "intermediate": "view", "marts": "table"}

_NAME = r"[a-z_][a-z0-9_]*"
_PLACEHOLDER = re.compile(rf"\{{\{{\s*(ref|source)\(\s*'({_NAME})'\s*\)\s*\}}\}}")
_HEADER_REF = re.compile(rf"(ref|source)\(\s*'({_NAME})'\s*\)")


@functools.cache
def _not_portable() -> dict[type, str]:
    """DuckDB constructs that sqlglot passes to Postgres unchanged, where they fail or mean
    something else; the portable spelling is named in the message."""
    from sqlglot import exp

    return {
        exp.ApproxQuantile: "approx_quantile (use quantile_cont)",
        exp.ArgMax: "arg_max (use row_number() and qualify)",
        exp.ArgMin: "arg_min (use row_number() and qualify)",
        exp.DateBin: "time_bucket (use date_trunc)",
    }


class SqlModelError(MetricsPipelineError, ValueError):
    """A model folder that cannot be run: bad header, unknown reference, cycle, name clash."""


@dataclass(frozen=True)
class Model:
    name: str
    kind: str  # "view" | "table"
    grain: str
    deps: tuple[str, ...]  # models this one selects from
    sources: tuple[str, ...]  # warehouse tables it selects from
    sql: str  # the select, with its {{ ref() }} / {{ source() }} placeholders
    path: Path

    def render(self, relation: Callable[[str], str]) -> str:
        """The select with every ref/source placeholder replaced by ``relation(name)``."""
        return _PLACEHOLDER.sub(lambda m: relation(m[2]), self.sql)


def parse_model(path: Path, kind: str, *, check: bool = True) -> Model:
    """The model in ``path``; ``check``: also parse its select and refuse what would not run
    on Postgres (:func:`portable_select`)."""
    text = path.read_text()
    header: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        key, sep, value = line.removeprefix("--").partition(":")
        if sep and key.strip() in {"grain", "depends on"}:
            header[key.strip()] = value.strip()
    if not header.get("grain"):
        raise SqlModelError(f"{path}: the header has no '-- grain: one row per ...' line")
    if "depends on" not in header:
        raise SqlModelError(f"{path}: the header has no '-- depends on: ref('...')' line")
    used = set(_PLACEHOLDER.findall(text))
    stated = set(_HEADER_REF.findall(header["depends on"]))
    if used != stated:
        listed = ", ".join(f"{k}('{n}')" for k, n in sorted(used)) or "nothing"
        raise SqlModelError(
            f"{path}: the header's depends on must list what the SQL uses: {listed}"
        )
    try:
        if check:
            portable_select(_PLACEHOLDER.sub(lambda m: m[2], text))
    except SqlModelError as exc:
        raise SqlModelError(f"{path}: {exc}") from None
    return Model(
        name=path.stem,
        kind=kind,
        grain=header["grain"],
        deps=tuple(sorted(n for k, n in used if k == "ref")),
        sources=tuple(sorted(n for k, n in used if k == "source")),
        sql=text,
        path=path,
    )


def discover(folder: str | Path = MODELS_DIR, *, check: bool = True) -> list[Model]:
    """Every model under ``folder/staging`` and ``folder/intermediate`` (views) and
    ``folder/marts`` (tables), by name; ``check``: each select parsed and checked portable
    (the Dagster code location skips it at load: the tests and the Postgres runner check)."""
    folder = Path(folder)
    models: dict[str, Model] = {}
    for sub, kind in KINDS.items():
        for path in sorted((folder / sub).glob("*.sql")):
            if not re.fullmatch(_NAME, path.stem):
                raise SqlModelError(f"{path}: model names are lower-case identifiers")
            if path.stem in models:
                raise SqlModelError(f"{path}: model {path.stem!r} is defined twice")
            models[path.stem] = parse_model(path, kind, check=check)
    sources = {s for model in models.values() for s in model.sources}
    if clash := sorted(sources & models.keys()):
        raise SqlModelError(f"model names that are also source tables: {', '.join(clash)}")
    return list(models.values())


def ordered(models: Iterable[Model]) -> list[Model]:
    """The models in an order where every model comes after the ones it refers to."""
    by_name = {model.name: model for model in models}
    for model in by_name.values():
        if unknown := [d for d in model.deps if d not in by_name]:
            raise SqlModelError(f"model {model.name!r} refers to unknown model(s): {unknown}")
    sorter = graphlib.TopologicalSorter({name: m.deps for name, m in by_name.items()})
    try:
        return [by_name[name] for name in sorter.static_order()]
    except graphlib.CycleError as exc:
        raise SqlModelError(f"dependency cycle: {' -> '.join(exc.args[1])}") from None


def portable_select(select: str) -> exp.Query:
    """Parse one DuckDB ``select``; raise SqlModelError unless it can run on Postgres too."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(select, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0]
        raise SqlModelError(
            f"not valid DuckDB SQL at line {first['line']}, col {first['col']}: "
            f"{first['description']}"
        ) from None
    if not isinstance(tree, exp.Query):
        raise SqlModelError("a model is one select (the runner writes the create statement)")
    for node in tree.walk():
        if type(node) in _not_portable():
            raise SqlModelError(f"not portable to Postgres: {_not_portable()[type(node)]}")
        if isinstance(node, exp.Star) and any(
            node.args.get(k) for k in ("except_", "replace", "rename")
        ):
            raise SqlModelError(
                "not portable to Postgres: * exclude/replace/rename (list the columns)"
            )
        if isinstance(node, exp.Group) and node.args.get("all"):
            raise SqlModelError("not portable to Postgres: group by all (list the columns)")
    return tree


def to_postgres(select: str) -> str:
    """Transpile one DuckDB ``select`` to Postgres."""
    import sqlglot

    return portable_select(select).sql(
        dialect="postgres", unsupported_level=sqlglot.ErrorLevel.RAISE
    )


def _quote(*parts: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def run_duckdb(con: duckdb.DuckDBPyConnection, models: Iterable[Model]) -> dict[str, int]:
    """Create every model in ``con`` (e.g. ``Warehouse.connect()``); rows per mart.

    A source table missing from ``con`` (a connection without the warehouse's views) gets an
    empty stand-in of its schema: a warehouse with no events yet still gets its marts, with null
    stability counts.
    """
    models = ordered(models)
    existing = {
        row[0]
        for row in con.execute(
            "select table_name from duckdb_tables() union all select view_name from duckdb_views()"
        ).fetchall()
    }
    for source in sorted({s for m in models for s in m.sources} - existing):
        con.register(source, empty(source).to_arrow())
    for model in reversed(models):
        con.execute(f"drop {model.kind} if exists {_quote(model.name)}")
    rows = {}
    for model in models:
        select = model.render(_quote)
        con.execute(f"create {model.kind} {_quote(model.name)} as {select}")
        if model.kind == "table":
            # fetchall, not fetchone: DuckDB 2 refuses more work while a result is unfinished.
            ((rows[model.name],),) = con.execute(
                f"select count(*) from {_quote(model.name)}"
            ).fetchall()
    return rows


def run_postgres(url: str, schema: str, models: Iterable[Model]) -> dict[str, int]:
    """Create every model in ``schema`` (where the warehouse tables are) in one transaction:
    readers see all the new marts or none of them."""
    import psycopg

    models = ordered(models)
    rows = {}
    with psycopg.connect(url, autocommit=False) as con:
        for model in reversed(models):
            con.execute(f"drop {model.kind} if exists {_quote(schema, model.name)}")
        for model in models:
            select = to_postgres(model.render(lambda name: _quote(schema, name)))
            con.execute(f"create {model.kind} {_quote(schema, model.name)} as {select}")
            if model.kind == "table":
                (count,) = con.execute(
                    f"select count(*) from {_quote(schema, model.name)}"
                ).fetchone()
                rows[model.name] = count
    return rows


def read_duckdb(con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
    return con.sql(f"select * from {_quote(name)}").pl()


def read_postgres(url: str, schema: str, name: str) -> pl.DataFrame:
    import psycopg
    from psycopg import sql as pgsql

    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.execute(
            pgsql.SQL("select * from {}.{}").format(
                pgsql.Identifier(schema), pgsql.Identifier(name)
            )
        )
        columns = [column.name for column in cur.description]
        return pl.DataFrame(cur.fetchall(), schema=columns, orient="row", infer_schema_length=None)
