"""Capacity of each run whose load varies: the peak (or a lower bound of it) and the SLA load.

Part of the CI stage, partitioned by run like the table it writes: a stepped or ramping test's
capacity is a result of that run, wanted with its verdict, not a week later. Runs at constant
load (most CI runs) get a row saying why there is no fit, at the cost of one pass over their
requests.
"""

import dagster as dg

from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import AlertingResource, WarehouseResource

CAPACITY = dg.AssetKey(["analysis", "capacity"])


@dg.asset(
    key=CAPACITY,
    deps=[RUN_SUMMARY],
    partitions_def=runs_partitions,
    group_name="analysis",
    kinds={"scipy", "parquet"},
    description="For a stepped or ramping load test: the Universal Scalability Law fitted to "
    "concurrency (Little's law, per time window) and throughput; the peak throughput and the "
    "load at the peak with 95 % intervals, or a lower bound when the peak lies beyond the "
    "tested loads; the load at which p95 crosses its SLA. A constant-load run gets the reason "
    "it has no fit.",
)
def capacity(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, alerting: AlertingResource
) -> dg.MaterializeResult:
    # Imported here, not at the top: the code location (the daemon, the webserver, every run's
    # process) loads without it; only this step pays for it.
    from metrics_pipeline.stages import capacity as capacity_stage

    result = capacity_stage.fit_run(warehouse.get(), context.partition_key, alerting.catalog())
    row = result.table.row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "status": row["status"],
            "summary": row["summary"],
            "peak_is_bound": dg.MetadataValue.bool(bool(row["peak_is_bound"])),
            "n_windows": row["n_windows"],
            "sla_status": row["sla_status"] or "not evaluated",
        }
    )
