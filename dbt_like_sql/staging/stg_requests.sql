-- grain: one row per request
-- depends on: source('requests')
select
    run_id,
    ts as completed_at,
    endpoint,
    method,
    cast(status as integer) as status_code,
    ok as is_ok,
    cast(latency_ms as double) as latency_ms,
    cast(bytes_received as bigint) as bytes_received,
    cast(bytes_sent as bigint) as bytes_sent,
    error as error_message,
    source_file,
    cast(line_no as bigint) as line_no
from {{ source('requests') }}
