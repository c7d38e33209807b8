-- grain: one row per run in the catalog
-- depends on: ref('stg_runs'), ref('stg_events'), ref('run_performance')
-- The stability tier. Event counts are null for a run without any events: nothing was
-- collected, and "no restarts" cannot be told from "not watched". They are zero when events
-- were collected but none of that kind. The error rate is null for a run without traffic data.
with event_counts as (
    select
        run_id,
        count(*) as events,
        count(*) filter (where event_kind = 'pod_restart') as pod_restarts,
        count(*) filter (where event_kind = 'oom_kill') as oom_kills,
        count(*) filter (where event_kind = 'task_failed') as failed_tasks
    from {{ ref('stg_events') }}
    group by run_id
)

select
    runs.run_id,
    event_counts.events,
    event_counts.pod_restarts,
    event_counts.oom_kills,
    event_counts.failed_tasks,
    performance.request_count,
    performance.error_count,
    performance.error_rate
from {{ ref('stg_runs') }} as runs
left join event_counts on runs.run_id = event_counts.run_id
left join {{ ref('run_performance') }} as performance on runs.run_id = performance.run_id
