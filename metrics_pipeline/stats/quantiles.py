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

from collections.abc import Mapping, Sequence

import polars as pl

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
        left out, as one-pass quantiles ignore them.
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
        .filter(pl.col("value").is_not_null())
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
