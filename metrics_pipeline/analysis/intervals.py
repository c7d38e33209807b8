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
    """The rows of one file per group: files of one run that summarise the same requests
    (Locust writes three) must not be pooled.

    Parameters
    ----------
    intervals : polars.DataFrame
        ``interval_stats`` rows.
    by : sequence of str
        The group: a run (``run_id``; its spans), or a run's endpoint (its statistics).

    Returns
    -------
    polars.DataFrame
        Per group, the rows of the ``source_file`` with the most rows (ties: the first name,
        a null name last).
    """
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
    r"""One run's (and endpoint's) rows as the inputs of
    :func:`~metrics_pipeline.stats.interval_quantile_statistics`.

    A row's size is the requests its percentiles describe: those of the rows that end within
    :data:`PERCENTILE_WINDOW` :math:`w` up to its end, itself included,

    .. math:: s_i = \sum_{j:\ t_i - w < t_j \le t_i} c_j,

    :math:`c_i` itself when the row has no time (a summary of the whole run). Locust writes a
    row a second with the percentiles of its last 10 s (10 rows' requests); a tool's
    consecutive 10 s periods (Artillery) or one summary per run (k6) describe their own rows.

    Parameters
    ----------
    rows : polars.DataFrame
        ``interval_stats`` rows of one file (:func:`one_source`).

    Returns
    -------
    knots : numpy.ndarray, shape (m, len(INTERVAL_LEVELS))
        Per row min, p50, p90, p95, p99, max; NaN where not reported. Rows in time order.
    counts : numpy.ndarray, shape (m,)
        Requests per row (0 where unknown: such rows are left out).
    sizes : numpy.ndarray, shape (m,)
        :math:`s_i`.
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
    """The percentiles of all the requests of each run x endpoint known by its intervals, as
    its summary, SLAs and verdicts take them (:func:`~metrics_pipeline.stats.interval_percentiles`:
    percentiles do not average).

    Parameters
    ----------
    rows : polars.DataFrame
        ``interval_stats`` rows, one file per run and endpoint (:func:`one_source`).
    columns : mapping of str to str
        Output column -> the percentile (``"p50"``, ``"p95"`` ...).

    Returns
    -------
    polars.DataFrame
        ``run_id``, ``endpoint`` and the ``columns`` (float), null where the tool never
        reports that percentile.
    """
    out = []
    for (run_id, endpoint), group in rows.group_by("run_id", "endpoint"):
        knots, counts, sizes = percentile_inputs(group)
        values = interval_percentiles(knots, counts, list(columns.values()), sizes=sizes)
        out.append(
            {"run_id": run_id, "endpoint": endpoint, **dict(zip(columns, values, strict=True))}
        )
    keys = {"run_id": rows.schema["run_id"], "endpoint": rows.schema["endpoint"]}
    return pl.DataFrame(out, schema=keys | dict.fromkeys(columns, pl.Float64)).fill_nan(None)
