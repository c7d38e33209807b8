"""Alert sensors: deliver the outbox and watch for overdue runs every minute; turn a failed
pipeline run into an alert (and a later successful one into its resolution)."""

import dagster as dg

from metrics_pipeline.alerts.lifecycle import Signals
from metrics_pipeline.alerts.signals import (
    missing_run_signals,
    pipeline_failure_signal,
    pipeline_success_scope,
)
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    ClockResource,
    WarehouseResource,
)

PARTITION_TAG = "dagster/partition"


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: raises alerts for expected runs that did not arrive, escalates "
    "unacknowledged alerts, and retries the notifications waiting in the outbox.",
)
def alert_delivery_sensor(
    warehouse: WarehouseResource, alerting: AlertingResource, clock: ClockResource
) -> dg.SkipReason:
    store = warehouse.get()
    outcome = alerting.apply(
        store,
        lambda config, now: missing_run_signals(
            store.read("runs"), config, now, store.read("triage")
        ),
        clock.now(),
    )
    return dg.SkipReason(
        f"{outcome.new_deliveries.height} new notification(s); "
        f"{outcome.pending.height} waiting in the outbox"
    )


def _failure_message(context: dg.RunFailureSensorContext) -> str:
    steps = context.get_step_failure_events()
    if steps:
        error = steps[0].event_specific_data.error
        return f"step {steps[0].step_key}: {error.message.strip() if error else 'failed'}"
    return context.failure_event.message or "run failed"


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed run of any job (ingest, CI stage, nightly, weekly) becomes a "
    "critical pipeline_failure alert, delivered like every other alert.",
)
def alert_on_run_failure(
    context: dg.RunFailureSensorContext,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> None:
    run = context.dagster_run
    signal = pipeline_failure_signal(
        run.job_name,
        run.tags.get(PARTITION_TAG),
        run.tags.get("suite"),
        _failure_message(context),
        run.run_id,
    )
    try:
        outcome = alerting.apply(
            warehouse.get(), lambda config, now: Signals([signal]), clock.now()
        )
    except dg.Failure as exc:  # resources.not_retried: a config file that does not parse
        # A broken alerting config may be why the run failed: say so instead of failing too.
        context.log.error(f"cannot record the alert for run {run.run_id}: {exc.description}")
        return
    context.log.info(
        f"alert {signal.fingerprint} for failed run {run.run_id}; "
        f"{outcome.pending.height} notification(s) waiting"
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A successful run resolves the pipeline_failure alert of the same job and "
    "partition.",
)
def resolve_on_run_success(
    context: dg.RunStatusSensorContext,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> None:
    run = context.dagster_run
    scope = pipeline_success_scope(run.job_name, run.tags.get(PARTITION_TAG))
    alerting.apply(warehouse.get(), lambda config, now: scope, clock.now())
