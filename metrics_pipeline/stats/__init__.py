"""Statistics on load-test results: plain numpy/scipy functions, no Dagster."""

from metrics_pipeline.stats.compare import (
    Comparison,
    benjamini_hochberg,
    compare_rates,
    compare_samples,
)

__all__ = ["Comparison", "benjamini_hochberg", "compare_rates", "compare_samples"]
