"""Software-defined assets: thin wrappers that call the metrics_pipeline library."""

import dagster as dg

from assets import (
    alerting,
    analysis,
    backtest,
    capacity,
    history,
    ingest,
    jobs,
    marts,
    reports,
    retention,
    triage,
    warehouse,
)
from metrics_pipeline.settings import Settings

ASSETS = dg.load_assets_from_modules(
    [ingest, warehouse, marts, analysis, capacity, history, retention, backtest, alerting, reports]
)


def build_defs(settings: Settings) -> dg.Definitions:
    """The assets and their jobs; the settings choose the jobs' executor."""
    return dg.Definitions(
        assets=ASSETS, jobs=[*jobs.build_jobs(settings), triage.build_job(settings)]
    )
