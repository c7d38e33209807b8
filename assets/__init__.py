"""Software-defined assets: thin wrappers that call the metrics_pipeline library."""

import dagster as dg

from assets import (
    alerting,
    analysis,
    backtest,
    history,
    ingest,
    jobs,
    marts,
    reports,
    retention,
    warehouse,
)

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [ingest, warehouse, marts, analysis, history, retention, backtest, alerting, reports]
    ),
    jobs=[jobs.ci_stage_job, jobs.nightly_job, jobs.weekly_job],
)
