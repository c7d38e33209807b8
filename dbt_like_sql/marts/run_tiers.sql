-- grain: one row per run in the catalog
-- depends on: ref('stg_runs'), ref('run_stability'), ref('run_efficiency'), ref('run_performance')
-- The three tiers side by side. A tier the run has no data for is null, never zero.
select
    runs.run_id,
    runs.suite,
    runs.scenario,
    runs.environment,
    runs.started_at,
    stability.pod_restarts,
    stability.oom_kills,
    stability.failed_tasks,
    stability.error_rate,
    efficiency.cpu_pct,
    efficiency.mem_pct,
    efficiency.gpu_pct,
    efficiency.spill_pct,
    performance.duration_s,
    performance.throughput_rps,
    performance.latency_p50,
    performance.latency_p90,
    performance.latency_p95,
    performance.latency_p99,
    performance.latency_max
from {{ ref('stg_runs') }} as runs
left join {{ ref('run_stability') }} as stability on runs.run_id = stability.run_id
left join {{ ref('run_efficiency') }} as efficiency on runs.run_id = efficiency.run_id
left join {{ ref('run_performance') }} as performance on runs.run_id = performance.run_id
