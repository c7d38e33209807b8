"""Aggregations that keep charts small, and the Vega-Lite charts built from them.

A chart never embeds raw rows: a run of a million requests becomes, per endpoint, a few dozen
histogram bins and one point per time bucket, computed lazily in polars. The charts are plain
Vega-Lite dictionaries (built with altair) so the HTML can draw them and vl-convert can turn
them into SVG for the PDF.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl

from metrics_pipeline.common.text import display_names

# Bucket widths (seconds) for time series, the first that gives at most TARGET_POINTS buckets.
BUCKET_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
TARGET_POINTS = 120
HISTOGRAM_BINS = 40
WIDTH = 460
PALETTE = {"baseline": "#8c959f", "candidate": "#cf222e"}


def bucket_seconds(span_s: float, target: int = TARGET_POINTS) -> int:
    """The smallest bucket width of BUCKET_STEPS that splits ``span_s`` into ``target`` or
    fewer buckets (one minute for a two-hour run)."""
    for step in BUCKET_STEPS:
        if span_s / step <= target:
            return step
    return BUCKET_STEPS[-1]


def latency_histogram(
    candidate: pl.LazyFrame,
    baseline: pl.LazyFrame,
    endpoints: list[str],
    bins: int = HISTOGRAM_BINS,
) -> pl.DataFrame:
    """Share of successful requests per logarithmic latency bin, per endpoint and side.

    The bins of an endpoint span its 0.1 % to 99.9 % quantiles over both sides (the rare
    outliers fall into the edge bins instead of stretching the axis); log spacing because
    latency is right-skewed. Columns: endpoint, side, lo, hi, mid (geometric), share.
    """
    both = pl.concat(
        [
            frame.filter(pl.col("ok") & pl.col("endpoint").is_in(endpoints)).select(
                "endpoint", "latency_ms", side=pl.lit(side)
            )
            for side, frame in (("baseline", baseline), ("candidate", candidate))
        ]
    ).with_columns(pl.col("latency_ms").clip(lower_bound=1e-3))
    edges = both.group_by("endpoint").agg(
        lo=pl.col("latency_ms").quantile(0.001),
        hi=pl.col("latency_ms").quantile(0.999),
    )
    log_lo, log_hi = pl.col("lo").log(), pl.col("hi").log()
    width = pl.max_horizontal(log_hi - log_lo, pl.lit(1e-9)) / bins
    counted = (
        both.join(edges, on="endpoint")
        .with_columns(
            bin=((pl.col("latency_ms").log() - log_lo) / width)
            .floor()
            .clip(0, bins - 1)
            .cast(pl.Int32),
            width=width,
        )
        .group_by("endpoint", "side", "bin")
        .agg(count=pl.len(), lo=pl.col("lo").first(), width=pl.col("width").first())
        .with_columns(
            share=pl.col("count") / pl.col("count").sum().over("endpoint", "side"),
            lo_edge=(pl.col("lo").log() + pl.col("bin") * pl.col("width")).exp(),
            hi_edge=(pl.col("lo").log() + (pl.col("bin") + 1) * pl.col("width")).exp(),
        )
        .select(
            "endpoint",
            "side",
            lo=pl.col("lo_edge"),
            hi=pl.col("hi_edge"),
            mid=(pl.col("lo_edge") * pl.col("hi_edge")).sqrt(),
            share="share",
        )
        .sort("endpoint", "side", "lo")
    )
    return counted.collect()


def percentile_timeline(requests: pl.LazyFrame, every_s: int) -> pl.DataFrame:
    """Per endpoint and time bucket: p50, p95, p99 of successful requests, count and errors."""
    ok = pl.col("latency_ms").filter(pl.col("ok"))
    return (
        requests.select("ts", "endpoint", "ok", "latency_ms")
        .sort("ts")
        .group_by_dynamic("ts", every=f"{every_s}s", group_by="endpoint")
        .agg(
            p50=ok.quantile(0.50),
            p95=ok.quantile(0.95),
            p99=ok.quantile(0.99),
            count=pl.len(),
            errors=(~pl.col("ok")).sum(),
        )
        .sort("endpoint", "ts")
        .collect()
    )


def interval_timeline(intervals: pl.LazyFrame) -> pl.DataFrame:
    """The tool's own per-interval percentiles (tools without per-request data), same shape
    as :func:`percentile_timeline`. Several files of one endpoint are averaged per timestamp."""
    return (
        intervals.group_by("endpoint", "ts")
        .agg(
            p50=pl.col("p50").mean(),
            p95=pl.col("p95").mean(),
            p99=pl.col("p99").mean(),
            count=pl.col("count").max(),
            errors=pl.col("errors").max(),
        )
        .sort("endpoint", "ts")
        .collect()
    )


def resource_timeline(resources: pl.LazyFrame, every_s: int) -> pl.DataFrame:
    """Mean of every host x metric per time bucket."""
    return (
        resources.select("ts", "host", "metric", "value")
        .sort("ts")
        .group_by_dynamic("ts", every=f"{every_s}s", group_by=["host", "metric"])
        .agg(value=pl.col("value").mean())
        .sort("metric", "host", "ts")
        .collect()
    )


def span_seconds(frame: pl.LazyFrame) -> float:
    """Seconds between the first and the last timestamp of ``frame`` (0 when empty)."""
    first, last = frame.select(first=pl.col("ts").min(), last=pl.col("ts").max()).collect().row(0)
    return 0.0 if first is None else (last - first).total_seconds()


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    # Vega reads ISO timestamps; NaN/inf are not JSON, nulls are.
    out = frame.with_columns(
        [
            pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            for c, t in frame.schema.items()
            if isinstance(t, pl.Datetime)
        ]
        + [
            pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c)
            for c, t in frame.schema.items()
            if t.is_float()
        ]
    )
    return out.to_dicts()


def _shown(column: str, *frames: pl.DataFrame) -> list[pl.DataFrame]:
    """``frames`` with the names in ``column`` as reports show them (``display_names``: one
    line, at most 80 characters, still distinct), one mapping for all of them so that a name
    is the same label in every layer of a chart. Long names made the PDF take minutes."""
    names = [name for frame in frames for name in frame[column].drop_nulls().unique().sort()]
    shown = display_names(names)
    return [frame.with_columns(pl.col(column).replace(shown)) for frame in frames]


# The reports' font (report.css): charts measure their labels in the font they are drawn with,
# so a static SVG shown in another, wider font has its axis labels and legends cut off.
FONT = "DejaVu Sans"


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    return chart.configure(font=FONT).configure_view(stroke=None).to_dict()


def _column_facets(n: int) -> int:
    return 1 if n <= 1 else 2


def distribution_chart(histogram: pl.DataFrame) -> dict[str, Any]:
    """Baseline vs candidate latency distribution, one small panel per endpoint."""
    [histogram] = _shown("endpoint", histogram)
    endpoints = histogram["endpoint"].unique(maintain_order=True).to_list()
    base = (
        alt.Chart(alt.Data(values=_records(histogram)))
        .mark_line(interpolate="step-after", strokeWidth=1.8)
        .encode(
            x=alt.X("mid:Q", scale=alt.Scale(type="log"), title="latency (ms, log scale)"),
            y=alt.Y("share:Q", title="share of requests", axis=alt.Axis(format="%")),
            color=alt.Color(
                "side:N",
                scale=alt.Scale(domain=list(PALETTE), range=list(PALETTE.values())),
                title=None,
            ),
            tooltip=[
                alt.Tooltip("endpoint:N"),
                alt.Tooltip("side:N"),
                alt.Tooltip("lo:Q", format=".1f", title="from ms"),
                alt.Tooltip("hi:Q", format=".1f", title="to ms"),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(width=WIDTH // 2 if len(endpoints) > 1 else WIDTH, height=150)
    )
    chart = base.facet(
        facet=alt.Facet("endpoint:N", title=None, sort=endpoints),
        columns=_column_facets(len(endpoints)),
    ).resolve_scale(x="independent", y="independent")
    return _spec(chart)


def timeline_chart(timeline: pl.DataFrame) -> dict[str, Any]:
    """p50 / p95 / p99 over the run, one panel per percentile, one line per endpoint."""
    [timeline] = _shown("endpoint", timeline)
    long = timeline.unpivot(
        index=["endpoint", "ts"],
        on=["p50", "p95", "p99"],
        variable_name="percentile",
        value_name="latency_ms",
    ).drop_nulls("latency_ms")
    base = (
        alt.Chart(alt.Data(values=_records(long)))
        .mark_line(strokeWidth=1.4)
        .encode(
            x=alt.X("ts:T", title=None),
            y=alt.Y("latency_ms:Q", title="ms", scale=alt.Scale(zero=False)),
            color=alt.Color("endpoint:N", title="endpoint"),
            tooltip=["endpoint:N", "percentile:N", alt.Tooltip("latency_ms:Q", format=".1f")],
        )
        .properties(width=WIDTH + 200, height=130)
    )
    chart = base.facet(
        row=alt.Row("percentile:N", title=None, sort=["p50", "p95", "p99"])
    ).resolve_scale(y="independent")
    return _spec(chart)


def resource_chart(timeline: pl.DataFrame) -> dict[str, Any]:
    """Every resource metric over the run, one panel per metric, one line per host."""
    [timeline] = _shown("host", timeline)
    [timeline] = _shown("metric", timeline)
    base = (
        alt.Chart(alt.Data(values=_records(timeline)))
        .mark_line(strokeWidth=1.4)
        .encode(
            x=alt.X("ts:T", title=None),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            color=alt.Color("host:N", title="host"),
            tooltip=["host:N", "metric:N", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(width=WIDTH + 200, height=110)
    )
    chart = base.facet(row=alt.Row("metric:N", title=None)).resolve_scale(y="independent")
    return _spec(chart)


def comparison_chart(verdicts: pl.DataFrame, threshold: float) -> dict[str, Any]:
    """Relative change with its confidence interval (at the verdict's level) per endpoint x
    metric; the dashed line is the regression threshold. A suspect row (untested) has no
    interval."""
    [verdicts] = _shown("endpoint", verdicts)
    rows = verdicts.filter(pl.col("change").is_finite()).select(
        label=pl.col("endpoint") + " · " + pl.col("metric"),
        change="change",
        ci_low=pl.when(pl.col("ci_low").is_finite()).then("ci_low").otherwise("change"),
        ci_high=pl.when(pl.col("ci_high").is_finite()).then("ci_high").otherwise("change"),
        verdict="verdict",
    )
    order = rows["label"].to_list()
    colors = alt.Scale(
        domain=["regression", "trade-off", "suspect", "improvement", "ok"],
        range=["#cf222e", "#bf8700", "#8250df", "#1a7f37", "#57606a"],
    )
    base = alt.Chart(alt.Data(values=_records(rows)))
    y = alt.Y("label:N", sort=order, title=None)
    ci = base.mark_rule(strokeWidth=2).encode(
        y=y,
        x=alt.X("ci_low:Q", title="change vs baseline (+ = worse)", axis=alt.Axis(format="+%")),
        x2="ci_high:Q",
        color=alt.Color("verdict:N", scale=colors),
    )
    point = base.mark_point(filled=True, size=50).encode(
        y=y,
        x="change:Q",
        color=alt.Color("verdict:N", scale=colors),
        tooltip=[
            alt.Tooltip("label:N", title="endpoint · metric"),
            alt.Tooltip("change:Q", format="+.1%"),
            alt.Tooltip("ci_low:Q", format="+.1%", title="CI low"),
            alt.Tooltip("ci_high:Q", format="+.1%", title="CI high"),
        ],
    )
    rules = (
        alt.Chart(alt.Data(values=[{"x": 0.0}, {"x": threshold}]))
        .mark_rule(strokeDash=[4, 3], color="#8c959f")
        .encode(x="x:Q")
    )
    chart = alt.layer(rules, ci, point).properties(
        width=WIDTH + 100, height=max(60, 16 * len(order))
    )
    return _spec(chart)


def history_chart(history: pl.DataFrame, marks: pl.DataFrame, metric_title: str) -> dict[str, Any]:
    """One metric per run over the combination's history, one line per endpoint; ``marks``
    (endpoint, run_id, started_at, value) are the change points, drawn as rings."""
    history, marks = _shown("endpoint", history, marks)
    line = (
        alt.Chart(alt.Data(values=_records(history)))
        .mark_line(point=True)
        .encode(
            x=alt.X("started_at:T", title="run start"),
            y=alt.Y("value:Q", title=metric_title, scale=alt.Scale(zero=False)),
            color=alt.Color("endpoint:N", title="endpoint"),
            tooltip=["endpoint:N", "run_id:N", alt.Tooltip("value:Q", format=".1f")],
        )
    )
    layers = [line]
    if marks.height:
        layers.append(
            alt.Chart(alt.Data(values=_records(marks)))
            .mark_point(shape="circle", size=260, strokeWidth=2, color="#cf222e")
            .encode(x="started_at:T", y="value:Q", tooltip=["endpoint:N", "run_id:N"])
        )
    return _spec(alt.layer(*layers).properties(width=WIDTH + 200, height=220))


def bar_chart(frame: pl.DataFrame, category: str, value: str, title: str, fmt: str) -> dict:
    """Horizontal bars of ``value`` per ``category`` (errors per endpoint, for instance)."""
    [frame] = _shown(category, frame)
    chart = (
        alt.Chart(alt.Data(values=_records(frame)))
        .mark_bar(color="#cf222e")
        .encode(
            y=alt.Y(f"{category}:N", sort="-x", title=None),
            x=alt.X(f"{value}:Q", title=title, axis=alt.Axis(format=fmt)),
            tooltip=[f"{category}:N", alt.Tooltip(f"{value}:Q", format=fmt)],
        )
        .properties(width=WIDTH, height=max(40, 18 * frame.height))
    )
    return _spec(chart)


def forecast_chart(forecasts: pl.DataFrame, metric_title: str) -> dict[str, Any]:
    """Forecast mean with its prediction interval as a band, one colour per series."""
    [forecasts] = _shown("series", forecasts)
    base = alt.Chart(alt.Data(values=_records(forecasts)))
    color = alt.Color("series:N", title="series")
    band = base.mark_area(opacity=0.18).encode(
        x=alt.X("ts:T", title=None),
        y=alt.Y("lower:Q", title=metric_title),
        y2="upper:Q",
        color=color,
    )
    mean = base.mark_line().encode(
        x="ts:T",
        y="mean:Q",
        color=color,
        tooltip=[
            "series:N",
            alt.Tooltip("ts:T"),
            alt.Tooltip("mean:Q", format=".4g"),
            alt.Tooltip("lower:Q", format=".4g"),
            alt.Tooltip("upper:Q", format=".4g"),
        ],
    )
    return _spec(alt.layer(band, mean).properties(width=WIDTH + 200, height=220))
