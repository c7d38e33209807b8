-- grain: one row per interval row of a tool's report that counts for its run and endpoint
-- depends on: ref('stg_requests'), ref('stg_interval_stats')
-- Locust writes the same requests into several files: per run and endpoint only the file with
-- the most rows counts. A run's "(all)" rows are left out when the run has request rows (they
-- would count the same requests twice).
with rows_per_file as (
    select
        run_id,
        endpoint,
        source_file,
        count(*) as row_count
    from {{ ref('stg_interval_stats') }}
    group by run_id, endpoint, source_file
),

best_file as (
    select
        run_id,
        endpoint,
        source_file
    from rows_per_file
    qualify row_number() over (
        partition by run_id, endpoint order by row_count desc, source_file asc nulls last
    ) = 1
)

select intervals.*
from {{ ref('stg_interval_stats') }} as intervals
inner join best_file
    on intervals.run_id = best_file.run_id
    and intervals.endpoint = best_file.endpoint
    and intervals.source_file is not distinct from best_file.source_file
where not (
    intervals.endpoint = '(all)'
    and intervals.run_id in (select requests.run_id from {{ ref('stg_requests') }} as requests)
)
