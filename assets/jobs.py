"""The three stages as jobs: per uploaded run (sensor), nightly and weekly (schedules)."""

from typing import Any

import dagster as dg

from assets.alerting import ALERTS, FINDING_ALERTS, SLA
from assets.analysis import BASELINE, VERDICTS
from assets.capacity import CAPACITY
from assets.history import CHANGE_POINTS, DRIFTS, FINDINGS, FORECASTS
from assets.ingest import REQUESTS
from assets.marts import MART_SPECS
from assets.reports import RUN_REPORT, WEEKLY_REPORT
from assets.retention import RETENTION
from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.orchestration.executors import executor_for
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.settings import Settings

MART_KEYS = [spec.key for spec in MART_SPECS]
# Every step reads or writes the object store, the warehouse and (when set) Postgres, and
# every step replaces whole partitions, so repeating one is safe: a dropped connection or a
# restarting server is retried after 1, 2 and 4 s (jittered). Bad input is not retried: the
# steps raise dg.Failure(allow_retries=False) for it.
IO_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# What define_asset_job returns: resolved against the assets when the Definitions are built.
AssetJob = Any


def build_jobs(settings: Settings) -> list[AssetJob]:
    """The three jobs, each on the executor the settings ask for (else its own default)."""
    return [
        _ci_stage(executor_for(settings, dg.in_process_executor)),
        _nightly(executor_for(settings, dg.in_process_executor)),
        _weekly(executor_for(settings, dg.in_process_executor)),
    ]


def _ci_stage(executor: dg.ExecutorDefinition) -> AssetJob:
    return dg.define_asset_job(
        "ci_stage",
        op_retry_policy=IO_RETRY,
        selection=dg.AssetSelection.assets(
            REQUESTS, RUN_SUMMARY, BASELINE, VERDICTS, SLA, ALERTS, RUN_REPORT, CAPACITY
        ),
        partitions_def=runs_partitions,
        # The steps form a chain, so a process per step would only add imports (seconds
        # each); runs of different partitions still run in parallel, one process per run.
        # METRICS_EXECUTOR (e.g. celery) overrides this for every job.
        executor_def=executor,
        description="Everything one uploaded run needs: ingest, validate, summarise, judge, "
        "check the SLAs, alert; the capacity of a stepped or ramping test; last (after the "
        "alerts) the report.",
    )


def _nightly(executor: dg.ExecutorDefinition) -> AssetJob:
    return dg.define_asset_job(
        "nightly",
        op_retry_policy=IO_RETRY,
        selection=dg.AssetSelection.assets(
            CHANGE_POINTS, DRIFTS, FINDINGS, FINDING_ALERTS, RETENTION, *MART_KEYS
        ),
        executor_def=executor,
        description="History analyses over every run: the SQL marts, change points, drifts, "
        "findings and their alerts; then retention (deletes raw rows and runs past their "
        "retention).",
    )


def _weekly(executor: dg.ExecutorDefinition) -> AssetJob:
    return dg.define_asset_job(
        "weekly",
        op_retry_policy=IO_RETRY,
        selection=dg.AssetSelection.assets(FORECASTS, FINDINGS, FINDING_ALERTS, WEEKLY_REPORT),
        executor_def=executor,
        description="Forecasts, capacity findings and their alerts, and the week's report.",
    )
