-- grain: one row per run x host x metric
-- depends on: ref('stg_resources')
select
    run_id,
    host,
    metric_name,
    count(metric_value) as samples,
    avg(metric_value) as mean_value,
    quantile_cont(metric_value, 0.95) as p95_value,
    max(metric_value) as max_value
from {{ ref('stg_resources') }}
group by run_id, host, metric_name
