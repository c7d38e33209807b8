-- grain: one row per run x endpoint of the interval rows, and one per run (endpoint null) over its endpoints
-- depends on: ref('int_interval_rows'), ref('stg_run_summary')
-- The latency of tools without per-request data. An endpoint's percentiles are those of all its
-- intervals' requests, computed once in Python for the run summary (the mixture of what each
-- interval reports, metrics_pipeline.stats.interval_percentiles: percentiles do not average),
-- and read from it here. A run's, over its endpoints ("(all)" left out), is approximated by the
-- mean of the endpoints' values weighted by their request counts (an endpoint's value stands for
-- all its requests); weights only count where the value exists.
with interval_endpoints as (
    select
        run_id,
        endpoint,
        sum(request_count) as request_count
    from {{ ref('int_interval_rows') }}
    group by run_id, endpoint
),

interval_values as (
    select
        endpoints.run_id,
        endpoints.endpoint,
        endpoints.request_count,
        summary.latency_mean,
        summary.latency_p50,
        summary.latency_p90,
        summary.latency_p95,
        summary.latency_p99
    from interval_endpoints as endpoints
    -- left: a run not summarised yet keeps its rows (and counts), with unknown latency
    left join {{ ref('stg_run_summary') }} as summary
        on endpoints.run_id = summary.run_id
        and endpoints.endpoint = summary.endpoint
),

endpoint_values as (
    select run_id, endpoint, 'latency_mean' as statistic, latency_mean as value, request_count
    from interval_values
    union all
    select run_id, endpoint, 'latency_p50' as statistic, latency_p50 as value, request_count
    from interval_values
    union all
    select run_id, endpoint, 'latency_p90' as statistic, latency_p90 as value, request_count
    from interval_values
    union all
    select run_id, endpoint, 'latency_p95' as statistic, latency_p95 as value, request_count
    from interval_values
    union all
    select run_id, endpoint, 'latency_p99' as statistic, latency_p99 as value, request_count
    from interval_values
),

-- A run's value: the endpoints' values, weighted by their requests.
run_values as (
    select
        run_id,
        cast(null as varchar) as endpoint,
        statistic,
        sum(value * request_count)
        / nullif(sum(request_count) filter (where value is not null), 0) as value,
        sum(request_count) as request_count
    from endpoint_values
    where endpoint <> '(all)'
    group by run_id, statistic
),

all_values as (
    select * from endpoint_values
    union all
    select * from run_values
)

select
    run_id,
    endpoint,
    max(value) filter (where statistic = 'latency_mean') as latency_mean,
    max(value) filter (where statistic = 'latency_p50') as latency_p50,
    max(value) filter (where statistic = 'latency_p90') as latency_p90,
    max(value) filter (where statistic = 'latency_p95') as latency_p95,
    max(value) filter (where statistic = 'latency_p99') as latency_p99
from all_values
group by run_id, endpoint
