"""Triage from the UI: a job whose launch config marks an alert expected or invalid, as
``metrics-pipeline alerts expected|invalid ID`` does."""

from typing import Literal

import dagster as dg
from pydantic import Field

from metrics_pipeline.alerts.lifecycle import AlertNotFound
from metrics_pipeline.orchestration.executors import executor_for
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    ClockResource,
    WarehouseResource,
    launchpad_input_error,
)
from metrics_pipeline.settings import Settings
from metrics_pipeline.stages import triage


class TriageConfig(dg.Config):
    """Filled in the Launchpad: which alert, which mark, and why."""

    alert_id: str = Field(
        description="The alert's id (or a unique prefix), as listed; quoted in YAML "
        "('12345678' unquoted is a number)."
    )
    mark: Literal["expected", "invalid"] = Field(
        description="expected: a real, intended change (a regression is accepted into the "
        "baseline); invalid: a false alarm."
    )
    note: str | None = Field(default=None, description="Why; kept with the mark.")


@dg.op(description="Mark an alert expected or invalid and resolve it.")
def mark_alert(
    context: dg.OpExecutionContext,
    config: TriageConfig,
    warehouse: WarehouseResource,
    clock: ClockResource,
    alerting: AlertingResource,
) -> None:
    try:
        row = triage.mark_alert(
            warehouse.get(),
            config.alert_id,
            config.mark,
            note=config.note,
            marked_by=f"dagster run {context.run_id[:8]}",
            now=clock.now(),
            config=alerting.config(),
        )
    except AlertNotFound as exc:  # an unknown, ambiguous or resolved id typed in the Launchpad
        raise launchpad_input_error(exc) from exc
    context.log.info(f"alert {row['alert_id']} marked {config.mark}: {row['summary']}")


@dg.graph
def _triage_alert():
    mark_alert()


def build_job(settings: Settings) -> dg.JobDefinition:
    """The triage job, on the executor the settings ask for (in process by default)."""
    return _triage_alert.to_job(
        name="triage_alert",
        description="Triage an alert from the UI: mark it expected (an expected regression "
        "rebaselines its combination) or invalid; either way it is resolved and the runs it "
        "covered no longer raise it.",
        executor_def=executor_for(settings, dg.in_process_executor),
    )
