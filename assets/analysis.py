"""Analysis group: the baseline of a run and its regression verdicts."""

import dagster as dg

from assets.ingest import REQUESTS
from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.analysis.verdicts import run_verdict, verdicts_markdown
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import BaselineFileResource, WarehouseResource
from metrics_pipeline.stages import ci

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
    chosen = ci.choose_baseline(warehouse.get(), context.partition_key, baselines.entries())
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
    judgement = ci.judge(warehouse.get(), run_id)
    table, baseline_runs = judgement.verdicts, judgement.baseline_runs
    regressions = judgement.regressions
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
