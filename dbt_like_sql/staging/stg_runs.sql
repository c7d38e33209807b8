-- grain: one row per run (the catalog written from run.json at ingest)
-- depends on: source('runs')
select
    run_id,
    suite,
    scenario,
    environment,
    started_at,
    finished_at,
    tool,
    service_version,
    git_sha,
    baseline as baseline_run_id,
    ingested_at,
    valid as is_valid,
    invalid_reason
from {{ source('runs') }}
