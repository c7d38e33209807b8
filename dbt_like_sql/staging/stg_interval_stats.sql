-- grain: one row per pre-aggregated interval of a tool's report (run x file x endpoint x interval)
-- depends on: source('interval_stats')
select
    run_id,
    ts as interval_start,
    endpoint,
    source_file,
    cast(interval_s as double) as interval_s,
    cast("count" as bigint) as request_count,
    cast(errors as bigint) as error_count,
    cast("mean" as double) as latency_mean,
    cast("min" as double) as latency_min,
    cast(p50 as double) as latency_p50,
    cast(p90 as double) as latency_p90,
    cast(p95 as double) as latency_p95,
    cast(p99 as double) as latency_p99,
    cast("max" as double) as latency_max
from {{ source('interval_stats') }}
