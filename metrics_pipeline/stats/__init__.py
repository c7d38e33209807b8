"""Statistics on load-test results: plain numpy/scipy/statsmodels functions, no Dagster.

``capacity`` (scipy.optimize) and ``history`` (scipy.stats) are imported on first use of one
of their names: together they take about a second to import, and ``compare``, the CI gate,
needs neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from metrics_pipeline.stats.compare import (
    Comparison,
    RunNoise,
    RunStatistic,
    benjamini_hochberg,
    compare_paired,
    compare_runs,
    count_rate_statistic,
    interval_percentiles,
    interval_quantile_statistics,
    mean_statistic,
    moderated_noise,
    quantile_statistics,
    rate_statistic,
    resolution_of,
    run_spread,
    series_statistic,
    taken_apart,
)
from metrics_pipeline.stats.forecast import (
    CAPACITY_HORIZON,
    PERFORMANCE_HORIZON,
    Forecast,
    TimeToLimit,
    backtest_forecast,
    forecast,
    mape,
    time_to_threshold,
)

if TYPE_CHECKING:
    from metrics_pipeline.stats.capacity import (
        LoadSteps,
        USLFit,
        fit_usl,
        load_at_latency_sla,
        steps_from_series,
    )
    from metrics_pipeline.stats.history import (
        ChangePoint,
        Correlation,
        Drift,
        MannKendall,
        TheilSen,
        change_points,
        correlate,
        detect_anomalies,
        detect_change_points,
        detect_drift,
        mann_kendall,
        theil_sen,
    )

# Names of the lazily imported modules, and the module each comes from.
LAZY = {
    "LoadSteps": "capacity",
    "USLFit": "capacity",
    "fit_usl": "capacity",
    "load_at_latency_sla": "capacity",
    "steps_from_series": "capacity",
    "ChangePoint": "history",
    "Correlation": "history",
    "Drift": "history",
    "MannKendall": "history",
    "TheilSen": "history",
    "change_points": "history",
    "correlate": "history",
    "detect_anomalies": "history",
    "detect_change_points": "history",
    "detect_drift": "history",
    "mann_kendall": "history",
    "theil_sen": "history",
}


def __getattr__(name: str) -> Any:
    module = LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CAPACITY_HORIZON",
    "PERFORMANCE_HORIZON",
    "ChangePoint",
    "Comparison",
    "Correlation",
    "Drift",
    "Forecast",
    "LoadSteps",
    "MannKendall",
    "RunNoise",
    "RunStatistic",
    "TheilSen",
    "TimeToLimit",
    "USLFit",
    "backtest_forecast",
    "benjamini_hochberg",
    "change_points",
    "compare_paired",
    "compare_runs",
    "correlate",
    "count_rate_statistic",
    "detect_anomalies",
    "detect_change_points",
    "detect_drift",
    "fit_usl",
    "forecast",
    "interval_percentiles",
    "interval_quantile_statistics",
    "load_at_latency_sla",
    "mann_kendall",
    "mape",
    "mean_statistic",
    "moderated_noise",
    "quantile_statistics",
    "rate_statistic",
    "resolution_of",
    "run_spread",
    "series_statistic",
    "steps_from_series",
    "taken_apart",
    "theil_sen",
    "time_to_threshold",
]
