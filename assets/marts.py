"""The SQL marts of dbt_like_sql/, one asset per mart file, rebuilt together over all runs."""

import dagster as dg

from assets.ingest import REQUESTS
from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.orchestration.resources import WarehouseResource
from metrics_pipeline.storage.sql_models import discover, ordered

# Names and references only: parsing every select with sqlglot (a check the tests and the
# Postgres runner make) would cost each process that loads the code location 0.3 s and more.
MODELS = ordered(discover(check=False))
_BY_NAME = {model.name: model for model in MODELS}
# Warehouse tables the models read, and the asset that writes each (ingest writes them all,
# except the Python run summary).
_SOURCE_ASSETS = {"run_summary": RUN_SUMMARY}


def _upstream(name: str) -> set[dg.AssetKey]:
    """The mart assets and warehouse assets a model needs, through staging views."""
    model = _BY_NAME[name]
    keys = {_SOURCE_ASSETS.get(source, REQUESTS) for source in model.sources}
    for ref in model.deps:
        if _BY_NAME[ref].kind == "table":
            keys.add(dg.AssetKey(["warehouse", ref]))
        else:
            keys |= _upstream(ref)
    return keys


MART_SPECS = [
    dg.AssetSpec(
        ["warehouse", model.name],
        deps=sorted(_upstream(model.name), key=lambda key: key.to_user_string()),
        group_name="warehouse",
        kinds={"duckdb", "sql"},
        description=f"SQL mart dbt_like_sql/marts/{model.name}.sql: {model.grain}.",
    )
    for model in MODELS
    if model.kind == "table"
]


@dg.multi_asset(specs=MART_SPECS, name="marts")
def marts(warehouse: WarehouseResource):
    """Builds every model in dependency order in the DuckDB catalog (and in Postgres when
    configured) from one SQL source."""
    from metrics_pipeline.stages import nightly  # at use: not needed by the CI stage

    rows = nightly.build_marts(warehouse.get(), MODELS)
    for spec in MART_SPECS:
        yield dg.MaterializeResult(
            asset_key=spec.key,
            metadata={"dagster/row_count": rows[spec.key.path[-1]]},
        )
