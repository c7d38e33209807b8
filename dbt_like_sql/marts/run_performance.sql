-- grain: one row per run with request or interval data
-- depends on: ref('stg_requests'), ref('int_request_percentiles'), ref('stg_runs'), ref('run_endpoint_summary'), ref('int_interval_latency')
-- The performance tier. From request rows when the run has any: duration is first to last
-- request, throughput is requests over that span (at least one second, as in run_summary),
-- latency is over all successful requests of the run (exact percentiles: the run's row, whole_run,
-- of int_request_percentiles, two scans in bounded memory). Runs with only a tool's
-- interval rows use its "(all)" row when there is one, else the endpoints' rows: counts add up,
-- rates add up, percentiles are the run's roll-up in int_interval_latency (an approximation),
-- and the duration is the manifest's finished_at - started_at (null when not stated).
-- Throughput is the tool's rate when its intervals state their length, else requests over that
-- duration.
with request_counts as (
    select
        run_id,
        count(*) as request_count,
        count(*) filter (where not is_ok) as error_count,
        cast(extract(epoch from max(completed_at) - min(completed_at)) as double) as duration_s,
        avg(latency_ms) filter (where is_ok) as latency_mean,
        max(latency_ms) filter (where is_ok) as latency_max
    from {{ ref('stg_requests') }}
    group by run_id
),

from_requests as (
    select
        counts.run_id,
        counts.request_count,
        counts.error_count,
        counts.duration_s,
        counts.latency_mean,
        percentiles.latency_p50,
        percentiles.latency_p90,
        percentiles.latency_p95,
        percentiles.latency_p99,
        counts.latency_max
    from request_counts as counts
    left join {{ ref('int_request_percentiles') }} as percentiles
        on counts.run_id = percentiles.run_id
        and percentiles.whole_run
),

interval_endpoints as (
    select *
    from {{ ref('run_endpoint_summary') }}
    where data_source = 'interval_stats'
        and run_id not in (select request_counts.run_id from request_counts)
),

overall_rows as (
    select
        run_id,
        request_count,
        error_count,
        throughput_rps,
        latency_mean,
        latency_p50,
        latency_p90,
        latency_p95,
        latency_p99,
        latency_max
    from interval_endpoints
    where endpoint = '(all)'
),

endpoint_rows as (
    select
        endpoints.run_id,
        cast(sum(endpoints.request_count) as bigint) as request_count,
        cast(sum(endpoints.error_count) as bigint) as error_count,
        sum(endpoints.throughput_rps) as throughput_rps,
        max(latency.latency_mean) as latency_mean,
        max(latency.latency_p50) as latency_p50,
        max(latency.latency_p90) as latency_p90,
        max(latency.latency_p95) as latency_p95,
        max(latency.latency_p99) as latency_p99,
        max(endpoints.latency_max) as latency_max
    from interval_endpoints as endpoints
    -- The run's roll-up over its endpoints (endpoint null).
    left join {{ ref('int_interval_latency') }} as latency
        on endpoints.run_id = latency.run_id
        and latency.endpoint is null
    where endpoints.run_id not in (select overall_rows.run_id from overall_rows)
    group by endpoints.run_id
),

from_intervals as (
    select * from overall_rows
    union all
    select * from endpoint_rows
),

runs as (
    select
        run_id,
        cast(extract(epoch from finished_at - started_at) as double) as duration_s
    from {{ ref('stg_runs') }}
),

combined as (
    select
        run_id,
        cast('requests' as varchar) as data_source,
        request_count,
        error_count,
        duration_s,
        cast(request_count as double) / greatest(duration_s, 1.0) as throughput_rps,
        latency_mean,
        latency_p50,
        latency_p90,
        latency_p95,
        latency_p99,
        latency_max
    from from_requests

    union all

    select
        from_intervals.run_id,
        cast('interval_stats' as varchar) as data_source,
        from_intervals.request_count,
        from_intervals.error_count,
        runs.duration_s,
        coalesce(
            from_intervals.throughput_rps,
            cast(from_intervals.request_count as double) / greatest(runs.duration_s, 1.0)
        ) as throughput_rps,
        from_intervals.latency_mean,
        from_intervals.latency_p50,
        from_intervals.latency_p90,
        from_intervals.latency_p95,
        from_intervals.latency_p99,
        from_intervals.latency_max
    from from_intervals
    left join runs on from_intervals.run_id = runs.run_id
)

select
    run_id,
    data_source,
    request_count,
    error_count,
    cast(error_count as double) / nullif(request_count, 0) as error_rate,
    duration_s,
    throughput_rps,
    latency_mean,
    latency_p50,
    latency_p90,
    latency_p95,
    latency_p99,
    latency_max
from combined
