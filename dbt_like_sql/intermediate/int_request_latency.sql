-- grain: one row per successful request with a latency
-- depends on: ref('stg_requests')
-- The population of every latency statistic of request rows (failures are often instant
-- refusals or time-outs and would hide the real latency), with the latency sketches' bucket
-- (metrics_pipeline/stats/sketch.py at 1 % accuracy: bucket i holds gamma^(i-1) < x <= gamma^i,
-- gamma = 1.01 / 0.99, ln(gamma) = 0.020000666706669435; values <= 0.001 ms share the bucket
-- -2^31). A view, not a table: int_request_percentiles reads it twice, each a streaming scan.
select
    run_id,
    endpoint,
    latency_ms,
    case
        when latency_ms > 0.001
            then cast(ceil(ln(greatest(latency_ms, 0.001)) / 0.020000666706669435) as integer)
        else -2147483648
    end as latency_bucket
from {{ ref('stg_requests') }}
where is_ok and latency_ms is not null
