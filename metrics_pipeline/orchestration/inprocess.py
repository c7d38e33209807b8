"""Run the sensor and the CI-stage job in this process, as the daemon would, against any store.

Used by ``metrics-pipeline demo`` and by the end-to-end tests: the same sensor, partitions,
job and resources as in production, without a daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import dagster as dg

from metrics_pipeline.ingest.discovery import full_scan_next
from metrics_pipeline.orchestration.partitions import runs_partitions

SENSOR = "new_run_sensor"
JOB = "ci_stage"
# Dagster's own tag names (dagster._core.storage.tags), spelled out: the module is private.
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
# What a step raises when a blocking asset check failed (dagster._core.errors, private): the
# ingest's Great Expectations check, which marks the run invalid in the warehouse.
CHECK_FAILED = "DagsterAssetCheckFailedError"


def console_logs(level: str | None) -> dict:
    """Run config that sets the console logger's level (empty: Dagster's default)."""
    return {"loggers": {"console": {"config": {"log_level": level}}}} if level else {}


def stopped_by_a_check(result: dg.ExecuteInProcessResult) -> bool:
    """Whether the run failed only because a blocking asset check failed.

    In ``ci_stage`` that is the ingest's validation: the run is stored, marked invalid (kept,
    never a baseline) and gets no verdict, which is the pipeline's normal answer to an invalid
    upload (an empty run, say), not a failure of the pipeline.
    """
    return (
        not result.success
        and failed_on_checks(result.get_step_failure_events())
        and any(not check.passed for check in result.get_asset_check_evaluations())
    )


def failed_on_checks(failures: list[dg.DagsterEvent]) -> bool:
    """Whether every failed step (``failures``, step failure events) failed on a blocking
    asset check (and there is one)."""
    return bool(failures) and all(
        event.step_failure_data.error is not None
        and event.step_failure_data.error.cls_name == CHECK_FAILED
        for event in failures
    )


@dataclass
class Tick:
    cursor: str | None
    run_ids: list[str]
    skipped: str | None
    results: dict[str, dg.ExecuteInProcessResult]

    @property
    def invalid(self) -> list[str]:
        """The runs a blocking check stopped: stored as invalid, as the pipeline treats them."""
        return [run for run, result in self.results.items() if stopped_by_a_check(result)]

    @property
    def failed(self) -> list[str]:
        """The runs whose job failed for any other reason."""
        return [
            run
            for run, result in self.results.items()
            if not result.success and not stopped_by_a_check(result)
        ]


def sense_and_run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    log_level: str | None = None,
    only: Collection[str] | None = None,
) -> Tick:
    """Evaluate ``new_run_sensor`` once, register its partitions, run each requested run.

    ``progress(done, total)`` is called before the first run and after each one. ``log_level``
    (e.g. ``"WARNING"``) sets the runs' console log level (default: Dagster's, DEBUG).
    ``only``: the run ids to register and run (default: every upload the sensor found); the
    store's other uploads are left as they are, for the daemon's sensor (the returned
    cursor has seen them, though).
    """
    sensor = defs.resolve_sensor_def(SENSOR)
    # As a context manager: the sensor's own instance handle is disposed when the tick ends.
    with dg.build_sensor_context(
        instance_ref=instance.get_ref(),
        # On demand, not every few seconds: list every upload, not only the announced ones.
        cursor=full_scan_next(cursor),
        definitions=defs,
        sensor_name=SENSOR,
        resources=defs.resources,
    ) as context:
        result = sensor.evaluate_tick(context)
    keep = None if only is None else set(only)

    def wanted(run_id: str) -> bool:
        return keep is None or run_id in keep

    # The daemon applies partition requests; evaluate_tick only returns them.
    for request in result.dynamic_partitions_requests or []:
        keys = [key for key in request.partition_keys if wanted(key)]
        if keys:
            instance.add_dynamic_partitions(runs_partitions.name, keys)
    job = defs.resolve_job_def(JOB)
    results = {}
    requests = [r for r in result.run_requests or [] if wanted(r.partition_key)]
    report = progress or (lambda _done, _total: None)
    report(0, len(requests))
    for done, request in enumerate(requests, start=1):
        results[request.partition_key] = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            # The tags the daemon gives a sensor's runs: its next tick then finds these runs by
            # run key and skips them (`make dev` after `make demo` re-runs nothing).
            tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR},
            raise_on_error=False,
            run_config=console_logs(log_level),
        )
        report(done, len(requests))
    return Tick(
        cursor=result.cursor,
        run_ids=[r.partition_key for r in requests],
        skipped=result.skip_message,
        results=results,
    )
