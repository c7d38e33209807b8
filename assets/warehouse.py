"""Warehouse group: per-run aggregates."""

import dagster as dg

from assets.ingest import REQUESTS
from metrics_pipeline.analysis.summary import summary_markdown
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import WarehouseResource
from metrics_pipeline.stages import ci

RUN_SUMMARY = dg.AssetKey(["warehouse", "run_summary"])


@dg.asset(
    key=RUN_SUMMARY,
    deps=[REQUESTS],
    partitions_def=runs_partitions,
    group_name="warehouse",
    kinds={"polars", "parquet"},
    description="One row per run x endpoint: volume, errors, throughput, latency percentiles "
    "(from per-request rows, else from the tool's interval summaries); also the run's "
    "mergeable latency sketches (run x endpoint x minute, 1 % relative accuracy).",
)
def run_summary(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    result = ci.summarise(warehouse.get(), context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.summary.height,
            "sketch_buckets": result.sketches.height,
            "summary": dg.MetadataValue.md(summary_markdown(result.summary)),
        }
    )
