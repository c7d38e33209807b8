-- grain: one row per run x endpoint (the run summary computed in Python at ingest)
-- depends on: source('run_summary')
select
    run_id,
    endpoint,
    cast(requests as bigint) as request_count,
    cast(errors as bigint) as error_count,
    cast(error_rate as double) as error_rate,
    cast(throughput_rps as double) as throughput_rps,
    cast(latency_mean as double) as latency_mean,
    cast(latency_p50 as double) as latency_p50,
    cast(latency_p90 as double) as latency_p90,
    cast(latency_p95 as double) as latency_p95,
    cast(latency_p99 as double) as latency_p99,
    cast(latency_max as double) as latency_max
from {{ source('run_summary') }}
