"""Two-pass exact quantiles are the same floats as polars' one-pass quantiles, on generated data
of every shape a load test gives (property-style: many seeds, each a mix of groups)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import optimize, stats

from metrics_pipeline.stats.quantiles import (
    INTERVAL_LEVELS,
    exact_quantiles,
    locate_ranks,
    pooled_quantiles,
)
from metrics_pipeline.stats.sketch import MIN_LATENCY_MS, bucket_expr, gamma

QUANTILES = {"p0": 0.0, "p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999, "max": 1.0}


def edges(n: int, rng: np.random.Generator) -> np.ndarray:
    """Values on and next to bucket edges gamma^i, where a bucket index is most fragile."""
    exact = gamma() ** rng.integers(-40, 400, n).astype(float)
    return exact * rng.choice([1.0, 1.0 - 2**-52, 1.0 + 2**-52], n)


# name -> values of one group (n, rng): the shapes of latencies load tests produce
SHAPES = {
    "log-normal": lambda n, rng: rng.lognormal(np.log(30), 0.6, n),
    "log-normal, µs": lambda n, rng: np.round(rng.lognormal(np.log(12), 0.5, n), 3),
    "whole ms (JMeter)": lambda n, rng: np.round(rng.lognormal(np.log(40), 0.8, n)),
    "heavy ties": lambda n, rng: rng.choice([3.0, 3.0, 3.0, 7.0, 120.0], n),
    "constant": lambda n, rng: np.full(n, 42.5),
    "at and below 1e-3 ms": lambda n, rng: rng.choice(
        [0.0, -0.0, 1e-6, 5e-4, MIN_LATENCY_MS, 1.0000001e-3, 2e-3, 0.3], n
    ),
    "bucket edges": edges,
    "bimodal with a far tail": lambda n, rng: np.where(
        rng.random(n) < 0.9, rng.lognormal(np.log(5), 0.3, n), rng.lognormal(np.log(4000), 1, n)
    ),
}


def generated(seed: int) -> pl.DataFrame:
    """Runs x endpoints of every shape and size (1, 2, a few, thousands), some failed requests
    with outlandish latencies, some null latencies, and an endpoint with only failures."""
    rng = np.random.default_rng(seed)
    frames = []
    for run in ("r1", "r2"):
        for shape, make in SHAPES.items():
            n = int(rng.choice([1, 2, 3, 10, 500, 5_000]))
            ok = rng.random(n) > 0.05
            latency = np.where(ok, make(n, rng), 1e9)
            frames.append(
                pl.DataFrame(
                    {"run_id": run, "endpoint": shape, "ok": ok, "latency_ms": latency},
                    schema_overrides={"latency_ms": pl.Float64},
                )
            )
    frames.append(pl.DataFrame({"run_id": "r1", "endpoint": "failures", "ok": [False] * 3}))
    frame = pl.concat(frames, how="diagonal_relaxed")
    nulls = pl.Series(rng.random(frame.height) < 0.01)
    return frame.with_columns(
        latency_ms=pl.when(nulls).then(None).otherwise(pl.col("latency_ms"))
    ).sample(fraction=1.0, shuffle=True, seed=seed)


def one_pass(frame: pl.DataFrame, by: list[str], quantiles: dict[str, float]) -> pl.DataFrame:
    """The reference: polars' exact quantile of every group at once."""
    return (
        frame.filter(pl.col("latency_ms").is_not_null())
        .group_by(by)
        .agg(
            **{
                name: pl.col("latency_ms").quantile(q, interpolation="linear")
                for name, q in quantiles.items()
            }
        )
        .sort(by, nulls_last=True)
    )


@pytest.mark.parametrize("seed", range(12))
def test_two_passes_give_the_one_pass_floats_per_endpoint_and_per_run(seed):
    successful = generated(seed).filter(pl.col("ok"))
    for by in (["run_id", "endpoint"], ["run_id"]):
        got = exact_quantiles(successful.lazy(), by, QUANTILES).sort(by, nulls_last=True)
        assert_frame_equal(got, one_pass(successful, by, QUANTILES), check_exact=True)


def test_the_reference_is_numpy_linear_percentile():
    frame = generated(0).filter(pl.col("ok") & pl.col("latency_ms").is_not_null())
    got = exact_quantiles(frame.lazy(), ["endpoint"], QUANTILES)
    for row in got.iter_rows(named=True):
        values = frame.filter(pl.col("endpoint") == row["endpoint"])["latency_ms"].to_numpy()
        for name, q in QUANTILES.items():
            assert row[name] == np.quantile(values, q), (row["endpoint"], name)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7.0], 7.0),  # one value: every quantile is it
        ([7.0, 8.0], 7.5),
        ([8.0, 7.0, 7.0], 7.0),
        ([0.0, 1e-4, MIN_LATENCY_MS], 1e-4),  # all in the shared bucket of the smallest values
        ([10.0, 10.01, 10.02, 10.03, 10.04], 10.02),  # one bucket, the rank inside it: pass 2
    ],
)
def test_small_groups_by_hand(values, expected):
    frame = pl.DataFrame({"g": "a", "latency_ms": values})
    (got,) = exact_quantiles(frame.lazy(), ["g"], {"p50": 0.5})["p50"]
    assert got == expected


def test_a_group_without_values_has_no_row_and_nulls_are_left_out():
    frame = pl.DataFrame(
        {"g": ["a", "a", "b", "c"], "latency_ms": [None, None, 2.0, None]},
        schema_overrides={"latency_ms": pl.Float64},
    )
    got = exact_quantiles(frame.lazy(), ["g"], {"p50": 0.5})
    assert got.rows() == [("b", 2.0)]
    empty = exact_quantiles(frame.clear().lazy(), ["g"], {"p50": 0.5})
    assert empty.schema == pl.Schema({"g": pl.String, "p50": pl.Float64})
    assert empty.height == 0
    # NaN and infinities are left out too (they raised: no bucket holds them).
    odd = pl.DataFrame({"g": ["a"] * 4, "latency_ms": [1.0, 2.0, float("inf"), float("nan")]})
    assert exact_quantiles(odd.lazy(), ["g"], {"p50": 0.5}).rows() == [("a", 1.5)]


def test_null_and_categorical_group_keys():
    frame = pl.DataFrame(
        {"run_id": "r", "endpoint": [None, None, "/x", "/x", None], "latency_ms": [1.0, 2, 3, 4, 5]}
    ).with_columns(pl.col("run_id", "endpoint").cast(pl.Categorical))
    got = exact_quantiles(frame.lazy(), ["run_id", "endpoint"], {"p50": 0.5})
    assert got.schema["endpoint"] == pl.Categorical
    assert sorted(got.rows(), key=str) == sorted([("r", None, 2.0), ("r", "/x", 3.5)], key=str)


def buckets_of(values: list[float]) -> pl.DataFrame:
    """Pass 1's table for one group (group 0), as exact_quantiles builds it."""
    return (
        pl.DataFrame({"value": values})
        .group_by(bucket=bucket_expr("value"))
        .agg(count=pl.len(), low=pl.col("value").min(), high=pl.col("value").max())
        .sort("bucket")
        .with_columns(
            group=pl.lit(0, pl.UInt32),
            below=pl.col("count").cum_sum() - pl.col("count"),
            total=pl.col("count").sum(),
        )
    )


def test_whole_milliseconds_below_50_need_no_second_pass():
    """Below 50 ms a bucket is narrower than 1 ms: it holds one integer, its min and max."""
    rng = np.random.default_rng(3)
    values = np.clip(np.round(rng.lognormal(np.log(12), 0.6, 20_000)), 1, 49).tolist()
    located = locate_ranks(buckets_of(values), {"p50": 0.5, "p99": 0.99})
    assert located["value"].null_count() == 0


def test_the_second_pass_is_needed_only_inside_a_bucket():
    # Five distinct values in one bucket (10.00-10.04 ms): p50 is its third, p0 its first.
    located = locate_ranks(buckets_of([10.0, 10.01, 10.02, 10.03, 10.04]), {"p0": 0, "p50": 0.5})
    known = {(r["quantile"], r["side"]): r["value"] for r in located.iter_rows(named=True)}
    assert known[("p0", "lower")] == 10.0
    assert known[("p50", "lower")] is None and known[("p50", "upper")] is None


def test_the_bucket_index_never_decreases_with_the_value():
    """The only property of the buckets exactness relies on, checked on a dense sweep of edges
    and on both sides of MIN_LATENCY_MS."""
    rng = np.random.default_rng(5)
    around_min = [-1.0, 0.0, MIN_LATENCY_MS, math.nextafter(MIN_LATENCY_MS, 1)]
    values = np.concatenate([around_min, edges(20_000, rng), rng.lognormal(0, 4, 20_000)])
    index = pl.DataFrame({"value": np.sort(values)}).select(bucket_expr("value").cast(pl.Int64))
    assert (index["value"].diff().drop_nulls() >= 0).all()


# ---------------------------------------------------------------- pooled quantiles of intervals

LEVELS = list(INTERVAL_LEVELS.values())


def hazen_levels(count: int) -> np.ndarray:
    """Where a type-7 percentile p of ``count`` values sits in their distribution: at rank
    (c - 1) p + 1 of c, Hazen's level ((c - 1) p + 1/2) / c (the min at 1/(2c))."""
    return ((count - 1) * np.array(LEVELS) + 0.5) / count


def test_log_normal_knots_give_back_the_log_normal_quantiles():
    mu, s = math.log(40.0), 0.5
    knots = np.exp(mu + s * stats.norm.ppf(hazen_levels(200)))
    qs = [0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99]
    expected = stats.lognorm.ppf(qs, s, scale=math.exp(mu))
    np.testing.assert_allclose(pooled_quantiles([knots], [200], qs), expected, rtol=1e-9)


def two_log_normal_intervals(counts: tuple[int, int]):
    """Knots of two log-normal intervals (medians 10 and 12 ms, sigma 0.3) at their exact
    quantiles, and the CDF of their count-weighted mixture written out with scipy."""
    s, mus = 0.3, (math.log(10.0), math.log(12.0))
    knots = [
        np.exp(mu + s * stats.norm.ppf(hazen_levels(c))) for mu, c in zip(mus, counts, strict=True)
    ]

    def mixture(x):
        cdf = [
            c * stats.norm.cdf((math.log(x) - mu) / s) for mu, c in zip(mus, counts, strict=True)
        ]
        return sum(cdf) / sum(counts)

    return knots, mixture


def test_two_log_normal_intervals_mix_by_their_counts():
    counts = (25, 75)
    knots, mixture = two_log_normal_intervals(counts)
    # levels inside both intervals' [min, max] (the 25-request one ends at level 0.98)
    for q in (0.2, 0.5, 0.8, 0.9):
        expected = optimize.brentq(lambda x, q=q: mixture(x) - q, 5.0, 30.0, xtol=1e-12)
        assert pooled_quantiles(knots, counts, [q])[0] == pytest.approx(expected, rel=1e-9)


def test_tied_knots_are_a_point_mass_and_the_extremes_carry_half_a_request():
    # levels .005, .5, .8955, .9455, .985, .995 at 1, 2, 2, 2, 3, 5: 45 % of the requests at 2
    knots, z = [[1, 2, 2, 2, 3, 5]], stats.norm.ppf(hazen_levels(100))
    below = 2 ** ((stats.norm.ppf(0.4) - z[0]) / (z[1] - z[0]))  # 0.4 between min and p50
    got = pooled_quantiles(knots, [100], [0.001, 0.4, 0.5, 0.6, 0.9, 0.997, 1.0])
    np.testing.assert_allclose(got, [1.0, below, 2.0, 2.0, 2.0, 5.0, 5.0])


def test_the_size_of_the_intervals_does_not_move_the_pooled_tail():
    """The same log-normal requests cut into intervals of 20 or of 600: numpy's p95 of 20
    values sits lower in their distribution than that of 600, and the pooled p95 and p99
    must not follow (mean over 300 runs, against the true quantiles)."""
    rng = np.random.default_rng(3)
    truth = np.exp(math.log(40.0) + 0.5 * stats.norm.ppf([0.95, 0.99]))
    for size, intervals in ((20, 60), (600, 2)):
        pooled = []
        for _ in range(300):
            windows = rng.lognormal(math.log(40.0), 0.5, (intervals, size))
            knots = np.quantile(windows, LEVELS, axis=1).T
            pooled.append(pooled_quantiles(knots, [size] * intervals, [0.95, 0.99]))
        np.testing.assert_allclose(np.mean(pooled, axis=0), truth, rtol=0.035)


def test_pooled_quantiles_equal_the_mixture_computed_on_a_dense_grid():
    """The bisection against a direct evaluation: each interval's distribution function
    (normal score linear in ln x between its knots) on a grid of 2 million points, mixed by
    count and inverted by search."""
    rng = np.random.default_rng(11)
    windows = [rng.lognormal(np.log(m), 0.4, c) for m, c in ((30, 90), (45, 300), (38, 40))]
    knots = [np.quantile(w, LEVELS) for w in windows]
    counts = [w.size for w in windows]
    grid = np.linspace(min(k[0] for k in knots), max(k[-1] for k in knots), 2_000_001)
    parts = []
    for k, c in zip(knots, counts, strict=True):
        inside = stats.norm.cdf(np.interp(np.log(grid), np.log(k), stats.norm.ppf(hazen_levels(c))))
        parts.append(c * np.where(grid < k[0], 0.0, np.where(grid >= k[-1], 1.0, inside)))
    mixture = sum(parts) / sum(counts)
    qs = [0.05, 0.5, 0.9, 0.95, 0.99]
    reference = grid[np.searchsorted(mixture, qs)]
    step = grid[1] - grid[0]
    np.testing.assert_allclose(pooled_quantiles(knots, counts, qs), reference, atol=2 * step)


def test_a_slow_tail_that_one_interval_missed_is_still_the_runs_p95():
    # 10 % of the requests 150 ms slower: the run's p95 is in the tail. The first window
    # (60 requests) got only 3 slow ones, so its own p95 is below the tail.
    rng = np.random.default_rng(5)
    windows = []
    for count, slow in ((60, 3), (130, 14), (60, 7)):
        lat = rng.lognormal(np.log(40), 0.25, count)
        lat[:slow] += 150
        windows.append(lat)
    everything = np.concatenate(windows)
    knots = [np.quantile(w, LEVELS) for w in windows]
    (pooled,) = pooled_quantiles(knots, [w.size for w in windows], [0.95])
    assert knots[0][3] < 100 < np.quantile(everything, 0.95)
    assert pooled == pytest.approx(np.quantile(everything, 0.95), rel=0.05)


def test_unknown_levels_and_empty_intervals():
    nan = math.nan
    # no min (Locust's history): the lowest value reported (20 alone, 10 with the second);
    # no p90 or p99: interpolated across
    knots = [[nan, 20.0, nan, 40.0, nan, 50.0]]
    z = stats.norm.ppf(hazen_levels(10))  # min .05, p50 .5, p90 .86, p95 .905, p99 .941, max .95

    def on_line(z_at, z_a, value_a, z_b, value_b):  # log-normal through two known levels
        return value_a * (value_b / value_a) ** ((z_at - z_a) / (z_b - z_a))

    minimum = on_line(z[0], z[1], 20.0, z[3], 40.0)  # extrapolated from p50 and p95
    p90 = on_line(stats.norm.ppf(0.9), z[1], 20.0, z[3], 40.0)
    p93 = on_line(stats.norm.ppf(0.93), z[3], 40.0, z[5], 50.0)
    got = pooled_quantiles(knots, [10], [0.0, 0.9, 0.93])
    np.testing.assert_allclose(got, [minimum, p90, p93])
    # one inner level only: the lowest value any interval reports
    fallback = [[nan, 20.0, nan, nan, nan, 50.0], [5.0, 10.0, 12.0, 13.0, 14.0, 15.0]]
    assert pooled_quantiles(fallback, [10, 10], [0.0])[0] == 5.0
    with pytest.raises(ValueError, match="levels"):
        pooled_quantiles(knots, [10], [math.nan])
    # rows with no request or no value do not count; nothing left: NaN
    ignored = [[1.0] * 6, [nan] * 6, [5.0, 6.0, 7.0, 8.0, 9.0, 10.0]]
    assert pooled_quantiles(ignored, [0, 50, 10], [0.5])[0] == 6.0
    assert np.isnan(pooled_quantiles([[nan] * 6], [10], [0.5])[0])


def test_interval_percentiles_are_the_type_7_percentiles_of_the_pooled_requests():
    """Of one interval: the tool's own numbers (a k6 summary). Of log-normal intervals whose
    knots are their exact quantiles: numpy's default (type 7) percentile of that many values
    from the mixture, i.e. its quantile at ((N - 1) p + 1/2) / N, here by Brent on the mixture
    written out with scipy."""
    from metrics_pipeline.stats import interval_percentiles

    tool = [[3.0, 20.0, 30.0, 40.0, 50.0, 60.0]]
    got = interval_percentiles(tool, [600], ["p50", "p90", "p95", "p99"])
    np.testing.assert_allclose(got, [20.0, 30.0, 40.0, 50.0], rtol=1e-9)
    assert math.isnan(
        interval_percentiles([[3.0, 20.0, 30.0, 40.0, np.nan, 60.0]], [600], ["p99"])[0]
    )

    counts = (250, 750)
    knots, mixture = two_log_normal_intervals(counts)
    for p, name in ((0.5, "p50"), (0.9, "p90")):
        level = (999 * p + 0.5) / 1000
        expected = optimize.brentq(lambda x, q=level: mixture(x) - q, 5.0, 30.0, xtol=1e-12)
        (got,) = interval_percentiles(knots, counts, [name])
        assert got == pytest.approx(expected, rel=1e-9)


def test_a_level_reached_exactly_at_a_knot():
    """Whole milliseconds: the p90 level of these 28 requests, 24.8 / 28, is F(7) exactly,
    which a rounding put on either side of the knot (the root search then had no sign
    change and raised)."""
    knots = [[3.0, 7.0, 9.0, 19.0, 21.0, 25.0], [4.0, 5.0, 6.0, 7.0, 12.0, 30.0]]
    levels = [(27 * p + 0.5) / 28 for p in (0.5, 0.9, 0.95, 0.99)]  # as a run summary asks
    assert pooled_quantiles(knots, [3, 25], levels)[1] == pytest.approx(7.0)
