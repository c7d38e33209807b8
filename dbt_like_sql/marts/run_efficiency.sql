-- grain: one row per run with resource samples
-- depends on: ref('stg_resources')
-- The efficiency tier: the mean over all samples (all hosts) of each utilisation metric. A
-- metric the run has no samples of stays null: a missing measurement is not 0 % utilisation.
select
    run_id,
    count(distinct host) as hosts,
    avg(metric_value) filter (where metric_name = 'cpu_pct') as cpu_pct,
    avg(metric_value) filter (where metric_name = 'mem_pct') as mem_pct,
    avg(metric_value) filter (where metric_name = 'gpu_pct') as gpu_pct,
    avg(metric_value) filter (where metric_name = 'spill_pct') as spill_pct
from {{ ref('stg_resources') }}
group by run_id
