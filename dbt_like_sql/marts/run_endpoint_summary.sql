-- grain: one row per run x endpoint
-- depends on: ref('stg_requests'), ref('stg_interval_stats')
-- The SQL twin of metrics_pipeline.analysis.summary.summarize_run (the run_summary table), so the same
-- numbers can be rebuilt inside Postgres. Per-request statistics where a run has request rows;
-- a tool's interval rows only for endpoints without request rows, and its "(all)" row only for
-- runs without any (it would count the same requests twice). Latency describes successful
-- requests: failures are often instant refusals or time-outs and would hide the real latency.
-- Interval percentiles are count-weighted means of the intervals' values, an approximation.
with run_span as (
    select
        run_id,
        greatest(
            cast(extract(epoch from max(completed_at) - min(completed_at)) as double), 1.0
        ) as span_s
    from {{ ref('stg_requests') }}
    group by run_id
),

from_requests as (
    select
        requests.run_id,
        requests.endpoint,
        count(*) as request_count,
        count(*) filter (where not requests.is_ok) as error_count,
        cast(count(*) filter (where not requests.is_ok) as double) / count(*) as error_rate,
        cast(count(*) as double) / run_span.span_s as throughput_rps,
        avg(requests.latency_ms) filter (where requests.is_ok) as latency_mean,
        quantile_cont(requests.latency_ms, 0.50) filter (where requests.is_ok) as latency_p50,
        quantile_cont(requests.latency_ms, 0.90) filter (where requests.is_ok) as latency_p90,
        quantile_cont(requests.latency_ms, 0.95) filter (where requests.is_ok) as latency_p95,
        quantile_cont(requests.latency_ms, 0.99) filter (where requests.is_ok) as latency_p99,
        max(requests.latency_ms) filter (where requests.is_ok) as latency_max,
        cast('requests' as varchar) as data_source
    from {{ ref('stg_requests') }} as requests
    inner join run_span on requests.run_id = run_span.run_id
    group by requests.run_id, requests.endpoint, run_span.span_s
),

-- Locust writes the same requests into several files: per run and endpoint only the file with
-- the most rows counts.
rows_per_file as (
    select
        run_id,
        endpoint,
        source_file,
        count(*) as row_count
    from {{ ref('stg_interval_stats') }}
    group by run_id, endpoint, source_file
),

best_file as (
    select
        run_id,
        endpoint,
        source_file
    from rows_per_file
    qualify row_number() over (
        partition by run_id, endpoint order by row_count desc, source_file asc nulls last
    ) = 1
),

chosen_intervals as (
    select intervals.*
    from {{ ref('stg_interval_stats') }} as intervals
    inner join best_file
        on intervals.run_id = best_file.run_id
        and intervals.endpoint = best_file.endpoint
        and intervals.source_file is not distinct from best_file.source_file
    where not (
        intervals.endpoint = '(all)'
        and intervals.run_id in (select run_span.run_id from run_span)
    )
),

from_intervals as (
    select
        run_id,
        endpoint,
        cast(coalesce(sum(request_count), 0) as bigint) as request_count,
        cast(coalesce(sum(error_count), 0) as bigint) as error_count,
        cast(sum(error_count) as double) / nullif(sum(request_count), 0) as error_rate,
        case
            when sum(interval_s) > 0 then cast(sum(request_count) as double) / sum(interval_s)
        end as throughput_rps,
        sum(latency_mean * request_count)
        / nullif(sum(request_count) filter (where latency_mean is not null), 0) as latency_mean,
        sum(latency_p50 * request_count)
        / nullif(sum(request_count) filter (where latency_p50 is not null), 0) as latency_p50,
        sum(latency_p90 * request_count)
        / nullif(sum(request_count) filter (where latency_p90 is not null), 0) as latency_p90,
        sum(latency_p95 * request_count)
        / nullif(sum(request_count) filter (where latency_p95 is not null), 0) as latency_p95,
        sum(latency_p99 * request_count)
        / nullif(sum(request_count) filter (where latency_p99 is not null), 0) as latency_p99,
        max(latency_max) as latency_max,
        cast('interval_stats' as varchar) as data_source
    from chosen_intervals
    group by run_id, endpoint
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
