"""Alert sensors: deliver the outbox and watch for overdue runs every minute; turn a failed
pipeline run into an alert (and a later successful one into its resolution)."""

import dagster as dg

from metrics_pipeline.alerts.lifecycle import Signals
from metrics_pipeline.alerts.signals import (
    missing_run_signals,
    pipeline_failure_signal,
    pipeline_success_scope,
)
from metrics_pipeline.orchestration.inprocess import failed_on_checks
from metrics_pipeline.orchestration.partitions import PARTITION_TAG
from metrics_pipeline.orchestration.resources import (
    LAUNCHPAD_INPUT,
    AlertingResource,
    ClockResource,
    WarehouseResource,
)


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


def _failure(context: dg.RunFailureSensorContext) -> tuple[str, str]:
    """Why the run failed, in the user's words, and what failed: ``"input"`` (a value typed
    in the Launchpad, ``LAUNCHPAD_INPUT``), ``"validation"`` (only a blocking check: the
    failed checks' descriptions say why) or ``"pipeline"``."""
    steps = context.get_step_failure_events()
    if steps and all(
        step.step_failure_data.user_failure_data is not None
        and LAUNCHPAD_INPUT in step.step_failure_data.user_failure_data.metadata
        for step in steps
    ):
        return steps[0].step_failure_data.user_failure_data.description or "", "input"
    if failed_on_checks(steps):
        records = context.instance.get_records_for_run(
            context.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
        failed = [e.description or e.check_name for e in evaluations if not e.passed]
        if failed:
            return "; ".join(failed), "validation"
    if steps:
        error = steps[0].step_failure_data.error
        # Dagster wraps the step's own exception (an op's error, a retry policy given up):
        # below its wrappers is the error that says what went wrong (ours keep their words).
        while error is not None and error.cause is not None and _wrapper(error.cls_name):
            error = error.cause
        words = error.message.strip() if error else "failed"
        return f"step {steps[0].step_key}: {words}", "pipeline"
    return context.failure_event.message or "run failed", "pipeline"


def _wrapper(cls_name: str) -> bool:
    """Dagster's own errors around a step's exception (and its retry policy's)."""
    return cls_name.startswith("Dagster") or "Retry" in cls_name


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed run of any job (CI stage, nightly, weekly, triage) becomes a "
    "critical pipeline_failure alert, delivered like every other alert, with the step and "
    "its error; a run that failed only its validation (an invalid upload) an invalid_run "
    "warning with the failed checks' reasons; a value mistyped in the Launchpad none.",
)
def alert_on_run_failure(
    context: dg.RunFailureSensorContext,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> None:
    run = context.dagster_run
    message, failed = _failure(context)
    if failed == "input":
        # The person who launched it sees the failure and why at once; nobody is paged.
        context.log.info(f"run {run.run_id} failed on its Launchpad input ({message}): no alert")
        return
    signal = pipeline_failure_signal(
        run.job_name,
        run.tags.get(PARTITION_TAG),
        run.tags.get("suite"),
        message,
        run.run_id,
        invalid=failed == "validation",
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
