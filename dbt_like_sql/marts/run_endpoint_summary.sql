-- grain: one row per run x endpoint
-- depends on: ref('stg_requests'), ref('int_request_percentiles'), ref('int_interval_rows'), ref('int_interval_latency')
-- The SQL twin of metrics_pipeline.analysis.summary.summarize_run (the run_summary table), so the
-- same numbers can be rebuilt inside Postgres (but the percentiles of tools without per-request
-- data, which are computed once, in Python, and read from run_summary). Per-request statistics
-- where a run has request rows;
-- a tool's interval rows only for endpoints without request rows, and its "(all)" row only for
-- runs without any (it would count the same requests twice). Latency describes successful
-- requests: failures are often instant refusals or time-outs and would hide the real latency.
-- Interval rows and their latency come from the intermediate models (int_interval_rows: which
-- rows count; int_interval_latency: their latency from run_summary and its roll-up), the
-- requests' exact percentiles from int_request_percentiles (two scans, memory bounded).
with run_span as (
    select
        run_id,
        greatest(
            cast(extract(epoch from max(completed_at) - min(completed_at)) as double), 1.0
        ) as span_s
    from {{ ref('stg_requests') }}
    group by run_id
),

request_counts as (
    select
        requests.run_id,
        requests.endpoint,
        count(*) as request_count,
        count(*) filter (where not requests.is_ok) as error_count,
        cast(count(*) filter (where not requests.is_ok) as double) / count(*) as error_rate,
        cast(count(*) as double) / run_span.span_s as throughput_rps,
        avg(requests.latency_ms) filter (where requests.is_ok) as latency_mean,
        max(requests.latency_ms) filter (where requests.is_ok) as latency_max
    from {{ ref('stg_requests') }} as requests
    inner join run_span on requests.run_id = run_span.run_id
    group by requests.run_id, requests.endpoint, run_span.span_s
),

from_requests as (
    select
        counts.run_id,
        counts.endpoint,
        counts.request_count,
        counts.error_count,
        counts.error_rate,
        counts.throughput_rps,
        counts.latency_mean,
        percentiles.latency_p50,
        percentiles.latency_p90,
        percentiles.latency_p95,
        percentiles.latency_p99,
        counts.latency_max,
        cast('requests' as varchar) as data_source
    from request_counts as counts
    left join {{ ref('int_request_percentiles') }} as percentiles
        on counts.run_id = percentiles.run_id
        and not percentiles.whole_run
        and counts.endpoint is not distinct from percentiles.endpoint
),

from_intervals as (
    select
        intervals.run_id,
        intervals.endpoint,
        cast(coalesce(sum(intervals.request_count), 0) as bigint) as request_count,
        cast(coalesce(sum(intervals.error_count), 0) as bigint) as error_count,
        cast(sum(intervals.error_count) as double)
        / nullif(sum(intervals.request_count), 0) as error_rate,
        case
            when sum(intervals.interval_s) > 0
                then cast(sum(intervals.request_count) as double) / sum(intervals.interval_s)
        end as throughput_rps,
        max(latency.latency_mean) as latency_mean,
        max(latency.latency_p50) as latency_p50,
        max(latency.latency_p90) as latency_p90,
        max(latency.latency_p95) as latency_p95,
        max(latency.latency_p99) as latency_p99,
        max(intervals.latency_max) as latency_max,
        cast('interval_stats' as varchar) as data_source
    from {{ ref('int_interval_rows') }} as intervals
    inner join {{ ref('int_interval_latency') }} as latency
        on intervals.run_id = latency.run_id
        and intervals.endpoint = latency.endpoint
    group by intervals.run_id, intervals.endpoint
)

select * from from_requests

union all

select from_intervals.*
from from_intervals
where not exists (
    select 1
    from from_requests
    where from_requests.run_id = from_intervals.run_id
        and from_requests.endpoint = from_intervals.endpoint
)
