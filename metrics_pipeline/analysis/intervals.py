"""Runs known only by a tool's interval rows (``interval_stats``): which rows count, and what
their percentiles describe. Shared by the run summaries and the verdicts, so that both show the
same percentile of the same requests."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from metrics_pipeline.stats import interval_percentiles
from metrics_pipeline.stats.quantiles import INTERVAL_LEVELS

# The window of the percentiles a tool writes in a row of its history: Locust's last 10 s
# (its CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW), written every second.
PERCENTILE_WINDOW = "10s"


def one_source(intervals: pl.DataFrame, by: Sequence[str] = ("run_id",)) -> pl.DataFrame:
    """Per group of ``by`` (a run, or a run's endpoint), the rows of the file with the most
    rows: files of one run that summarise the same requests (Locust writes three) must not be
    pooled. Ties go to the first file name."""
    if intervals.height == 0:
        return intervals
    keys = list(by)
    best = (
        intervals.group_by(*keys, "source_file")
        .len()
        .sort(
            [*keys, "len", "source_file"],
            descending=[*(False for _ in keys), True, False],
            nulls_last=True,
        )
        .group_by(keys, maintain_order=True)
        .first()
    )
    return intervals.join(
        best.select(*keys, "source_file"), on=[*keys, "source_file"], nulls_equal=True
    )


def percentile_inputs(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One run's (and endpoint's) rows as the ``knots``, ``counts`` and ``sizes`` of
    :func:`~metrics_pipeline.stats.interval_quantile_statistics`.

    A row's size is the requests its percentiles describe: those of the rows that end within
    :data:`PERCENTILE_WINDOW` up to its end, itself included. Locust writes a row a second with
    the percentiles of its last 10 s (10 rows' requests); a tool's consecutive 10 s periods
    (Artillery) or one summary per run (k6) describe their own rows only.
    """
    rows = rows.sort("ts", nulls_last=True).with_columns(
        sizes=pl.when(pl.col("ts").is_null())
        .then(pl.col("count"))
        .otherwise(pl.col("count").fill_null(0).rolling_sum_by("ts", PERCENTILE_WINDOW))
    )
    knots = rows.select(list(INTERVAL_LEVELS)).cast(pl.Float64).fill_null(math.nan).to_numpy()
    counts = rows["count"].cast(pl.Float64).fill_null(0.0).to_numpy()
    return knots, counts, rows["sizes"].cast(pl.Float64).to_numpy()


def percentiles_by_endpoint(rows: pl.DataFrame, columns: Mapping[str, str]) -> pl.DataFrame:
    """Per run x endpoint of ``rows`` (one file each: :func:`one_source`), the percentiles of
    all its intervals' requests (:func:`~metrics_pipeline.stats.interval_percentiles`), as
    the columns named by the keys of ``columns`` (values: ``"p50"``, ``"p95"`` ...); null where
    the tool never reports one."""
    out = []
    for (run_id, endpoint), group in rows.group_by("run_id", "endpoint"):
        knots, counts, sizes = percentile_inputs(group)
        values = interval_percentiles(knots, counts, list(columns.values()), sizes=sizes)
        out.append(
            {"run_id": run_id, "endpoint": endpoint, **dict(zip(columns, values, strict=True))}
        )
    keys = {"run_id": rows.schema["run_id"], "endpoint": rows.schema["endpoint"]}
    return pl.DataFrame(out, schema=keys | dict.fromkeys(columns, pl.Float64)).fill_nan(None)
