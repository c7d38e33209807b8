"""Warehouse group: per-run aggregates."""

import dagster as dg

from assets.ingest import REQUESTS
from metrics_pipeline.partitions import runs_partitions
from metrics_pipeline.resources import WarehouseResource
from metrics_pipeline.summary import summarize_run, summary_markdown

RUN_SUMMARY = dg.AssetKey(["warehouse", "run_summary"])


@dg.asset(
    key=RUN_SUMMARY,
    deps=[REQUESTS],
    partitions_def=runs_partitions,
    group_name="warehouse",
    kinds={"polars", "parquet"},
    description="One row per run x endpoint: volume, errors, throughput, latency percentiles "
    "(from per-request rows, else from the tool's interval summaries).",
)
def run_summary(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    run_id = context.partition_key
    store = warehouse.get()
    summary = summarize_run(
        store.read("requests", [run_id]), store.read("interval_stats", [run_id])
    )
    store.write_partition("run_summary", run_id, summary)
    store.refresh_catalog()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.height,
            "summary": dg.MetadataValue.md(summary_markdown(summary)),
        }
    )
