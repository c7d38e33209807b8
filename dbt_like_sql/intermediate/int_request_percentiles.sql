-- grain: one row per run x endpoint with successful requests, and one per run (whole_run) over all its endpoints
-- depends on: ref('int_request_latency')
-- Exact percentiles of successful requests' latency: with h = (n - 1) q, the value of 0-based
-- rank floor(h) plus (h - floor(h)) times its difference to the value of rank ceil(h), the same
-- floats as Postgres' percentile_cont and as run_summary (polars, numpy). DuckDB's own aggregate
-- computes lo * (1 - d) + hi * d for doubles, which can differ in the last two bits: the marts
-- now hold the same floats on both engines. That aggregate holds every value of its group
-- (34.5 M, 2.5 GB, for a 5 GB run); two scans keep a few buckets instead
-- (metrics_pipeline/stats/quantiles.py does the same in polars for run_summary):
--   pass 1 counts the values per group and latency bucket, with their minimum and maximum: rank
--     k lies in the bucket with below <= k < below + value_count (below: the values of the
--     lower buckets), and is that bucket's minimum or maximum when at its first or last place
--     (or when all its values are equal);
--   pass 2 numbers, in order, only the values of the buckets where a rank is still unknown.
-- Computed from the request rows rather than read from run_summary, so that the marts stay a
-- function of the requests on either engine, whether or not the Python summary was written.
-- A group is (run_id, whole_run, endpoint): a run's row has whole_run true and endpoint null.
with endpoint_buckets as (
    select
        run_id,
        false as whole_run,
        endpoint,
        latency_bucket,
        count(*) as value_count,
        min(latency_ms) as low,
        max(latency_ms) as high
    from {{ ref('int_request_latency') }}
    group by run_id, endpoint, latency_bucket
),

run_buckets as (
    select
        run_id,
        true as whole_run,
        cast(null as varchar) as endpoint,
        latency_bucket,
        sum(value_count) as value_count,
        min(low) as low,
        max(high) as high
    from endpoint_buckets
    group by run_id, latency_bucket
),

buckets as (
    select
        run_id,
        whole_run,
        endpoint,
        latency_bucket,
        cast(value_count as bigint) as value_count,
        low,
        high,
        cast(
            sum(value_count) over (
                partition by run_id, whole_run, endpoint order by latency_bucket
                rows between unbounded preceding and current row
            ) - value_count as bigint
        ) as below,
        cast(sum(value_count) over (partition by run_id, whole_run, endpoint) as bigint) as total
    from (
        select * from endpoint_buckets
        union all
        select * from run_buckets
    ) as all_buckets
),

positions as (
    select distinct
        buckets.run_id,
        buckets.whole_run,
        buckets.endpoint,
        quantiles.statistic,
        cast(buckets.total - 1 as double) * quantiles.q as h
    from buckets
    cross join (
        select 'latency_p50' as statistic, cast(0.50 as double) as q
        union all
        select 'latency_p90' as statistic, cast(0.90 as double) as q
        union all
        select 'latency_p95' as statistic, cast(0.95 as double) as q
        union all
        select 'latency_p99' as statistic, cast(0.99 as double) as q
    ) as quantiles
),

ranks as (
    select positions.*, 'lower' as side, cast(floor(h) as bigint) as value_rank
    from positions
    union all
    select positions.*, 'upper' as side, cast(ceil(h) as bigint) as value_rank
    from positions
),

-- Each rank's bucket, and the rank's place in it (0 = the bucket's minimum).
located as (
    select
        ranks.run_id,
        ranks.whole_run,
        ranks.endpoint,
        ranks.statistic,
        ranks.h,
        ranks.side,
        buckets.latency_bucket,
        ranks.value_rank - buckets.below as place,
        case
            when ranks.value_rank = buckets.below or buckets.low = buckets.high then buckets.low
            when ranks.value_rank = buckets.below + buckets.value_count - 1 then buckets.high
        end as known_value
    from ranks
    inner join buckets
        on ranks.run_id = buckets.run_id
        and ranks.whole_run = buckets.whole_run
        and ranks.endpoint is not distinct from buckets.endpoint
        and ranks.value_rank >= buckets.below
        and ranks.value_rank < buckets.below + buckets.value_count
),

-- Pass 2: a value is kept when its bucket holds an unknown rank of its endpoint or of its run.
-- IN lists (hash lookups in the few located rows) rather than joins: DuckDB's estimates of
-- the rows derived above are far too high, and it would build a join's hash table on the
-- values. coalesce: a request without an endpoint (an invalid run) is still looked up; the
-- exact match is the final join's.
candidates as (
    select run_id, endpoint, latency_bucket, latency_ms
    from {{ ref('int_request_latency') }}
    where (run_id, coalesce(endpoint, ''), latency_bucket) in (
            select run_id, coalesce(endpoint, ''), latency_bucket from located
            where known_value is null and not whole_run
        )
        or (run_id, latency_bucket) in (
            select run_id, latency_bucket from located
            where known_value is null and whole_run
        )
),

numbered as (
    select
        run_id,
        endpoint,
        latency_bucket,
        latency_ms,
        row_number() over (
            partition by run_id, endpoint, latency_bucket order by latency_ms
        ) - 1 as endpoint_place,
        row_number() over (partition by run_id, latency_bucket order by latency_ms) - 1 as run_place
    from candidates
),

picked as (
    select run_id, endpoint, latency_bucket, latency_ms, endpoint_place, run_place
    from numbered
    where (run_id, coalesce(endpoint, ''), latency_bucket, endpoint_place) in (
            select run_id, coalesce(endpoint, ''), latency_bucket, place from located
            where known_value is null and not whole_run
        )
        or (run_id, latency_bucket, run_place) in (
            select run_id, latency_bucket, place from located
            where known_value is null and whole_run
        )
),

order_statistics as (
    select
        located.run_id,
        located.whole_run,
        located.endpoint,
        located.statistic,
        located.h,
        max(coalesce(located.known_value, picked.latency_ms))
            filter (where located.side = 'lower') as lower_value,
        max(coalesce(located.known_value, picked.latency_ms))
            filter (where located.side = 'upper') as upper_value
    from located
    left join picked
        on located.known_value is null
        and located.run_id = picked.run_id
        and located.latency_bucket = picked.latency_bucket
        and (
            not located.whole_run
            and located.endpoint is not distinct from picked.endpoint
            and located.place = picked.endpoint_place
            or located.whole_run
            and located.place = picked.run_place
        )
    group by
        located.run_id, located.whole_run, located.endpoint, located.statistic, located.h
),

interpolated as (
    select
        run_id,
        whole_run,
        endpoint,
        statistic,
        case
            when lower_value = upper_value then lower_value
            else lower_value + (upper_value - lower_value) * (h - floor(h))
        end as value
    from order_statistics
)

select
    run_id,
    whole_run,
    endpoint,
    max(value) filter (where statistic = 'latency_p50') as latency_p50,
    max(value) filter (where statistic = 'latency_p90') as latency_p90,
    max(value) filter (where statistic = 'latency_p95') as latency_p95,
    max(value) filter (where statistic = 'latency_p99') as latency_p99
from interpolated
group by run_id, whole_run, endpoint
