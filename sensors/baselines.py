"""stale_verdicts_sensor: a run judged against a baseline run that was ingested again since
(a re-upload, a corrected file) is judged again, so that its verdicts, alerts and report read
rows that exist.

A re-upload replaces the baseline run's rows whole; the runs compared with the old rows kept
verdicts that nothing could reproduce, and a baseline run re-uploaded because it was broken
(half its requests, a wrong scenario) may have been the cause of their regressions. Judging
again also chooses the baseline runs again: one that failed validation this time is left out.
"""

import dagster as dg
import polars as pl

from assets.alerting import ALERTS, SLA
from assets.analysis import BASELINE, VERDICTS
from assets.reports import RUN_REPORT
from metrics_pipeline.orchestration.partitions import PARTITION_TAG
from metrics_pipeline.orchestration.resources import WarehouseResource
from metrics_pipeline.stages import ci

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Everything of a run that its baseline runs decide, in the ci_stage's order.
REJUDGED = [BASELINE, VERDICTS, SLA, ALERTS, RUN_REPORT]
INTERVAL_S = 30


def _partitions_in_flight(instance: dg.DagsterInstance) -> list[str]:
    """The run ids (partitions) with a job queued or under way."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
    return sorted({run.tags[PARTITION_TAG] for run in runs if PARTITION_TAG in run.tags})


@dg.sensor(
    job_name="ci_stage",
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Finds runs judged against a baseline run that was ingested again since "
    "(re-uploaded) and requests their baseline, verdicts, SLA, alerts and report again "
    f"(every {INTERVAL_S} s; not while a job of the run or of its changed baseline runs is "
    "queued or under way, nor for a run whose raw rows are past retention).",
)
def stale_verdicts_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    stale = ci.stale_judgements(warehouse.get()).filter("judgeable")
    # Wait for the jobs of the runs involved: a baseline run's new version is valid before its
    # job has made its summary and verdicts, and judged against it then, the candidate read
    # it as a baseline run it may not be (a regression), and would never be judged again.
    busy = _partitions_in_flight(context.instance)
    waiting = stale.filter(pl.col("run_id").is_in(busy) | pl.col("baseline_run_id").is_in(busy))
    stale = stale.filter(~pl.col("run_id").is_in(waiting["run_id"].implode()))
    if stale.height == 0:
        later = (
            f"; {waiting['run_id'].n_unique()} wait for jobs under way" if waiting.height else ""
        )
        return dg.SkipReason(
            "no run to judge again: none was judged against a baseline run ingested again "
            "since and still has its raw rows (`metrics-pipeline check` lists the others)" + later
        )
    requests = []
    for (run_id,), rows in stale.group_by(["run_id"], maintain_order=True):
        # The run key names the baseline runs' ingests: judged again once per new ingest
        # (Dagster skips a run key it has launched), also when that run fails.
        changed = ", ".join(
            f"{run} ingested {'again ' + at.isoformat() if at else 'no more (gone)'}"
            for run, at in zip(rows["baseline_run_id"], rows["ingested_at"], strict=True)
        )
        context.log.info(f"judging {run_id} again: {changed}")
        requests.append(
            dg.RunRequest(
                run_key=f"rejudge:{run_id}:{changed}",
                partition_key=run_id,
                asset_selection=REJUDGED,
                tags={"rejudged_for": changed[:200]},
            )
        )
    return dg.SensorResult(run_requests=requests)
