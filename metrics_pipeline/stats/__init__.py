"""Statistics on load-test results: plain numpy/scipy/statsmodels functions, no Dagster."""

from metrics_pipeline.stats.capacity import (
    LoadSteps,
    USLFit,
    fit_usl,
    load_at_latency_sla,
    steps_from_series,
)
from metrics_pipeline.stats.compare import (
    Comparison,
    benjamini_hochberg,
    compare_rates,
    compare_samples,
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

__all__ = [
    "CAPACITY_HORIZON",
    "PERFORMANCE_HORIZON",
    "Comparison",
    "Forecast",
    "LoadSteps",
    "TimeToLimit",
    "USLFit",
    "backtest_forecast",
    "benjamini_hochberg",
    "compare_rates",
    "compare_samples",
    "fit_usl",
    "forecast",
    "load_at_latency_sla",
    "mape",
    "steps_from_series",
    "time_to_threshold",
]
