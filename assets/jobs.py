"""The three stages as jobs: per uploaded run (sensor), nightly and weekly (schedules)."""

import dagster as dg

from assets.alerting import ALERTS, FINDING_ALERTS, SLA
from assets.analysis import BASELINE, VERDICTS
from assets.history import CHANGE_POINTS, DRIFTS, FINDINGS, FORECASTS
from assets.ingest import REQUESTS
from assets.marts import MART_SPECS
from assets.reports import RUN_REPORT, WEEKLY_REPORT
from assets.retention import RETENTION
from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.orchestration.executors import job_executor
from metrics_pipeline.orchestration.partitions import runs_partitions

MART_KEYS = [spec.key for spec in MART_SPECS]

ci_stage_job = dg.define_asset_job(
    "ci_stage",
    selection=dg.AssetSelection.assets(
        REQUESTS, RUN_SUMMARY, BASELINE, VERDICTS, SLA, ALERTS, RUN_REPORT
    ),
    partitions_def=runs_partitions,
    # The steps form a chain, so a process per step would only add imports (seconds
    # each); runs of different partitions still run in parallel, one process per run.
    # METRICS_EXECUTOR (e.g. celery) overrides this for every job.
    executor_def=job_executor(dg.in_process_executor),
    description="Everything one uploaded run needs: ingest, validate, summarise, judge, "
    "check the SLAs, alert.",
)
nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.assets(
        CHANGE_POINTS, DRIFTS, FINDINGS, FINDING_ALERTS, RETENTION, *MART_KEYS
    ),
    executor_def=job_executor(dg.in_process_executor),
    description="History analyses over every run: the SQL marts, change points, drifts, findings.",
)
weekly_job = dg.define_asset_job(
    "weekly",
    selection=dg.AssetSelection.assets(FORECASTS, FINDINGS, FINDING_ALERTS, WEEKLY_REPORT),
    executor_def=job_executor(dg.in_process_executor),
    description="Forecasts and capacity findings.",
)
