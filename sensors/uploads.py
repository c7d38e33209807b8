"""new_run_sensor: each complete upload (with run.json) becomes a partition and a CI-stage run.

The daemon evaluates sensors in a loop of 5 s (Dagster's ``MIN_INTERVAL_LOOP_TIME``, not
configurable); ``minimum_interval_seconds`` only spaces evaluations further apart. So that an
upload is found within a second or two, a tick that finds nothing keeps looking: it lists the
upload markers again every POLL_EVERY_S for up to POLL_FOR_S (each listing is one request for
the markers of the last minutes, see ``ingest.discovery.scan_uploads``), and returns as soon as
an upload arrives. It does so only under the daemon (a previous tick ended moments ago); a tick
evaluated on demand (``metrics-pipeline demo``, tests) returns at once.
"""

import dataclasses
import time

import dagster as dg
import polars as pl

from metrics_pipeline.alerts.signals import UPLOAD_REJECTED, upload_signals
from metrics_pipeline.ingest.discovery import FULL_SCAN_S, Scan, scan_uploads
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    ClockResource,
    ObjectStoreResource,
    WarehouseResource,
)

# A tick lasts at most about POLL_FOR_S (plus the listings), so the daemon's next one starts
# within a second of it: the gap between two looks at the bucket stays under about 1 s.
POLL_FOR_S = 4.0
POLL_EVERY_S = 0.5
# A previous tick this recent means the daemon is ticking the sensor in its loop.
DAEMON_TICKS_WITHIN_S = 60.0


# Dagster stamps ticks with the wall clock (not the pipeline's clock, which METRICS_NOW may
# freeze); tests give their own.
wall_clock = time.time


def _under_daemon(context: dg.SensorEvaluationContext) -> bool:
    last = context.last_tick_completion_time
    return last is not None and 0 <= wall_clock() - last < DAEMON_TICKS_WITHIN_S


def _scan(context: dg.SensorEvaluationContext, object_store: ObjectStoreResource) -> Scan:
    store = object_store.get()
    scan = scan_uploads(store, context.cursor)
    if not _under_daemon(context):
        return scan
    deadline, present = time.monotonic() + POLL_FOR_S, scan.present
    while not (scan.uploads or scan.rejected) and time.monotonic() + POLL_EVERY_S < deadline:
        time.sleep(POLL_EVERY_S)
        scan = scan_uploads(store, scan.cursor)
    # The looks at the markers that follow a full listing know nothing of what is gone: the
    # tick keeps its listing's (or a daemon's tick, the last look, never resolved an
    # upload_rejected alert of a deleted upload).
    return scan if scan.present is not None else dataclasses.replace(scan, present=present)


@dg.sensor(
    job_name="ci_stage",
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Finds completed uploads: each tick lists the recent upload markers (for up to "
    f"{POLL_FOR_S:.0f} s, every {POLL_EVERY_S} s, until one arrives) and every "
    f"{FULL_SCAN_S:.0f} s all of "
    "raw/; each new run, or new version of a run (any of its files changed), adds the "
    "partition <run_id> and requests the ci_stage job. A run.json it refuses raises an "
    "upload_rejected warning with why (resolved when that run.json is accepted or gone).",
)
def new_run_sensor(
    context: dg.SensorEvaluationContext,
    object_store: ObjectStoreResource,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> dg.SensorResult | dg.SkipReason:
    scan = _scan(context, object_store)
    for rejected in scan.rejected:
        # Reported on the tick (visible in the UI) and skipped; the other uploads go on.
        context.log.error(f"rejected upload {rejected.key}: {rejected.reason}")
    _tell_uploaders(context, scan, warehouse, alerting, clock)
    if not scan.uploads:
        reasons = "; ".join(f"{r.key}: {r.reason}" for r in scan.rejected)
        context.update_cursor(scan.cursor)
        return dg.SkipReason(f"no new runs. Rejected: {reasons}" if reasons else "no new runs")
    known = set(context.instance.get_dynamic_partitions(runs_partitions.name))
    new_ids = sorted({u.run_id for u in scan.uploads} - known)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{u.run_id}:{u.version}",
                partition_key=u.run_id,
                tags={
                    "upload_version": u.version,
                    "suite": u.suite,
                    "scenario": u.manifest.scenario,
                    "environment": u.manifest.environment,
                },
            )
            for u in scan.uploads
        ],
        dynamic_partitions_requests=[runs_partitions.build_add_request(new_ids)] if new_ids else [],
        cursor=scan.cursor,
    )


def _tell_uploaders(
    context: dg.SensorEvaluationContext,
    scan: Scan,
    warehouse: WarehouseResource,
    alerting: AlertingResource,
    clock: ClockResource,
) -> None:
    """Alerts for the refused run.json files, resolved by the accepted ones and by those
    gone from the bucket (a full listing's ``present``; only where such an alert is open: a
    tick of new runs and a full listing, every ``FULL_SCAN_S``, pay a read of the alerts, an
    idle tick nothing). Queued, not delivered here (``alert_delivery_sensor`` sends them
    within a minute): the tick's run requests must not wait on a receiver. Never fails the
    tick: its cursor would not move, and the same refused upload would stop every other one
    from being ingested."""
    if not (scan.rejected or scan.uploads or scan.present is not None) or not alerting.notify:
        # A rebuild (``notify`` off) replays the bucket: the refused uploads were told when
        # they came, and raised again they would reopen alerts a person has resolved.
        return
    try:
        store = warehouse.get()
        alerts = store.read("alerts")
        rejections = alerts.filter(
            (pl.col("kind") == UPLOAD_REJECTED) & (pl.col("status") != "resolved")
        )
        open_keys = set(rejections["endpoint"])
        gone = open_keys - scan.present if scan.present is not None else set()
        resolved = {upload.key for upload in scan.uploads} & open_keys | gone
        rejected = [(r.key, r.reason) for r in scan.rejected]
        if not (rejected or resolved):
            return
        alerting.apply(
            store,
            lambda config, now: upload_signals(rejected, sorted(resolved)),
            clock.now(),
            deliver_now=False,
        )
    except Exception as exc:  # the alerts are secondary to ingesting the other uploads
        description = exc.description if isinstance(exc, dg.Failure) else repr(exc)
        context.log.error(f"cannot record the rejected uploads' alerts: {description}")
