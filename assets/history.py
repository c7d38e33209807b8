"""History analyses (nightly and weekly stages): change points, drifts, forecasts, findings.

They read every valid run's summary and resource usage from the warehouse and rewrite their
tables whole: a history analysis is about the whole history, not one run. The stages are
imported by the steps that run them: the CI stage's runs load this module without them.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from assets.warehouse import RUN_SUMMARY
from metrics_pipeline.analysis.series import SERIES_KEYS
from metrics_pipeline.common.severity import severity_rank
from metrics_pipeline.common.text import md
from metrics_pipeline.orchestration.resources import WarehouseResource

CHANGE_POINTS = dg.AssetKey(["analysis", "change_points"])
DRIFTS = dg.AssetKey(["analysis", "drifts"])
FORECASTS = dg.AssetKey(["analysis", "forecasts"])
FINDINGS = dg.AssetKey(["analysis", "findings"])


def _table(frame: pl.DataFrame, columns: list[str], limit: int = 50) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.head(limit).iter_rows(named=True):
        cells = [
            f"{v:+.1%}"
            if c in {"change", "total_change"}
            else f"{v:.3g}"
            if isinstance(v, float)
            else md(v)
            if v is not None
            else ""
            for c, v in ((c, row[c]) for c in columns)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if frame.height > limit:
        lines.append(f"\n... and {frame.height - limit} more rows in the warehouse")
    return "\n".join(lines)


def _with_sparklines(frame: pl.DataFrame, series: pl.DataFrame) -> pl.DataFrame:
    from metrics_pipeline.analysis.findings import sparkline

    histories = series.group_by(list(SERIES_KEYS)).agg(pl.col("value").sort_by("started_at"))
    lines = histories.with_columns(
        history=pl.Series([sparkline(values) for values in histories["value"]], dtype=pl.String)
    ).drop("value")
    return frame.join(lines, on=list(SERIES_KEYS), how="left")


@dg.asset(
    key=CHANGE_POINTS,
    deps=[RUN_SUMMARY],
    group_name="analysis",
    kinds={"scipy", "parquet"},
    description="Steps in every per-run history (suite x scenario x environment x endpoint x "
    "metric), with the run, version and git sha that started each.",
)
def change_points(warehouse: WarehouseResource) -> dg.MaterializeResult:
    from metrics_pipeline.stages import nightly  # at use: scipy, statsmodels

    result = nightly.change_points(warehouse.get())
    table = result.table
    shown = _with_sparklines(table.sort("worse", "change", descending=True), result.series)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "worse": int(table["worse"].sum()),
            "change_points": dg.MetadataValue.md(
                _table(
                    shown,
                    [*SERIES_KEYS, "run_id", "service_version", "change", "p_value", "history"],
                )
            ),
        }
    )


@dg.asset(
    key=DRIFTS,
    deps=[RUN_SUMMARY, CHANGE_POINTS],
    group_name="analysis",
    kinds={"scipy", "parquet"},
    description="Slow significant trends (Mann-Kendall + Theil-Sen) that no single run shows, "
    "in each history since its last change point.",
)
def drifts(warehouse: WarehouseResource) -> dg.MaterializeResult:
    from metrics_pipeline.stages import nightly

    result = nightly.drifts(warehouse.get())
    table = result.table
    shown = _with_sparklines(table, result.series)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "drifts": dg.MetadataValue.md(
                _table(shown, [*SERIES_KEYS, "runs", "total_change", "p_value", "history"])
            ),
        }
    )


@dg.asset(
    key=FORECASTS,
    deps=[RUN_SUMMARY, CHANGE_POINTS],
    group_name="analysis",
    kinds={"statsmodels", "parquet"},
    description="30-day daily forecasts with 95 % prediction intervals for every history.",
)
def forecasts(warehouse: WarehouseResource) -> dg.MaterializeResult:
    from metrics_pipeline.stages import nightly

    table = nightly.forecasts(warehouse.get())
    last = table.filter(pl.col("step") == pl.col("step").max().over(list(SERIES_KEYS)))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "series": last.height,
            "at_horizon": dg.MetadataValue.md(
                _table(last, [*SERIES_KEYS, "ts", "mean", "lower", "upper", "method"])
            ),
        }
    )


class FindingsConfig(dg.Config):
    anomaly_sensitivity: float = Field(
        default=3.5, description="Robust z-score above which a KPI day is an anomaly."
    )


@dg.asset(
    key=FINDINGS,
    deps=[CHANGE_POINTS, DRIFTS],
    group_name="analysis",
    kinds={"polars"},
    description="What to do: rollback advice for steps (with the version that introduced "
    "them), drifts to investigate, capacity to add or to give back, resources that move "
    "with latency, KPI anomalies.",
)
def findings_asset(config: FindingsConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from metrics_pipeline.stages import nightly, triage

    store = warehouse.get()
    table = nightly.find(store, anomaly_sensitivity=config.anomaly_sensitivity)
    shown = triage.findings_with_marks(store, table).sort(severity_rank())
    precision = triage.precision(store)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "critical": int((table["severity"] == "critical").sum()),
            # `metrics-pipeline triage mark ID expected|invalid`: marked ones stop alerting.
            "findings": dg.MetadataValue.md(
                _table(
                    shown,
                    ["finding_id", "severity", "kind", "summary", "action", "mark"],
                )
            ),
            "triaged": int(shown["mark"].is_not_null().sum()),
            "detector_precision": dg.MetadataValue.md(
                _table(precision, ["month", "expected", "invalid", "precision"])
            ),
        }
    )
