-- grain: one row per run x endpoint of the interval rows, and one per run (endpoint null) over its endpoints
-- depends on: ref('int_interval_rows')
-- The one place the latency of tools without per-request data is approximated. They report
-- percentiles per interval: an endpoint's statistic is the mean of its intervals' values
-- weighted by their request counts; a run's, over its endpoints ("(all)" left out), the mean of
-- the endpoints' values weighted by their request counts (an endpoint's value stands for all
-- its requests, also when some intervals lack it). Weights only count where the value exists.
with interval_values as (
    select run_id, endpoint, request_count, 'latency_mean' as statistic, latency_mean as value
    from {{ ref('int_interval_rows') }}
    union all
    select run_id, endpoint, request_count, 'latency_p50' as statistic, latency_p50 as value
    from {{ ref('int_interval_rows') }}
    union all
    select run_id, endpoint, request_count, 'latency_p90' as statistic, latency_p90 as value
    from {{ ref('int_interval_rows') }}
    union all
    select run_id, endpoint, request_count, 'latency_p95' as statistic, latency_p95 as value
    from {{ ref('int_interval_rows') }}
    union all
    select run_id, endpoint, request_count, 'latency_p99' as statistic, latency_p99 as value
    from {{ ref('int_interval_rows') }}
),

endpoint_values as (
    select
        run_id,
        endpoint,
        statistic,
        sum(value * request_count)
        / nullif(sum(request_count) filter (where value is not null), 0) as value,
        sum(request_count) as request_count
    from interval_values
    group by run_id, endpoint, statistic
),

-- The same weighted mean one level up: the endpoints' values, weighted by their requests.
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
