-- grain: one row per day x suite x scenario x environment x endpoint x metric
-- depends on: ref('stg_run_summary'), ref('stg_runs')
-- Daily rollup of the per-run values of run_summary. The day is the UTC date the run started.
-- Runs marked invalid are left out, as they are from baselines; runs not validated yet count.
with run_values as (
    select
        cast(timezone('UTC', runs.started_at) as date) as day,
        runs.suite,
        runs.scenario,
        runs.environment,
        summary.endpoint,
        summary.run_id,
        metric.metric_name,
        metric.metric_value
    from {{ ref('stg_run_summary') }} as summary
    inner join {{ ref('stg_runs') }} as runs on summary.run_id = runs.run_id
    cross join lateral (
        values
            ('error_rate', summary.error_rate),
            ('throughput_rps', summary.throughput_rps),
            ('latency_mean', summary.latency_mean),
            ('latency_p50', summary.latency_p50),
            ('latency_p90', summary.latency_p90),
            ('latency_p95', summary.latency_p95),
            ('latency_p99', summary.latency_p99),
            ('latency_max', summary.latency_max)
    ) as metric (metric_name, metric_value)
    where coalesce(runs.is_valid, true)
        and metric.metric_value is not null
)

select
    day,
    suite,
    scenario,
    environment,
    endpoint,
    metric_name,
    count(distinct run_id) as runs,
    avg(metric_value) as mean_value,
    min(metric_value) as min_value,
    max(metric_value) as max_value
from run_values
group by day, suite, scenario, environment, endpoint, metric_name
