-- grain: one row per event (pod restart, OOM kill, failed task, threshold, ...)
-- depends on: source('events')
select
    run_id,
    ts as occurred_at,
    kind as event_kind,
    subject,
    detail
from {{ source('events') }}
