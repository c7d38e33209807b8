"""The statistics backtest as an asset: how good the detectors are, on labelled data."""

import dagster as dg
from pydantic import Field


class BacktestConfig(dg.Config):
    size: str = Field(default="small", description="small (about a minute) or full.")
    seed: int = 0


@dg.asset(
    key=["analysis", "backtest"],
    group_name="analysis",
    kinds={"scipy"},
    description="Precision, recall, false-positive rate and detection delay of every detector, "
    "forecast MAPE, and minimum detectable effects, on labelled synthetic and fixture data.",
)
def backtest(context: dg.AssetExecutionContext, config: BacktestConfig) -> dg.MaterializeResult:
    # Imported here, not at the top: the code location (the daemon, the webserver, every run's
    # process) loads without it; only this step pays for it.
    from metrics_pipeline.evaluation.backtest import run_backtest

    report = run_backtest(config.size, config.seed, progress=context.log.info)
    return dg.MaterializeResult(
        metadata={
            "all_targets_met": report.all_targets_met,
            "elapsed_s": round(report.elapsed_s, 1),
            "report": dg.MetadataValue.md(report.as_markdown()),
        }
    )
