-- grain: one row per resource sample (run x timestamp x host x metric)
-- depends on: source('resources')
select
    run_id,
    ts as sampled_at,
    host,
    metric as metric_name,
    cast(value as double) as metric_value
from {{ source('resources') }}
