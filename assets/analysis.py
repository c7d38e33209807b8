"""Analysis group: the baseline of a run and its regression verdicts."""

import dagster as dg
import polars as pl

from assets.ingest import REQUESTS
from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.analysis.baselines import pinned_runs
from metrics_pipeline.analysis.verdicts import (
    choose_baseline,
    judge_run,
    run_verdict,
    verdicts_markdown,
)
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import BaselineFileResource, WarehouseResource

BASELINE = dg.AssetKey(["analysis", "baseline"])
VERDICTS = dg.AssetKey(["analysis", "verdicts"])


@dg.asset(
    key=BASELINE,
    deps=[REQUESTS, RUN_SUMMARY],
    partitions_def=runs_partitions,
    group_name="analysis",
    kinds={"polars"},
    description="The runs a run is compared with: its manifest's explicit baseline, else the "
    "runs pinned in the baseline file, else the last 5 accepted non-outlier runs of the same "
    "suite, scenario and environment.",
)
def baseline(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    baselines: BaselineFileResource,
) -> dg.MaterializeResult:
    run_id = context.partition_key
    store = warehouse.get()
    runs = store.read("runs")
    candidate = runs.filter(pl.col("run_id") == run_id).row(0, named=True)
    regressed = set(
        store.scan("verdicts").filter(pl.col("regression")).select("run_id").collect()["run_id"]
    )
    chosen = choose_baseline(
        runs,
        candidate,
        regressed,
        summaries=store.read("run_summary"),
        pinned=pinned_runs(
            baselines.entries(), candidate["suite"], candidate["scenario"], candidate["environment"]
        ),
    )
    store.write_partition(
        "run_baselines",
        run_id,
        pl.DataFrame({"run_id": run_id, "baseline_run_id": chosen, "position": range(len(chosen))}),
    )
    return dg.MaterializeResult(
        metadata={"baseline_runs": ", ".join(chosen) or "(none yet)", "count": len(chosen)}
    )


@dg.asset(
    key=VERDICTS,
    deps=[BASELINE, RUN_SUMMARY],
    partitions_def=runs_partitions,
    group_name="analysis",
    kinds={"scipy", "parquet"},
    description="Regression verdict per endpoint and metric: baseline, candidate, relative "
    "change, 95 % CI, adjusted p-value.",
)
def verdicts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    run_id = context.partition_key
    store = warehouse.get()
    baseline_runs = store.read("run_baselines", [run_id])["baseline_run_id"].to_list()
    table = judge_run(
        store.read("requests", [run_id]),
        store.read("requests", baseline_runs),
        baseline_runs,
        candidate_intervals=store.read("interval_stats", [run_id]),
        baseline_intervals=store.read("interval_stats", baseline_runs),
        candidate_resources=store.read("resources", [run_id]),
        baseline_resources=store.read("resources", baseline_runs),
    )
    store.write_partition("verdicts", run_id, table)
    store.refresh_catalog()
    regressions = table.filter(pl.col("regression"))
    if regressions.height:
        context.log.warning(
            f"run {run_id}: {regressions.height} regression(s) on "
            + ", ".join(sorted(set(regressions["endpoint"])))
        )
    return dg.MaterializeResult(
        metadata={
            "verdict": run_verdict(table),
            "regressions": regressions.height,
            "baseline_runs": ", ".join(baseline_runs) or "(none yet)",
            "verdicts": dg.MetadataValue.md(
                verdicts_markdown(table)
                if baseline_runs
                else "No baseline yet: first run of its suite, scenario and environment."
            ),
        }
    )
