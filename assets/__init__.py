"""Software-defined assets: thin wrappers that call the metrics_pipeline library."""

import dagster as dg

from assets import analysis, ingest, warehouse

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, warehouse, analysis]),
    jobs=[ingest.ci_stage_job],
)
