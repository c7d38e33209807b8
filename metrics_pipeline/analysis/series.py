"""Per-run histories: one value per run for each combination x endpoint x metric, in run order.

These series are what the nightly and weekly analyses (change points, drift, forecasts) look
at. Only valid runs count; each point keeps the run's id, start, git sha and service version, so
a finding can say since which run and version something changed.
"""

from __future__ import annotations

import polars as pl

from metrics_pipeline.analysis.baselines import METRICS

SERIES_KEYS = ("suite", "scenario", "environment", "endpoint", "metric")
RUN_COLUMNS = ("run_id", "started_at", "git_sha", "service_version")
RESOURCES = "(resources)"


def run_series(runs: pl.DataFrame, summaries: pl.DataFrame) -> pl.DataFrame:
    """Long table: suite, scenario, environment, endpoint, metric, run_id, started_at,
    git_sha, service_version, value; sorted by series then start."""
    valid = runs.filter(pl.col("valid")).select("suite", "scenario", "environment", *RUN_COLUMNS)
    return (
        summaries.join(valid, on="run_id")
        .unpivot(
            index=["suite", "scenario", "environment", "endpoint", *RUN_COLUMNS],
            on=list(METRICS),
            variable_name="metric",
            value_name="value",
        )
        .filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
        .select(*SERIES_KEYS, *RUN_COLUMNS, "value")
        .sort([*SERIES_KEYS, "started_at", "run_id"])
    )


def resource_series(runs: pl.DataFrame, resources: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Per-run means of each resource metric over all hosts, as series with the endpoint
    "(resources)", in the long format of :func:`run_series`."""
    valid = runs.filter(pl.col("valid")).select("suite", "scenario", "environment", *RUN_COLUMNS)
    means = (
        resources.lazy().group_by("run_id", "metric").agg(value=pl.col("value").mean()).collect()
    )
    return (
        means.join(valid, on="run_id")
        .with_columns(endpoint=pl.lit(RESOURCES))
        .select(*SERIES_KEYS, *RUN_COLUMNS, "value")
        .filter(pl.col("value").is_finite())
        .sort([*SERIES_KEYS, "started_at", "run_id"])
    )


def iter_series(series: pl.DataFrame, min_points: int = 1):
    """(key dict, frame of one series in run order) for series with at least ``min_points``."""
    for key, frame in series.group_by(list(SERIES_KEYS), maintain_order=True):
        if frame.height >= min_points:
            yield dict(zip(SERIES_KEYS, key, strict=True)), frame
