"""new_run_sensor: each complete upload (with run.json) becomes a partition and a CI-stage run."""

import dagster as dg

from metrics_pipeline.ingest.discovery import scan_uploads
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import ObjectStoreResource


@dg.sensor(
    job_name="ci_stage",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists the uploads in the object store; each new run, or new version of a run "
    "(any of its files changed), adds the partition <run_id> and requests the ci_stage job.",
)
def new_run_sensor(
    context: dg.SensorEvaluationContext, object_store: ObjectStoreResource
) -> dg.SensorResult | dg.SkipReason:
    scan = scan_uploads(object_store.get(), context.cursor)
    for rejected in scan.rejected:
        # Reported on the tick (visible in the UI) and skipped; the other uploads go on.
        context.log.error(f"rejected upload {rejected.key}: {rejected.reason}")
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
