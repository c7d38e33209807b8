"""Per-run summaries of the canonical ``requests`` table."""

from __future__ import annotations

import polars as pl

from metrics_pipeline.analysis.intervals import one_source, percentiles_by_endpoint
from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import ALL_ENDPOINTS
from metrics_pipeline.stats.quantiles import exact_quantiles

QUANTILES = {"latency_p50": 0.50, "latency_p90": 0.90, "latency_p95": 0.95, "latency_p99": 0.99}
# The same, as the interval_stats columns of tools that only report aggregates.
_INTERVAL_QUANTILES = {name: name.removeprefix("latency_") for name in QUANTILES}

# The request columns the summary and the latency sketches read: a large run's text columns
# (source file, error message) would cost more memory than the whole computation.
SUMMARY_COLUMNS = ("run_id", "endpoint", "ts", "ok", "latency_ms")


def summarize_requests(requests: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """One row per run x endpoint: volume, errors, throughput and latency statistics.

    Latency statistics describe successful requests only: failures are often instant (refused
    connections) or time-outs, and mixing them in would hide the service's real latency.
    Quantiles interpolate linearly between order statistics (numpy's default, Postgres'
    ``percentile_cont``). Throughput is requests per second over the run's observed span
    (first to last request of any endpoint, at least one second).

    A lazy frame (a scan of the warehouse) is read in streaming passes: counts and means in
    one, the exact quantiles in two more (:func:`stats.quantiles.exact_quantiles`), so the
    memory does not grow with the number of requests of an endpoint.
    """
    # Grouping keys as categories: grouping millions of strings costs several times the data.
    requests = (
        requests.lazy()
        .select(SUMMARY_COLUMNS)
        .with_columns(pl.col("run_id", "endpoint").cast(pl.Categorical))
    )
    good = pl.col("latency_ms").filter(pl.col("ok"))
    # One scan for counts, means and each endpoint's first and last request, the run's span
    # taken from those (collect_all of two aggregates of one scan would cache the whole scan).
    volume = (
        requests.group_by("run_id", "endpoint")
        .agg(
            requests=pl.len(),
            errors=(~pl.col("ok")).sum(),
            latency_mean=good.mean(),
            latency_max=good.max(),
            first=pl.col("ts").min(),
            last=pl.col("ts").max(),
        )
        .collect(engine="streaming")
    )
    span = volume.group_by("run_id").agg(
        span_s=((pl.col("last").max() - pl.col("first").min()).dt.total_microseconds() / 1e6).clip(
            lower_bound=1.0
        )
    )
    # Exact quantiles without holding an endpoint's latencies: a bucket count per endpoint,
    # then only the values of the buckets that hold the wanted order statistics.
    latency = exact_quantiles(
        requests.filter(pl.col("ok")), ["run_id", "endpoint"], QUANTILES, column="latency_ms"
    )
    summary = (
        volume.join(latency, on=["run_id", "endpoint"], how="left", nulls_equal=True)
        .join(span, on="run_id")
        .with_columns(
            error_rate=pl.col("errors") / pl.col("requests"),
            throughput_rps=pl.col("requests") / pl.col("span_s"),
        )
        .sort("run_id", "endpoint")
    )
    return conform("run_summary", summary)


def summarize_intervals(intervals: pl.DataFrame) -> pl.DataFrame:
    """One row per run x endpoint from pre-aggregated rows (tools without per-request data).

    Per run and endpoint only the file with the most rows is used (Locust writes the same
    requests into three files). Counts and errors add up; the mean is the count-weighted mean
    of the intervals' means (exact); the percentiles are those of all the intervals' requests
    (:func:`~metrics_pipeline.stats.interval_percentiles`, the requests the verdicts judge),
    null where the tool never reports one; max is the maximum. Throughput is the count over
    the summed interval lengths, null when the tool does not state them.
    """
    if intervals.height == 0:
        return conform("run_summary", pl.DataFrame())
    chosen = one_source(intervals, by=("run_id", "endpoint"))
    weight = pl.col("count").cast(pl.Float64)
    valid = pl.col("mean").is_not_null()
    total = weight.filter(valid).sum()
    summary = (
        chosen.group_by("run_id", "endpoint")
        .agg(
            requests=pl.col("count").sum(),
            errors=pl.col("errors").sum(),
            span_s=pl.col("interval_s").sum(),
            # null, not NaN, when the tool never reports a mean
            latency_mean=pl.when(total > 0).then(
                (pl.col("mean") * weight).filter(valid).sum() / total
            ),
            latency_max=pl.col("max").max(),
        )
        .join(
            percentiles_by_endpoint(chosen, _INTERVAL_QUANTILES),
            on=["run_id", "endpoint"],
            nulls_equal=True,
        )
        .with_columns(
            error_rate=pl.col("errors") / pl.col("requests"),
            throughput_rps=pl.when(pl.col("span_s") > 0).then(
                pl.col("requests") / pl.col("span_s")
            ),
        )
        .sort("run_id", "endpoint")
    )
    return conform("run_summary", summary)


def summarize_run(requests: pl.DataFrame | pl.LazyFrame, intervals: pl.DataFrame) -> pl.DataFrame:
    """Per-request summaries, plus interval summaries for endpoints with no request rows."""
    from_requests = summarize_requests(requests)
    if from_requests.height:
        # Per-request rows already cover every endpoint: a tool's overall total would count
        # the same requests twice.
        intervals = intervals.filter(pl.col("endpoint") != ALL_ENDPOINTS)
    from_intervals = summarize_intervals(intervals).join(
        from_requests.select("run_id", "endpoint"), on=["run_id", "endpoint"], how="anti"
    )
    return pl.concat([from_requests, from_intervals]).sort("run_id", "endpoint")


def summary_markdown(summary: pl.DataFrame) -> str:
    """A compact markdown table of a run summary for the Dagster UI."""
    header = "| endpoint | requests | error rate | rps | p50 ms | p95 ms | p99 ms | max ms |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in summary.iter_rows(named=True):
        lines.append(
            f"| {md(row['endpoint'])} | {row['requests']} | {_pct(row['error_rate'])} "
            f"| {_num(row['throughput_rps'])} | {_num(row['latency_p50'])} "
            f"| {_num(row['latency_p95'])} | {_num(row['latency_p99'])} "
            f"| {_num(row['latency_max'])} |"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
