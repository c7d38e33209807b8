"""Software-defined assets: thin wrappers that call the metrics_pipeline library."""

import dagster as dg

from assets import analysis, backtest, history, ingest, jobs, marts, retention, warehouse

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [ingest, warehouse, marts, analysis, history, retention, backtest]
    ),
    jobs=[jobs.ci_stage_job, jobs.nightly_job, jobs.weekly_job],
)
