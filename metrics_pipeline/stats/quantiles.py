r"""Exact quantiles in two streaming passes: memory bounded by the buckets, not the group.

A group of :math:`n` values sorted as :math:`x_{(0)} \le \dots \le x_{(n-1)}` has the linearly
interpolated quantile

.. math::

    h = (n - 1)\,q, \qquad
    Q(q) = x_{(\lfloor h \rfloor)}
        + \bigl(x_{(\lceil h \rceil)} - x_{(\lfloor h \rfloor)}\bigr)\,(h - \lfloor h \rfloor),

numpy's default, polars' ``quantile(q, interpolation="linear")`` and Postgres'
``percentile_cont`` to the float. (DuckDB's ``quantile_cont`` computes
:math:`x_{(\lfloor h \rfloor)}(1 - d) + x_{(\lceil h \rceil)}\,d` with
:math:`d = h - \lfloor h \rfloor` for doubles, which can differ in the last two bits.)
Computed directly it needs all :math:`n` values at once.

Here the values are bucketed with the latency sketches' buckets (:func:`stats.sketch.bucket_expr`:
bucket :math:`i` holds :math:`\gamma^{i-1} < x \le \gamma^i`, every value
:math:`\le` ``MIN_LATENCY_MS`` in ``ZERO_BUCKET``; what matters is only that the bucket never
decreases as the value grows).

1. Pass 1 counts the values per group and bucket, with their minimum and maximum. With
   :math:`c_j` values in bucket :math:`j` and :math:`b_j = \sum_{i < j} c_i` values in the
   buckets below it, the order statistic of 0-based rank :math:`k` lies in the bucket with
   :math:`b_j \le k < b_j + c_j`, at rank :math:`k - b_j` among that bucket's values. It is the
   bucket's minimum when :math:`k = b_j` or the minimum equals the maximum, its maximum when
   :math:`k = b_j + c_j - 1`.
2. Pass 2 keeps only the values of the buckets whose order statistics are still unknown (at most
   two per group and quantile, each bucket 2 % wide at 1 % accuracy), sorts them per group and
   bucket and reads place :math:`k - b_j`.

Both order statistics come out exactly, so the quantile is the same float as the one-pass
computation, ties and all. Whole-millisecond latencies below 50 ms never need pass 2 (a bucket
there is narrower than 1 ms: it holds one integer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from numpy.typing import ArrayLike
from scipy import special

from metrics_pipeline.stats.sketch import DEFAULT_ACCURACY, bucket_expr

# The two order statistics each quantile interpolates between.
_SIDES = {"lower": pl.Expr.floor, "upper": pl.Expr.ceil}


def exact_quantiles(
    values: pl.LazyFrame,
    by: Sequence[str],
    quantiles: Mapping[str, float],
    column: str = "latency_ms",
    accuracy: float = DEFAULT_ACCURACY,
) -> pl.DataFrame:
    r"""Per ``by`` group, the exact linearly interpolated quantiles of ``column``.

    .. math::

        Q(q) = x_{(\lfloor h \rfloor)}
            + \bigl(x_{(\lceil h \rceil)} - x_{(\lfloor h \rfloor)}\bigr)\,(h - \lfloor h \rfloor),
        \qquad h = (n - 1)\,q,

    with :math:`x_{(k)}` the 0-based order statistics of the group's :math:`n` non-null values,
    the same float as ``pl.col(column).quantile(q, interpolation="linear")``, found in two
    streaming scans of ``values`` (see the module's description): the memory is the buckets'
    counts plus the values of at most two buckets per group and quantile.

    Parameters
    ----------
    values
        The population, already filtered (e.g. successful requests); nulls of ``column`` are
        left out, as one-pass quantiles ignore them, and so are NaN and infinite values (no
        bucket holds them; the formats' parsers never let one through).
    by
        Grouping columns. Groups without a non-null value have no row.
    quantiles
        Output column name -> q in [0, 1].
    column
        The numeric column.
    accuracy
        Relative width of the buckets (the latency sketches'); only the memory depends on it.

    Returns
    -------
    polars.DataFrame
        One row per group: the ``by`` columns, then one Float64 column per quantile.
    """
    by = list(by)
    values = (
        values.select(*by, value=pl.col(column).cast(pl.Float64))
        .filter(pl.col("value").is_finite())
        .with_columns(bucket=bucket_expr("value", accuracy))
    )
    # Pass 1: count, minimum and maximum per group and bucket (a few hundred rows per group).
    counts = (
        values.group_by(*by, "bucket")
        .agg(count=pl.len(), low=pl.col("value").min(), high=pl.col("value").max())
        .collect(engine="streaming")
    )
    # A group number instead of the ``by`` columns from here on (they may hold nulls).
    groups = counts.select(by).unique().sort(by, nulls_last=True).with_row_index("group")
    buckets = (
        counts.join(groups, on=by, nulls_equal=True)
        .drop(by)
        .sort("group", "bucket")
        .with_columns(
            below=(pl.col("count").cum_sum() - pl.col("count")).over("group"),
            total=pl.col("count").sum().over("group"),
        )
    )
    located = locate_ranks(buckets, quantiles)
    needed = located.filter(pl.col("value").is_null()).select("group", "bucket", "below").unique()
    if needed.height:
        # Pass 2: only the values of the buckets that hold an order statistic not yet known,
        # numbered within their bucket.
        needed = needed.join(groups, on="group")
        keys = [*by, "bucket"]
        inside = (
            values.join(needed.lazy().select(keys), on=keys, how="semi", nulls_equal=True)
            .collect(engine="streaming")
            .join(needed, on=keys, nulls_equal=True)
            .sort("group", "bucket", "value")
            .select(
                "group",
                "bucket",
                rank=pl.col("below") + pl.int_range(pl.len()).over("group", "bucket"),
                found=pl.col("value"),
            )
        )
        located = located.join(inside, on=["group", "bucket", "rank"], how="left").select(
            pl.exclude("value", "found"), value=pl.coalesce("value", "found")
        )
    return (
        groups.join(interpolate(located, quantiles), on="group", how="inner")
        .sort("group")
        .drop("group")
    )


def locate_ranks(buckets: pl.DataFrame, quantiles: Mapping[str, float]) -> pl.DataFrame:
    r"""Pass 1's reading: for each group, quantile and side (``lower``: rank
    :math:`\lfloor h \rfloor`, ``upper``: :math:`\lceil h \rceil`), the bucket holding that
    rank, the values below that bucket, and the order statistic itself when it is the bucket's
    minimum or maximum (else null).

    ``buckets`` has per ``group`` and ``bucket`` the ``count``, ``low`` (minimum), ``high``
    (maximum), ``below`` (values in lower buckets) and ``total`` (the group's count).
    """
    groups = buckets.select("group", "total").unique("group")
    quantile_rows = pl.DataFrame(
        {"quantile": list(quantiles), "q": list(quantiles.values())},
        schema={"quantile": pl.String, "q": pl.Float64},
    )
    h = (pl.col("total") - 1).cast(pl.Float64) * pl.col("q")
    ranks = pl.concat(
        [
            groups.join(quantile_rows, how="cross").select(
                "group", "quantile", h=h, side=pl.lit(side), rank=rounding(h).cast(pl.Int64)
            )
            for side, rounding in _SIDES.items()
        ]
    )
    # The bucket of rank k: the last one with below <= k (every bucket holds a value).
    located = ranks.sort("rank").join_asof(
        buckets.with_columns(pl.col("below").cast(pl.Int64)).sort("below"),
        left_on="rank",
        right_on="below",
        by="group",
        strategy="backward",
        check_sortedness=False,
    )
    last = pl.col("below") + pl.col("count") - 1
    value = (
        pl.when((pl.col("rank") == pl.col("below")) | (pl.col("low") == pl.col("high")))
        .then(pl.col("low"))
        .when(pl.col("rank") == last)
        .then(pl.col("high"))
    )
    return located.select("group", "quantile", "h", "side", "rank", "bucket", "below", value=value)


def interpolate(located: pl.DataFrame, quantiles: Mapping[str, float]) -> pl.DataFrame:
    """One row per group: each quantile from its two order statistics, computed as polars
    computes it (the lower one when both are equal)."""
    lower, upper, h = pl.col("lower"), pl.col("upper"), pl.col("h")
    pairs = located.group_by("group", "quantile").agg(
        h=pl.col("h").first(),
        lower=pl.col("value").filter(pl.col("side") == "lower").first(),
        upper=pl.col("value").filter(pl.col("side") == "upper").first(),
    )
    result = (
        pl.when(lower == upper).then(lower).otherwise((h - h.floor()) * (upper - lower) + lower)
    )
    return (
        pairs.with_columns(result=result)
        .group_by("group")
        .agg(
            **{
                name: pl.col("result").filter(pl.col("quantile") == name).first()
                for name in quantiles
            }
        )
    )


# interval_stats columns and the quantile level each reports: a tool's min and max are the 0
# and 1 quantiles of its interval.
INTERVAL_LEVELS = {"min": 0.0, "p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "max": 1.0}


def pooled_quantiles(
    knots: ArrayLike,
    counts: ArrayLike,
    qs: ArrayLike,
    *,
    sizes: ArrayLike | None = None,
    floor: float | None = None,
) -> np.ndarray:
    r"""Quantiles of the requests of :math:`m` intervals, each known only by a few quantiles.

    Tools without per-request data (Artillery, Locust's stats history, k6 summaries) report,
    per interval :math:`i` with :math:`c_i` requests, its min, p50, p90, p95, p99 and max
    (:data:`INTERVAL_LEVELS`). The run's requests have the count-weighted mixture of the
    intervals' distributions,

    .. math::

        F(x) = \frac{\sum_i c_i F_i(x)}{\sum_i c_i}, \qquad
        Q(q) = \inf\{x : F(x) \ge q\},

    and percentiles do not average: with a slow tail in 10 % of the requests, the p95 of an
    interval that happened to get few of them lies below the tail, the run's does not.

    *Levels.* A tool's percentile :math:`p` of :math:`c` values (``sizes``), interpolated
    between order statistics as numpy's default does (type 7), sits at rank
    :math:`(c - 1)p + 1`, i.e. at Hazen's level

    .. math:: l(p) = \frac{(c - 1)\,p + \tfrac12}{c}

    of the interval's distribution (:math:`c \ge 2`): the min at :math:`1/(2c)`, the max at
    :math:`1 - 1/(2c)`, each with the point mass :math:`1/(2c)` beyond it. Taking a p95 of 20
    requests at level 0.95 instead would make the pooled p95 depend on the intervals' size.

    *Between levels* :math:`l_j < l_{j+1}` at values :math:`v_j < v_{j+1}`, an interval's
    distribution is interpolated as locally log-normal, the normal score linear in
    :math:`\ln x`:

    .. math::

        F_i(x) = \Phi\Bigl(z_j + \frac{\ln x - \ln v_j}{\ln v_{j+1} - \ln v_j}
                 (z_{j+1} - z_j)\Bigr), \qquad z_j = \Phi^{-1}(l_j),

    exact for log-normal latencies, where linear interpolation in :math:`q` between the
    median and a far minimum would make the density at the median too low, and so its
    sampling error too high. Tied knots are a point mass. :math:`Q` is found by bisection
    over the knots (every level at once), then by Brent's method on :math:`\ln x` between
    two of them, where :math:`F` is smooth.

    Parameters
    ----------
    knots : array_like, shape (m, len(INTERVAL_LEVELS))
        Per interval the values at the levels of :data:`INTERVAL_LEVELS`, NaN where the tool
        does not report one. A missing inner level is interpolated the same way; a missing
        min or max (Locust's history has no min) is extrapolated log-normally from the two
        nearest known inner levels, or else is the lowest or highest value any interval
        reports. Each row is made non-decreasing (tools round their percentiles).
    counts : array_like, shape (m,)
        Requests per interval; intervals with no requests or no value are left out.
    qs : array_like
        Levels in [0, 1].
    sizes : array_like, shape (m,), optional
        Requests each interval's percentiles were computed from, where that is more than its
        count: Locust writes a row a second with the percentiles of the last 10 s. Default
        ``counts``.
    floor : float, optional
        Values below it (a latency of 0 in whole milliseconds) are taken as it, for the
        logarithms; default half the smallest positive value.

    Returns
    -------
    numpy.ndarray
        :math:`Q(q)` for each level; NaN when no interval has requests and a value.
    """
    qs = np.asarray(qs, dtype=float)
    if not np.all((qs >= 0) & (qs <= 1)):
        raise ValueError(f"levels must lie in [0, 1], got {qs}")
    values = np.array(knots, dtype=float, ndmin=2)
    weights = np.asarray(counts, dtype=float)
    sizes = weights if sizes is None else np.maximum(np.asarray(sizes, dtype=float), weights)
    keep = (weights > 0) & np.isfinite(values).any(axis=1)
    values, weights, sizes = values[keep], weights[keep], sizes[keep]
    if values.size == 0:
        return np.full(qs.shape, np.nan)
    if floor is None or not floor > 0:
        floor = log_floor(values)
    values = np.where(np.isnan(values), np.nan, np.maximum(values, floor))
    lowest, highest = np.nanmin(values), np.nanmax(values)
    base = np.fromiter(INTERVAL_LEVELS.values(), dtype=float)
    c = np.maximum(sizes, 2.0)[:, None]
    scores = special.ndtri(((c - 1) * base + 0.5) / c)
    logs = np.log(values)  # NaN where unknown
    # Vectorised over the intervals (Locust writes a row a second: thousands per run).
    _extrapolate_ends(logs, scores)
    fallback = np.isnan(logs[:, [0, -1]])  # ends without two known levels to go by
    logs[:, [0, -1]] = np.where(fallback, np.log([lowest, highest]), logs[:, [0, -1]])
    _interpolate_inner(logs, scores)
    values = np.where(np.isnan(values), np.exp(logs), values)  # known values kept exact
    values[:, [0, -1]] = np.where(fallback, [lowest, highest], values[:, [0, -1]])
    values = np.maximum.accumulate(values, axis=1)
    logs = np.log(values)
    weights = weights / weights.sum()
    last = base.size - 1
    rows = np.arange(values.shape[0])

    def mixture(x: np.ndarray, right: bool = True) -> np.ndarray:
        # F(x) (right: knots <= x counted) or F(x-) (left: knots < x) at each x, per interval:
        # below its first knot 0, from its last 1, else the normal score interpolated on ln x.
        x = np.asarray(x, dtype=float)[:, None, None]
        j = ((values <= x) if right else (values < x)).sum(axis=2) - 1  # (points, intervals)
        jj = np.clip(j, 0, last - 1)
        lo, hi = logs[rows, jj], logs[rows, jj + 1]
        share = np.clip((np.log(x[:, :, 0]) - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
        part = special.ndtr(scores[rows, jj] + share * (scores[rows, jj + 1] - scores[rows, jj]))
        return np.where(j < 0, 0.0, np.where(j >= last, 1.0, part)) @ weights

    # Where used: the per-request path never needs scipy.optimize (0.15 s of imports).
    from scipy import optimize

    # Every level at once: the knots around it by bisection over the distinct knots,
    # F(grid[lo]) < q <= F(grid[hi]) (F(grid[-1]) = 1) ...
    grid = np.unique(values)
    targets = qs.ravel()
    lo, hi = np.full(targets.size, -1), np.full(targets.size, grid.size - 1)
    while (open_ := hi - lo > 1).any():
        mid = (lo + hi) // 2
        up = mixture(grid[mid]) >= targets
        lo, hi = np.where(open_ & ~up, mid, lo), np.where(open_ & up, mid, hi)
    out = grid[hi].astype(float)  # the first knot, or inside a point mass at grid[hi] ...
    inside = (hi > 0) & (mixture(grid[hi], right=False) >= targets)
    for index in np.flatnonzero(inside):
        # ... or between two knots, where F is smooth (no interval has a knot there): Brent's
        # root of F(e^t) = q on ln x. Both ends are evaluated again as Brent will: a level
        # that F reaches exactly at a knot may fall either side of it by a rounding.
        def gap(t: float, q: float = targets[index]) -> float:
            return float(mixture([math.exp(t)])[0]) - q

        low, high = math.log(grid[lo[index]]), math.log(grid[hi[index]])
        if gap(high) <= 0:
            continue  # F reaches q at grid[hi]
        if gap(low) >= 0:
            out[index] = grid[lo[index]]
            continue
        out[index] = math.exp(optimize.brentq(gap, low, high, xtol=1e-12, rtol=1e-12))
    return out.reshape(qs.shape)


def log_floor(values: np.ndarray) -> float:
    """Where continuous values of 0 are put for logarithms: half the smallest positive value
    (1e-3 when there is none)."""
    positive = values[values > 0]
    return float(positive.min()) / 2 if positive.size else 1e-3


def _extrapolate_ends(logs: np.ndarray, scores: np.ndarray):
    """Fill unknown min and max logs (in place) on the log-normal line through the two
    nearest known inner levels of their row; left unknown without two distinct ones."""
    rows = np.arange(logs.shape[0])
    inner = np.isfinite(logs[:, 1:-1])
    columns = np.arange(1, logs.shape[1] - 1)
    for end, order in ((0, 1), (-1, -1)):
        missing = np.isnan(logs[:, end])
        if not missing.any():
            continue
        # the two known inner columns nearest this end: first two (min) or last two (max)
        ranked = np.sort(np.where(inner, order * columns, np.iinfo(np.int64).max), axis=1)
        a, b = order * ranked[:, 0], order * ranked[:, 1]
        usable = missing & (ranked[:, 1] != np.iinfo(np.int64).max)
        a, b = np.where(usable, a, 1), np.where(usable, b, 2)
        rise = logs[rows, b] - logs[rows, a]
        usable &= rise * order > 0
        slope = np.divide(
            rise, scores[rows, b] - scores[rows, a], where=usable, out=np.zeros_like(rise)
        )
        line = logs[rows, a] + slope * (scores[:, end] - scores[rows, a])
        logs[:, end] = np.where(usable, line, logs[:, end])


def _interpolate_inner(logs: np.ndarray, scores: np.ndarray):
    """Fill unknown inner logs (in place) linearly in the normal score between the nearest
    known levels on either side (both ends are known by now)."""
    known = np.isfinite(logs)
    if known.all():
        return
    index = np.arange(logs.shape[1])
    before = np.maximum.accumulate(np.where(known, index, 0), axis=1)
    after = np.minimum.accumulate(np.where(known, index, index[-1])[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(logs.shape[0])[:, None]
    z0, z1 = scores[rows, before], scores[rows, after]
    share = np.divide(scores - z0, z1 - z0, where=z1 > z0, out=np.zeros_like(scores))
    filled = logs[rows, before] + share * (logs[rows, after] - logs[rows, before])
    logs[~known] = filled[~known]
