"""Per-run summaries of the canonical ``requests`` table."""

from __future__ import annotations

import polars as pl

from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import ALL_ENDPOINTS

QUANTILES = {"latency_p50": 0.50, "latency_p90": 0.90, "latency_p95": 0.95, "latency_p99": 0.99}

# The request columns the summary and the latency sketches read: a large run's text columns
# (source file, error message) would cost more memory than the whole computation.
SUMMARY_COLUMNS = ("run_id", "endpoint", "ts", "ok", "latency_ms")
QUANTILE_BATCH_ROWS = 5_000_000


def summarize_requests(
    requests: pl.DataFrame | pl.LazyFrame, batch_rows: int = QUANTILE_BATCH_ROWS
) -> pl.DataFrame:
    """One row per run x endpoint: volume, errors, throughput and latency statistics.

    Latency statistics describe successful requests only: failures are often instant (refused
    connections) or time-outs, and mixing them in would hide the service's real latency.
    Quantiles interpolate linearly between order statistics (numpy's default, DuckDB's
    ``quantile_cont``). Throughput is requests per second over the run's observed span
    (first to last request of any endpoint, at least one second).

    A lazy frame (a scan of the warehouse) is read in one streaming pass per aggregate, so a
    7 M-request run never holds more than the columns the quantiles need.
    """
    # Grouping keys as categories: grouping millions of strings costs several times the data.
    requests = (
        requests.lazy()
        .select(SUMMARY_COLUMNS)
        .with_columns(pl.col("run_id", "endpoint").cast(pl.Categorical))
    )
    span = requests.group_by("run_id").agg(
        span_s=((pl.col("ts").max() - pl.col("ts").min()).dt.total_microseconds() / 1e6).clip(
            lower_bound=1.0
        )
    )
    volume = requests.group_by("run_id", "endpoint").agg(
        requests=pl.len(), errors=(~pl.col("ok")).sum()
    )
    span, volume = pl.collect_all([span, volume], engine="streaming")
    # Exact quantiles need every latency of a group in memory at once: endpoints are read in
    # batches of at most ``batch_rows`` requests, each by its own filtered streaming scan,
    # so the memory stays bounded however long the run. Filtering before grouping, rather
    # than inside each aggregate, keeps one copy of the latencies instead of one per quantile.
    latency = pl.concat(
        [
            requests.filter(pl.col("ok") & pl.col("endpoint").cast(pl.String).is_in(batch))
            .group_by("run_id", "endpoint")
            .agg(
                latency_mean=pl.col("latency_ms").mean(),
                latency_max=pl.col("latency_ms").max(),
                **{
                    name: pl.col("latency_ms").quantile(q, interpolation="linear")
                    for name, q in QUANTILES.items()
                },
            )
            .collect(engine="streaming")
            for batch in _endpoint_batches(volume, batch_rows)
        ]
        or [pl.DataFrame(schema={"run_id": pl.Categorical, "endpoint": pl.Categorical})],
        how="diagonal_relaxed",
    )
    summary = (
        volume.join(latency, on=["run_id", "endpoint"], how="left")
        .join(span, on="run_id")
        .with_columns(
            error_rate=pl.col("errors") / pl.col("requests"),
            throughput_rps=pl.col("requests") / pl.col("span_s"),
        )
        .sort("run_id", "endpoint")
    )
    return conform("run_summary", summary)


def _endpoint_batches(volume: pl.DataFrame, max_rows: int) -> list[list[str]]:
    """Endpoint names grouped so that each group has at most ``max_rows`` requests (over all
    runs), or is a single endpoint that alone has more."""
    per_endpoint = volume.group_by(pl.col("endpoint").cast(pl.String)).agg(pl.col("requests").sum())
    batches: list[list[str]] = []
    rows = max_rows
    for endpoint, count in per_endpoint.sort("endpoint").iter_rows():
        if rows + count > max_rows:
            batches.append([])
            rows = 0
        batches[-1].append(endpoint)
        rows += count
    return batches


def summarize_intervals(intervals: pl.DataFrame) -> pl.DataFrame:
    """One row per run x endpoint from pre-aggregated rows (tools without per-request data).

    Per run and endpoint only the file with the most rows is used (Locust writes the same
    requests into three files). Counts and errors add up; mean and percentiles are
    count-weighted means of the per-interval values, an approximation (percentiles do not
    average); max is the maximum. Throughput is the count over the summed interval lengths,
    null when the tool does not state them.
    """
    if intervals.height == 0:
        return conform("run_summary", pl.DataFrame())
    best_source = (
        intervals.group_by("run_id", "endpoint", "source_file")
        .len()
        .sort(["len", "source_file"], descending=[True, False], nulls_last=True)
        .unique(["run_id", "endpoint"], keep="first")
        .drop("len")
    )
    chosen = intervals.join(best_source, on=["run_id", "endpoint", "source_file"], nulls_equal=True)
    weight = pl.col("count").cast(pl.Float64)

    def weighted(column: str) -> pl.Expr:
        valid = pl.col(column).is_not_null()
        total = weight.filter(valid).sum()
        # null, not NaN, when the tool never reports this percentile
        return pl.when(total > 0).then((pl.col(column) * weight).filter(valid).sum() / total)

    summary = (
        chosen.group_by("run_id", "endpoint")
        .agg(
            requests=pl.col("count").sum(),
            errors=pl.col("errors").sum(),
            span_s=pl.col("interval_s").sum(),
            latency_mean=weighted("mean"),
            latency_p50=weighted("p50"),
            latency_p90=weighted("p90"),
            latency_p95=weighted("p95"),
            latency_p99=weighted("p99"),
            latency_max=pl.col("max").max(),
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
