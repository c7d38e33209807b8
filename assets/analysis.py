"""Analysis group: the baseline of a run and its regression verdicts."""

import dagster as dg

from assets.ingest import REQUESTS
from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.analysis.verdicts import change_words, run_verdict, verdicts_markdown
from metrics_pipeline.orchestration.partitions import run_check, runs_partitions
from metrics_pipeline.orchestration.resources import (
    BaselineFileResource,
    VerdictRulesResource,
    WarehouseResource,
)
from metrics_pipeline.stages import ci

BASELINE = dg.AssetKey(["analysis", "baseline"])
VERDICTS = dg.AssetKey(["analysis", "verdicts"])
NO_REGRESSION = "no_regression"
TOP_REGRESSIONS = 3  # shown as plain metadata values, not only in the Markdown table


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
    check_specs=[
        run_check(
            NO_REGRESSION,
            VERDICTS,
            blocking=False,
            description="Fails (red on the run's partition) when the run regressed: an endpoint "
            "and metric worse than its baseline by the threshold, significantly. Does not stop "
            "the SLA, alert and report steps.",
        )
    ],
)
def verdicts(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    verdict_rules: VerdictRulesResource,
) -> dg.MaterializeResult:
    run_id = context.partition_key
    judgement = ci.judge(warehouse.get(), run_id, verdict_rules.get())
    table, baseline_runs = judgement.verdicts, judgement.baseline_runs
    regressions = judgement.regressions
    endpoints = sorted(set(regressions["endpoint"]))
    verdict = run_verdict(table)
    if regressions.height:
        context.log.warning(
            f"run {run_id}: {regressions.height} regression(s) on " + ", ".join(endpoints)
        )
    # Run tags: the Runs page shows and filters by them without opening the run.
    context.instance.add_run_tags(
        context.run_id,
        {"metrics/verdict": verdict, "metrics/regressed": ",".join(endpoints)[:200] or "none"},
    )
    worst = regressions.sort("change", descending=True).head(TOP_REGRESSIONS)
    top = {
        f"regression {i}": (
            f"{row['endpoint']} {row['metric']} {change_words(row['change'], row['metric'])}"
        )
        for i, row in enumerate(worst.iter_rows(named=True), start=1)
    }
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_REGRESSION,
                passed=regressions.height == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"regressed: {', '.join(endpoints)}" if endpoints else verdict,
                metadata={"regressions": regressions.height, **top},
            )
        ],
        metadata={
            "verdict": verdict,
            "regressed_endpoints": ", ".join(endpoints) or "none",
            **top,
            "regressions": regressions.height,
            "baseline_runs": ", ".join(baseline_runs) or "(none yet)",
            "verdicts": dg.MetadataValue.md(
                verdicts_markdown(table, judgement.alphas)
                if baseline_runs
                else "No baseline yet: first run of its suite, scenario and environment."
            ),
        },
    )
