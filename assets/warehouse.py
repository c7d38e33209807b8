"""Warehouse group: per-run aggregates."""

import dagster as dg

from assets.ingest import REQUESTS
from metrics_pipeline.analysis.summary import SUMMARY_COLUMNS, summarize_run, summary_markdown
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import WarehouseResource
from metrics_pipeline.stats.sketch import sketch_requests

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
    run_id = context.partition_key
    store = warehouse.get()
    # Scans, not frames: both read only the columns they use, streaming.
    requests = store.scan("requests", [run_id]).select(SUMMARY_COLUMNS)
    summary = summarize_run(requests, store.read("interval_stats", [run_id]))
    sketches = sketch_requests(requests)
    with store.replace_partitions(run_id, ["run_summary", "latency_sketches"]) as writer:
        writer.write("run_summary", summary)
        writer.write("latency_sketches", sketches)
    store.refresh_catalog()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.height,
            "sketch_buckets": sketches.height,
            "summary": dg.MetadataValue.md(summary_markdown(summary)),
        }
    )
