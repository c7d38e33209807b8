"""Tests of metrics_pipeline.stats.compare against independently computed reference values."""

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from metrics_pipeline.stats import (
    RunNoise,
    RunStatistic,
    benjamini_hochberg,
    compare_runs,
    count_rate_statistic,
    interval_quantile_statistics,
    mean_statistic,
    moderated_noise,
    quantile_statistics,
    rate_statistic,
    resolution_of,
    run_spread,
    series_statistic,
    taken_apart,
)

# No prior floor: the measured run noise alone (the t machinery).
NO_FLOOR = RunNoise.prior(0.0)


def runs_of(values, variance=0.0, n=1000):
    return [RunStatistic(float(v), variance, n) for v in values]


def test_mid_quantile_is_hazen_on_continuous_data():
    x = np.random.default_rng(1).lognormal(3, 0.5, 999)
    got = [r.value for r in quantile_statistics(x, ["median", "p95", "p99"])]
    assert got == pytest.approx(np.quantile(x, [0.5, 0.95, 0.99], method="hazen"), rel=1e-12)


def test_mid_quantile_of_tied_values_hand_computed():
    # 6 x 3 ms and 4 x 4 ms: F_mid(3) = 3/10, F_mid(4) = (6 + 2)/10 = 0.8, so the median is
    # 3 + (0.5 - 0.3) / (0.8 - 0.3) = 3.4 ms (the type-7 median would jump straight to 3).
    (median,) = quantile_statistics([3.0] * 6 + [4.0] * 4, ["median"])
    assert median.value == pytest.approx(3.4)
    assert median.resolution == 1.0


def test_quantile_variance_matches_the_asymptotic_formula():
    # Var(ln Q_q) ~ q (1 - q) / (n f(xi)^2 xi^2); for a lognormal(0, sigma) f(xi) xi is the
    # normal density at z_q over sigma.
    n, sigma = 20_000, 0.5
    x = np.random.default_rng(2).lognormal(0, sigma, n)
    for q, stat in ((0.5, "median"), (0.95, "p95")):
        (r,) = quantile_statistics(x, [stat])
        expected = q * (1 - q) / (n * (stats.norm.pdf(stats.norm.ppf(q)) / sigma) ** 2)
        assert r.variance == pytest.approx(expected, rel=0.15)


def test_resolution_is_the_coarsest_step_the_values_sit_on():
    assert resolution_of([1.0, 2.0, 7.0]) == 1.0
    assert resolution_of([1.5, 2.3]) == 0.1
    assert resolution_of([1.234567, 2.0]) == 0.0
    assert resolution_of([]) == 0.0


def test_several_baseline_runs_give_the_two_sample_t_test_of_one_new_run():
    # With equal sampling variances the test is Student's t of the candidate against the k
    # baseline runs (a prediction interval): scipy's ttest_ind of [y_c] vs y_b on k - 1 df.
    base = [50.0, 53.0, 48.0, 51.0]
    cand = 60.0
    result = compare_runs(
        runs_of(base, 1e-4), RunStatistic(cand, 1e-4, 1000), statistic="p95", prior=NO_FLOOR
    )
    y = np.log(base)
    expected = stats.ttest_ind([np.log(cand)], y)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.df == 3
    assert result.change == pytest.approx(cand / np.exp(y.mean()) - 1)
    half = stats.t.ppf(0.975, 3) * np.std(y, ddof=1) * math.sqrt(1 + 1 / 4)
    d = np.log(cand) - y.mean()
    assert (result.ci_low, result.ci_high) == pytest.approx(np.expm1([d - half, d + half]))
    assert result.noise == "4 baseline runs (3 df)"


def test_one_baseline_run_uses_the_prior_as_a_known_spread():
    prior = RunNoise.prior(0.10)
    result = compare_runs(
        [RunStatistic(100.0, 0.0004, 2000)],
        RunStatistic(140.0, 0.0004, 2000),
        statistic="median",
        prior=prior,
    )
    se = math.sqrt(2 * math.log(1.1) ** 2 + 2 * 0.0004)
    z = math.log(1.4) / se
    assert result.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    assert result.df == math.inf and result.noise == "prior 10%"
    assert result.regression  # +40 % with z = 2.4
    assert not compare_runs(
        [RunStatistic(100.0, 0.0004, 2000)], RunStatistic(125.0, 0.0004, 2000), statistic="p50"
    ).regression  # +25 % is within two runs' 10 % noise


def test_latency_jitter_keeps_a_one_millisecond_endpoint_from_a_verdict():
    prior = RunNoise.prior(0.10, absolute=0.5)
    base, cand = RunStatistic(1.0, 0.001, 500), RunStatistic(2.3, 0.001, 500)
    assert not compare_runs([base], cand, statistic="p95", prior=prior).regression
    assert compare_runs([base], cand, statistic="p95", prior=RunNoise.prior(0.10)).regression


def test_history_is_pooled_with_the_baseline_runs():
    history = RunNoise(variance=0.01, df=9, source="history of 10 runs")
    base = [100.0, 104.0]
    result = compare_runs(
        runs_of(base),
        RunStatistic(130.0, 0.0, 1000),
        statistic="p50",
        history=history,
        prior=NO_FLOOR,
    )
    pooled = (9 * 0.01 + np.var(np.log(base), ddof=1)) / 10
    t = (np.log(130.0) - np.log(base).mean()) / math.sqrt(pooled * (1 + 1 / 2))
    assert result.p_value == pytest.approx(2 * stats.t.sf(t, 10), rel=1e-9)
    assert result.noise == "history of 10 runs + 2 baseline runs (10 df)"


def test_the_prior_is_a_floor_under_a_measured_spread():
    # Three runs 1 % apart: measured, the spread would be 1 %; the prior's 10 % holds.
    tight = compare_runs(
        runs_of([100.0, 101.0, 100.5]), RunStatistic(125.0, 0.0, 1), statistic="p50"
    )
    assert tight.df == math.inf and tight.noise.startswith("prior 10% (at least; 3 baseline runs")
    z = (np.log(125.0) - np.log([100.0, 101.0, 100.5]).mean()) / (math.log(1.1) * math.sqrt(4 / 3))
    assert tight.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    # Two runs 40 % apart: 1 df, the larger measured spread taken as known.
    far = compare_runs(runs_of([100.0, 140.0]), RunStatistic(105.0, 0.0, 1), statistic="p50")
    spread = np.var(np.log([100.0, 140.0]), ddof=1)
    t = (np.log(105.0) - np.log([100.0, 140.0]).mean()) / math.sqrt(spread * 1.5)
    assert far.p_value == pytest.approx(2 * stats.norm.sf(abs(t)), rel=1e-9)
    assert far.noise == "2 baseline runs (1 df)"


def test_satterthwaite_df_when_the_candidate_sampling_variance_dominates():
    # Baseline runs without errors, a candidate with 6 % errors: the candidate's binomial
    # variance is known, so the test is not made on the baseline runs' 2 df alone.
    base = [rate_statistic(0, 185)] * 3
    cand = rate_statistic(12, 187)
    result = compare_runs(base, cand, statistic="rate", scale="identity", prior=NO_FLOOR)
    # S^2 = 0 is below the runs' own sampling variance, the least a run varies: that holds,
    # and all of the variance is known.
    assert result.df == math.inf
    se = math.sqrt(cand.variance + base[0].variance / 3)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(12 / 187 / se), rel=1e-9)
    assert result.regression


def test_improvement_is_the_mirror_image_of_a_regression():
    base = runs_of([100.0, 101.0, 99.0, 100.5], 1e-5)
    faster = compare_runs(base, RunStatistic(60.0, 1e-5, 1000), statistic="p50")
    assert faster.improvement and not faster.regression and faster.change < -0.2
    throughput_up = compare_runs(
        base, RunStatistic(140.0, 1e-5, 1000), statistic="mean", higher_is_worse=False
    )
    assert throughput_up.improvement and throughput_up.change == pytest.approx(-0.4, rel=1e-2)


def test_a_change_of_one_measured_step_is_not_a_regression():
    # JMeter's whole milliseconds: p95 1 -> 2 ms between identical services is one step.
    base = [RunStatistic(1.0, 1e-6, 5000, 1.0)] * 3
    step = compare_runs(base, RunStatistic(2.0, 1e-6, 5000, 1.0), statistic="p95")
    assert step.change == pytest.approx(1.0) and step.p_value < 1e-6
    assert not step.regression
    assert compare_runs(base, RunStatistic(3.0, 1e-6, 5000, 1.0), statistic="p95").regression


def test_an_untestable_candidate_far_worse_is_suspect_not_a_regression():
    # The baseline runs can be tested, the candidate (15 requests: no variance of its p95)
    # cannot: no p-value, but "ten times slower" is reported and flagged.
    base = [RunStatistic(v, 1e-4, 2000) for v in (48.0, 50.0, 52.0)]
    tiny = compare_runs(base, RunStatistic(500.0, math.nan, 15), statistic="p95")
    assert math.isnan(tiny.p_value) and not tiny.regression and tiny.suspect
    assert tiny.change == pytest.approx(500 / np.exp(np.mean(np.log([48, 50, 52]))) - 1)
    close = compare_runs(base, RunStatistic(55.0, math.nan, 15), statistic="p95")
    assert not close.suspect and close.change == pytest.approx(0.1, abs=0.01)
    # A statistic no run can test (the p99 of a few hundred requests moves 20-100 % between
    # identical runs) is not flagged, whatever its value.
    untestable = [RunStatistic(v, math.nan, 250) for v in (48.0, 50.0, 52.0)]
    nobody = compare_runs(untestable, RunStatistic(500.0, math.nan, 250), statistic="p99")
    assert not nobody.suspect and math.isnan(nobody.change)
    # The baseline value shown is the three runs' mean: its n counts their values.
    assert (nobody.baseline, nobody.n_baseline, nobody.n_candidate) == (50.0, 750, 250)


def test_an_untestable_quantile_has_order_statistic_bounds():
    # Median of 15 values: P(Bin(15, 1/2) >= 4) = 1 - 576/32768 = 0.982 >= 0.975 > P(>= 5) =
    # 0.941, so x_(4) is the lower bound and x_(12) the upper one.
    p50, p95 = quantile_statistics(np.arange(1.0, 16.0), ["p50", "p95"])
    assert math.isnan(p50.variance) and (p50.lower, p50.upper) == (4.0, 12.0)
    assert (p95.lower, p95.upper) == (12.0, math.inf)
    # Against scipy's binomial, for other sizes and levels.
    for n, q in [(7, 0.5), (40, 0.9), (300, 0.99)]:
        x = np.arange(1.0, n + 1)
        (r,) = quantile_statistics(x, [f"p{round(q * 100)}"])
        j = max(j for j in range(1, n + 1) if stats.binom.sf(j - 1, n, q) >= 0.975)
        assert r.lower == x[j - 1]
    # The median of 5 values has no lower bound at 97.5 % (P(all 5 below it) = 1/32).
    (five,) = quantile_statistics(np.arange(1.0, 6.0), ["p50"])
    assert five.lower == -math.inf
    # A testable quantile carries no bounds: its variance speaks for it.
    (tested,) = quantile_statistics(np.arange(1.0, 1001.0), ["p50"])
    assert math.isnan(tested.lower) and math.isfinite(tested.variance)


def test_a_tiny_candidate_is_suspect_when_its_bound_is_worse_not_its_value():
    # 3 baseline runs of 2,000 requests, a candidate of 15: unchanged, its p95 as it stands was
    # 20 % worse in about a fifth of the runs; ten times slower it is suspect every time.
    rng = np.random.default_rng(21)
    unchanged, slower, trials = 0, 0, 200
    for _ in range(trials):
        base = [
            quantile_statistics(rng.lognormal(np.log(50), 0.5, 2000), ["p95"])[0] for _ in range(3)
        ]
        same, ten_x = (
            quantile_statistics(rng.lognormal(np.log(50), 0.5, 15) * f, ["p95"])[0] for f in (1, 10)
        )
        unchanged += compare_runs(base, same, statistic="p95").suspect
        slower += compare_runs(base, ten_x, statistic="p95").suspect
    assert unchanged / trials <= 0.02
    assert slower == trials


def test_interval_quantiles_too_far_out_get_bounds_from_the_mixture():
    # One 10 s interval of 16 requests (min, p50, p90, p95, p99, max), Artillery's shape: its
    # p95 cannot be tested; its lower bound is the 13th of 16 requests (P(Bin(16, 0.95) >= 13)
    # = 0.993 >= 0.975 > P(>= 14) = 0.957), read off the mixture at Hazen's (13 - 1/2) / 16 =
    # its p78.125.
    knots = [[1.0, 10.0, 14.0, 16.0, 20.0, 22.0]]
    p95, p78 = interval_quantile_statistics(knots, [16], ["p95", "p78.125"])
    assert stats.binom.sf(12, 16, 0.95) >= 0.975 > stats.binom.sf(13, 16, 0.95)
    assert math.isnan(p95.variance) and p95.upper == math.inf
    assert p95.lower == pytest.approx(p78.value) and p95.lower < p95.value
    # Two requests known exactly (min = max per interval): the bounds are the requests.
    exact = [[5.0] * 6, [9.0] * 6]
    (top,) = interval_quantile_statistics(exact, [1, 1], ["p99"])
    (same,) = quantile_statistics([5.0, 9.0], ["p99"])
    assert (top.lower, top.upper) == (same.lower, same.upper) == (9.0, math.inf)


def test_a_suspect_bound_must_also_clear_the_run_noise():
    # One baseline run and the 10 % prior: the run effect alone moves a run's p95 by about
    # 13 % (sqrt(tau^2 + tau^2 + v/1)), so a bound 25 % worse is within it (z = 1.66) and one
    # 40 % worse is not (z = 2.50).
    base = [RunStatistic(50.0, 1e-4, 2000)]
    pooled = math.log(1.1) ** 2 + 1e-4
    se_run = math.sqrt(pooled - 1e-4 + pooled / 1)
    for bound, flagged in ((62.5, False), (70.0, True)):
        assert bool(math.log(bound / 50) / se_run > stats.norm.ppf(0.975)) is flagged
        tiny = RunStatistic(75.0, math.nan, 15, lower=bound)
        assert compare_runs(base, tiny, statistic="p95").suspect is flagged


def test_identical_services_on_whole_milliseconds_are_not_flagged():
    rng = np.random.default_rng(3)

    def run(shift):
        return np.round(rng.lognormal(np.log(3.0), 0.3, 5000) + shift)

    base = [quantile_statistics(run(0.0), ["median", "p95"]) for _ in range(3)]
    cand = quantile_statistics(run(0.3), ["median", "p95"])  # 0.3 ms of client drift
    for i, stat in enumerate(("median", "p95")):
        result = compare_runs([b[i] for b in base], cand[i], statistic=stat, min_effect=1.0)
        assert not result.regression, result


def test_error_rate_is_compared_in_percentage_points():
    base = [rate_statistic(e, 1000) for e in (10, 12, 9)]
    result = compare_runs(base, rate_statistic(93, 1000), statistic="rate", scale="identity")
    assert result.change == pytest.approx(0.093 - 31 / 3000)
    assert result.regression
    zero = compare_runs(
        [rate_statistic(0, 1000)], rate_statistic(93, 1000), statistic="rate", scale="identity"
    )
    assert math.isfinite(zero.change) and zero.change == pytest.approx(0.093)
    assert zero.regression


def test_rate_statistic_hand_computed_and_invalid_counts():
    r = rate_statistic(0, 99)
    assert r.value == 0 and r.variance == pytest.approx((0.5 / 100) * (99.5 / 100) / 99)
    with pytest.raises(ValueError):
        rate_statistic(5, 4)
    assert math.isnan(rate_statistic(0, 0).value)


def test_mean_is_arithmetic_with_delta_method_variance():
    x = np.random.default_rng(4).lognormal(1, 0.8, 400)
    r = mean_statistic(x)
    assert r.value == pytest.approx(x.mean())
    assert r.variance == pytest.approx(np.var(x, ddof=1) / (x.size * x.mean() ** 2))


def test_series_statistic_is_the_geometric_mean_of_the_intervals():
    r = series_statistic([10.0, 20.0, 40.0])
    assert r.value == pytest.approx(20.0)
    assert r.variance == pytest.approx(np.var(np.log([10, 20, 40]), ddof=1) / 3)
    assert series_statistic([12.0]).variance == 0.0


def test_too_little_data_is_untested():
    result = compare_runs([], RunStatistic(1.0, 0.0, 3), statistic="p50")
    assert math.isnan(result.p_value) and not result.regression
    (few,) = quantile_statistics([1.0], ["p95"])
    assert math.isnan(few.value)


def test_ci_covers_the_true_change_at_the_nominal_rate():
    # 3 baseline runs and a candidate 25 % slower, each run with its own 5 % run effect.
    rng = np.random.default_rng(5)
    covered, trials = 0, 600
    for _ in range(trials):
        runs = [
            quantile_statistics(
                rng.lognormal(np.log(50), 0.5, 500) * np.exp(rng.normal(0, 0.05)) * f, ["p95"]
            )[0]
            for f in (1, 1, 1, 1.25)
        ]
        result = compare_runs(runs[:3], runs[3], statistic="p95", prior=NO_FLOOR)
        covered += result.ci_low <= 0.25 <= result.ci_high
    # 95 % of 600: a binomial 99.9 % band is about 92-98 %.
    assert 0.92 <= covered / trials <= 0.98


def test_a_smaller_candidate_adds_its_sampling_variance_not_a_scaled_run_effect():
    # S^2 = 0.01 measured on 5 runs taken apart (4 df), each run's sampling variance 0.001; a
    # candidate with ten times that: Var = S^2 (1 + 1/k) + v_c - v_bar (the run effect,
    # S^2 - v_bar, is the same for a short run; only the sampling part grows).
    y = np.log(50) + np.array([-1.5, -0.5, 0.0, 0.5, 1.5]) * math.sqrt(0.01 / 1.25)
    base = [RunStatistic(float(np.exp(v)), 0.001, 20_000) for v in y]
    assert np.var(y, ddof=1) == pytest.approx(0.01)
    cand = RunStatistic(float(np.exp(y.mean() + 0.3)), 0.01, 2_000)
    result = compare_runs(base, cand, statistic="p50", baseline_apart=True)
    se = math.sqrt(0.01 * 1.2 + 0.01 - 0.001)
    df = 4 * (se**2 / (0.01 * 1.2)) ** 2  # Welch-Satterthwaite: only S^2 (1 + 1/k) is estimated
    assert result.df == pytest.approx(df)
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.3 / se, df), rel=1e-9)
    # Runs agreeing better than their sampling variances say (S^2 < v_bar): S^2 is all
    # sampling and scales with the candidate's, as a whole, on 4 df.
    tight = [RunStatistic(b.value, 0.02, 20_000) for b in base]
    result = compare_runs(tight, cand, statistic="p50", baseline_apart=True)
    se = math.sqrt(0.01 * (1 / 5 + 0.01 / 0.02))
    assert result.df == pytest.approx(4)
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.3 / se, 4), rel=1e-9)
    # A candidate with more sampling variance than such runs adds the difference; its df are
    # taken at S^2 no less than v_bar (0.02), not at the chance low S^2 (which gave 13.4 df).
    noisy = RunStatistic(cand.value, 0.03, 2_000)
    result = compare_runs(tight, noisy, statistic="p50", baseline_apart=True)
    se = math.sqrt(0.01 * 1.2 + 0.03 - 0.02)
    df = 4 * ((0.02 * 1.2 + 0.01) / (0.02 * 1.2)) ** 2
    assert result.df == pytest.approx(df) and df == pytest.approx(8.03, abs=0.01)
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.3 / se, df), rel=1e-9)


@pytest.mark.parametrize(("base_n", "cand_n"), [(1000, 100), (100, 1000)])
def test_runs_that_agree_exactly_leave_the_sampling_variances_to_decide(base_n, cand_n):
    # No error in 20 earlier runs nor in 3 baseline runs (S^2 = 0), 1 error in the candidate,
    # smaller or larger than the baseline runs: the candidate's and the baseline mean's
    # binomial variances decide. A smaller candidate had the baseline runs' variance
    # subtracted, a larger one se 0 and p = 0 (one error a regression).
    history = RunNoise.measured([0.0] * 20, scale="identity", source="history")
    base = [rate_statistic(0, base_n)] * 3
    cand = rate_statistic(1, cand_n)
    result = compare_runs(
        base, cand, statistic="rate", scale="identity", history=history, baseline_apart=True
    )
    se = math.sqrt(cand.variance + base[0].variance / 3)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(1 / cand_n / se), rel=1e-9)
    assert result.p_value > 0.05 and not result.regression


def test_ci_of_a_short_candidate_against_long_runs_covers_at_the_nominal_rate():
    # 5 nightly runs of 10,000 requests and a candidate of 1,000 (a tenth), 25 % slower, each
    # run with its own 5 % run effect. Scaling the whole run spread by the candidate's 10x
    # sampling variance made these intervals cover 100 %.
    rng = np.random.default_rng(11)
    covered, found, trials = 0, 0, 400
    for _ in range(trials):
        runs = [
            quantile_statistics(
                rng.lognormal(np.log(50), 0.5, n) * np.exp(rng.normal(0, 0.05)) * f, ["p50"]
            )[0]
            for n, f in [(10_000, 1)] * 5 + [(1_000, 1.25)]
        ]
        result = compare_runs(runs[:5], runs[5], statistic="p50", baseline_apart=True)
        covered += result.ci_low <= 0.25 <= result.ci_high
        found += result.regression
    # 95 % of 400: a binomial 99.9 % band is about 91.5-98.5 %.
    assert 0.915 <= covered / trials <= 0.985
    assert found / trials > 0.5


def test_as_dict_is_json_serialisable():
    result = compare_runs(runs_of([10.0, 11.0, 10.5]), RunStatistic(12.0, 0.0, 10), statistic="p50")
    assert json.loads(json.dumps(result.as_dict()))["statistic"] == "p50"


def test_benjamini_hochberg_equals_scipy():
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(size=50), rng.uniform(0, 0.01, size=10), [0.2, 0.2, 1.0]])
    rng.shuffle(p)
    expected = stats.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-12)


def test_benjamini_hochberg_hand_computed_and_nan():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> m p / rank = 0.04, 0.04, 0.04, 0.5.
    adjusted = benjamini_hochberg([0.5, 0.01, np.nan, 0.03, 0.02])
    np.testing.assert_allclose(adjusted, [0.5, 0.04, np.nan, 0.04, 0.04])
    assert benjamini_hochberg([]).shape == (0,)
    with pytest.raises(ValueError):
        benjamini_hochberg([0.5, 1.5])


def test_runs_are_taken_apart_when_every_two_consecutive_starts_are_12_hours_apart():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    nightly = [t0 + timedelta(days=i) for i in (3, 0, 1, 2)]  # in any order
    assert taken_apart(nightly)
    assert not taken_apart([*nightly, t0 + timedelta(days=2, hours=1)])
    assert taken_apart([t0, t0 + timedelta(hours=12)])
    assert not taken_apart([t0]) and not taken_apart([])


def test_interval_quantiles_have_the_sampling_error_of_that_many_requests():
    """Monte Carlo truth: 400 runs of 600 log-normal requests reported as 3 windows of
    uneven size; the spread of the log p50 and p95 over the runs against the variance each
    run states, and the values against the true quantiles."""
    rng = np.random.default_rng(21)
    levels = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
    sigma, median = 0.5, 40.0
    logs, variances = [], []
    for _ in range(400):
        windows = [median * np.exp(sigma * rng.standard_normal(c)) for c in (150, 300, 150)]
        knots = [np.quantile(w, levels) for w in windows]
        stats_ = interval_quantile_statistics(knots, [150, 300, 150], ["p50", "p95"])
        logs.append([math.log(s.value) for s in stats_])
        variances.append([s.variance for s in stats_])
    logs, variances = np.array(logs), np.array(variances)
    truth = np.log(median) + sigma * stats.norm.ppf([0.5, 0.95])
    # within 2 %: the windows' own p95 (numpy's type 7 of 150 values) are biased low by about 1 %
    np.testing.assert_allclose(logs.mean(axis=0), truth, atol=0.02)
    stated = np.sqrt(variances.mean(axis=0))
    np.testing.assert_allclose(logs.std(axis=0, ddof=1), stated, rtol=0.2)


def test_interval_quantiles_too_far_out_and_whole_milliseconds():
    knots = [[1.0, 2.0, 3.0, 3.5, 4.0, 7.0], [1.0, 2.0, 3.0, 3.2, 5.0, 6.0]]
    p50, p99 = interval_quantile_statistics(knots, [120, 130], ["p50", "p99"])
    assert p50.resolution == 1.0 and p50.variance > 0  # min and max are whole ms
    assert p50.n == 250 and math.isnan(p99.variance)  # 2.5 requests beyond p99: not judged
    (none,) = interval_quantile_statistics([[math.nan] * 6], [10], ["p50"])
    assert math.isnan(none.value)


def test_a_count_over_a_span_has_the_poisson_variance_of_its_log():
    rng = np.random.default_rng(8)
    counts = rng.poisson(400.0, 4000)
    stated = [count_rate_statistic(int(c), 20.0) for c in counts[:3]]
    assert stated[0].value == counts[0] / 20.0 and stated[0].variance == 1 / counts[0]
    spread = np.std(np.log(counts / 20.0), ddof=1)
    assert spread == pytest.approx(math.sqrt(1 / 400.0), rel=0.05)
    assert math.isnan(count_rate_statistic(0, 20.0).value)
    assert math.isnan(count_rate_statistic(5, 0.0).variance)


def freeman_tukey(x: float, n: int) -> float:
    return (math.asin(math.sqrt(x / (n + 1))) + math.asin(math.sqrt((x + 1) / (n + 1)))) / 2


def mean_freeman_tukey(rate: float, n: int) -> float:
    """The double arcsine's mean over a run's binomial count of events, by scipy."""
    x = np.arange(n + 1)
    t = (np.arcsin(np.sqrt(x / (n + 1))) + np.arcsin(np.sqrt((x + 1) / (n + 1)))) / 2
    return float(np.sum(stats.binom.pmf(x, n, rate) * t))


def test_a_rate_on_the_arcsine_scale_hand_computed():
    # One baseline run without errors, a candidate with 20 of 1,000, a 30 % prior: the
    # double arcsine of each run, the prior's spread at the level of both runs (1 %).
    prior = RunNoise.prior(0.30)
    result = compare_runs(
        [rate_statistic(0, 1000)],
        rate_statistic(20, 1000),
        statistic="rate",
        scale="arcsine",
        prior=prior,
    )
    d = freeman_tukey(20, 1000) - freeman_tukey(0, 1000)
    tau = math.asin(math.sqrt(0.013)) - math.asin(math.sqrt(0.01))
    se = math.sqrt(2 * (tau**2 + 1 / 4002))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(d / se), rel=1e-9)
    assert result.change == pytest.approx(0.02) and result.baseline == 0.0
    # The interval's ends are the rates whose double arcsine (x = rate * n events) is the
    # candidate's plus or minus 1.96 standard errors.
    half = stats.norm.ppf(0.975) * se
    for end, target in ((result.ci_low, -half), (result.ci_high, half)):
        assert freeman_tukey(end * 1000, 1000) == pytest.approx(
            freeman_tukey(20, 1000) + target, rel=1e-9
        )
    assert result.regression


@pytest.mark.parametrize(("rate", "n"), [(0.002, 1000), (0.005, 1000), (0.05, 100)])
def test_rates_of_identical_runs_with_few_events_are_significant_at_the_nominal_rate(rate, n):
    # Identical runs with 1-5 expected errors and no run effect: p < 0.05 in about 5 % of
    # pairs. The plain arcsine, arcsin(sqrt(x / n)) with variance 1 / (4n), gave 17 % at 0.2 %.
    rng = np.random.default_rng(int(rate * 1e4) + n)
    errors = rng.binomial(n, rate, (4000, 2))
    p_values = np.array(
        [
            compare_runs(
                [rate_statistic(int(b), n)],
                rate_statistic(int(c), n),
                statistic="rate",
                scale="arcsine",
                prior=NO_FLOOR,
            ).p_value
            for b, c in errors
        ]
    )
    assert 0.03 <= np.mean(p_values < 0.05) <= 0.06


def test_a_history_of_rates_needs_the_runs_counts():
    # Each run's double arcsine less its mean at the runs' pooled rate (20 errors of 1,700):
    # runs of other sizes sit at other levels at one rate.
    rates, counts = [0.01, 0.02, 0.0], [1000, 500, 200]
    history = RunNoise.measured(rates, scale="arcsine", source="history", counts=counts)
    values = [
        freeman_tukey(r * n, n) - mean_freeman_tukey(20 / 1700, n)
        for r, n in zip(rates, counts, strict=True)
    ]
    assert history.variance == pytest.approx(np.var(values, ddof=1), rel=1e-12)
    assert history.df == 2
    with pytest.raises(ValueError, match="counts"):
        RunNoise.measured(rates, scale="arcsine", source="history")


def test_a_history_of_large_runs_lends_its_run_effect_not_its_sampling_error():
    # Eight earlier runs of 50,000 requests measure the error rate's run-to-run spread with
    # little sampling error in it; the runs compared have 200 requests each and add their
    # own. Taken whole, that history made 25.5 % of unchanged small runs regressions.
    rng = np.random.default_rng(7)
    shape, rate, flagged, reps = 1 / 0.3**2, 0.005, 0, 2000
    for _ in range(reps):
        earlier = rng.binomial(50_000, rate * rng.gamma(shape, 1 / shape, 8)) / 50_000
        history = RunNoise.measured(earlier, scale="arcsine", source="h", counts=[50_000] * 8)
        base, cand = rng.binomial(200, rate * rng.gamma(shape, 1 / shape, 2))
        flagged += compare_runs(
            [rate_statistic(int(base), 200)],
            rate_statistic(int(cand), 200),
            statistic="rate",
            scale="arcsine",
            min_effect=0.005,
            history=history,
        ).regression
    assert flagged / reps <= 0.05
    assert history.sampling_variance("arcsine", math.nan) == pytest.approx(1 / 200_002)


def test_a_latency_history_of_large_runs_lends_its_run_effect_to_small_ones():
    # Ten earlier runs of 5,000 requests measure the p95's run-to-run spread (3 % drift) with
    # little sampling error in it; the baseline run and the candidate have 200 requests,
    # whose p95 moves by about 8 % on sampling alone. Taken whole, that history made the
    # intervals of unchanged runs cover 70 % and flagged 5 % of them.
    rng = np.random.default_rng(5)
    covered = flagged = 0
    reps = 300
    for _ in range(reps):
        drift = rng.normal(0, 0.03, 12)
        earlier = [np.quantile(np.exp(rng.normal(3 + d, 0.5, 5000)), 0.95) for d in drift[:10]]
        history = RunNoise.measured(earlier, source="h", counts=[5000] * 10)
        base, cand = (
            quantile_statistics(np.exp(rng.normal(3 + d, 0.5, 200)), ["p95"])[0] for d in drift[10:]
        )
        result = compare_runs([base], cand, statistic="p95", history=history)
        covered += result.ci_low <= 0 <= result.ci_high
        flagged += result.regression
    assert 0.93 <= covered / reps <= 0.99
    assert flagged / reps <= 0.04


def test_a_rate_history_of_small_runs_is_not_read_below_its_own_sampling_error():
    # Ten earlier runs of 2,000 requests at 1 % errors (30 % run-to-run variation), runs of
    # 50,000 compared: the history's spread is mostly its own sampling error, so its run
    # effect alone (the spread less that) was known to far fewer degrees of freedom than it
    # was taken on: 88 % coverage and 6 % false alarms. Kept whole it is conservative.
    rng = np.random.default_rng(3)
    shape, rate, covered, flagged, reps = 1 / 0.3**2, 0.01, 0, 0, 1000
    for _ in range(reps):
        earlier = rng.binomial(2000, rate * rng.gamma(shape, 1 / shape, 10)) / 2000
        history = RunNoise.measured(earlier, scale="arcsine", source="h", counts=[2000] * 10)
        base, cand = rng.binomial(50_000, rate * rng.gamma(shape, 1 / shape, 2))
        result = compare_runs(
            [rate_statistic(int(base), 50_000)],
            rate_statistic(int(cand), 50_000),
            statistic="rate",
            scale="arcsine",
            history=history,
        )
        covered += result.ci_low <= 0 <= result.ci_high
        flagged += result.regression
    assert covered / reps >= 0.93
    assert flagged / reps <= 0.03


def test_a_history_of_identical_whole_millisecond_percentiles_measured_no_spread():
    # Ten earlier runs whose p50 is 3 ms each: the variance of equal logarithms came out as
    # 5e-32, not 0, which passed for a measured spread, and the runs compared were judged on
    # almost nothing: 56 % of unchanged runs had p < 0.05. No spread at all leaves the
    # sampling variances to decide.
    assert RunNoise.measured([3.0] * 10, source="h", counts=[2000] * 10).variance == 0.0
    rng = np.random.default_rng(7)

    def run(n, u):
        return np.round(np.exp(rng.normal(math.log(3) + u, 0.3, n)))

    significant = 0
    for _ in range(300):
        u = rng.normal(0, 0.03, 12)
        earlier = [np.quantile(run(2000, x), 0.5) for x in u[:10]]
        history = RunNoise.measured(earlier, source="h", counts=[2000] * 10)
        base, cand = (quantile_statistics(run(2000, x), ["p50"])[0] for x in u[10:])
        significant += compare_runs([base], cand, statistic="p50", history=history).p_value < 0.05
    assert significant / 300 <= 0.06


def test_a_throughput_history_of_long_runs_lends_its_run_effect_to_short_ones():
    # A tool's interval counts: ten earlier runs of 100 s at 50 requests/s (3 % run effect),
    # the baseline run and the candidate of 4 s. The history's sizes are seconds, the unit of
    # the runs' own (count_rate_statistic, like the per-second counts of per-request data).
    rng = np.random.default_rng(2)
    covered, reps = 0, 1000
    for _ in range(reps):
        rates = 50 * np.exp(rng.normal(0, 0.03, 12))
        earlier = rng.poisson(rates[:10] * 100) / 100
        history = RunNoise.measured(earlier, source="h", counts=[100] * 10)
        base, cand = (count_rate_statistic(int(rng.poisson(r * 4)), 4.0) for r in rates[10:])
        result = compare_runs(
            [base], cand, statistic="rate", higher_is_worse=False, history=history
        )
        covered += result.ci_low <= 0 <= result.ci_high
    assert covered / reps >= 0.93


def test_baseline_runs_without_errors_of_slightly_different_sizes_are_no_evidence():
    # Three runs taken apart without an error, of 199, 200 and 201 requests: their double
    # arcsines differ by 1e-8, which passed for a spread far below the rates' sampling
    # variance, and one error in the candidate's 200 was a regression at p = 4e-6. As with
    # runs of one size (and as Fisher's test of 0 of 600 against 1 of 200, p = 0.25), it is
    # not significant.
    candidate = rate_statistic(1, 200)
    for sizes in [(200, 200, 200), (199, 200, 201)]:
        base = [rate_statistic(0, n) for n in sizes]
        result = compare_runs(
            base, candidate, statistic="rate", scale="arcsine", baseline_apart=True
        )
        assert result.p_value > 0.1 and result.ci_high - result.ci_low > 0.01, (sizes, result)
    # The mirror image: one error in each baseline run, none in the candidate.
    better = compare_runs(
        [rate_statistic(1, n) for n in (199, 200, 201)],
        rate_statistic(0, 200),
        statistic="rate",
        scale="arcsine",
        baseline_apart=True,
    )
    assert better.p_value > 0.1 and not better.improvement


def test_a_change_of_exactly_the_threshold_or_one_step_is_not_beyond_it():
    # Every baseline run's p99 is 5 ms, the candidate's 6 ms: +20 % and one whole-millisecond
    # step exactly, neither of which is "more than". The baseline's value comes back from
    # the mean of logarithms as 4.999999999999999, and the row was a regression.
    # Runs taken apart: their agreement is measured, and the change is significant.
    base = [RunStatistic(5.0, 0.0004, 2000, 1.0) for _ in range(3)]
    result = compare_runs(
        base, RunStatistic(6.0, 0.0004, 2000, 1.0), statistic="p99", baseline_apart=True
    )
    assert result.change == pytest.approx(0.2) and result.p_value < 1e-6
    assert not result.regression
    finer = compare_runs(
        base, RunStatistic(6.0, 0.0004, 2000, 0.1), statistic="p99", baseline_apart=True
    )
    assert not finer.regression  # 20 % is not more than 20 % at any resolution
    assert compare_runs(
        base, RunStatistic(6.01, 0.0004, 2000, 0.01), statistic="p99", baseline_apart=True
    ).regression


def test_a_history_keeps_the_sizes_of_the_runs_it_was_measured_on():
    # A run without a value or without a count says nothing of the spread.
    noise = RunNoise.measured(
        [10.0, 11.0, math.nan, 12.0, 13.0], source="h", counts=[100, 400, 100, 0, 200]
    )
    assert noise.sizes == (100.0, 400.0, 200.0)
    assert noise.variance == pytest.approx(np.var(np.log([10.0, 11.0, 13.0]), ddof=1))
    # c = v n of the runs compared; the history's own sampling variance is c times 1/n.
    assert noise.sampling_variance("log", 2.0) == pytest.approx(
        2.0 * (1 / 100 + 1 / 400 + 1 / 200) / 3
    )
    assert noise.sampling_variance("arcsine", math.nan) == pytest.approx(
        (1 / 402 + 1 / 1602 + 1 / 802) / 3
    )
    assert RunNoise.measured([10.0, 11.0], source="h").sampling_variance("log", 2.0) == 0.0


@pytest.mark.parametrize(("base_n", "cand_n", "rate"), [(100, 50_000, 0.008), (200, 20_000, 0.002)])
def test_a_rate_of_small_baseline_runs_against_a_large_candidate_does_not_lean(
    base_n, cand_n, rate
):
    # Three or five baseline runs of a few errors each against a candidate of many requests,
    # all at one rate, no run effect: each side's double arcsine sits at its own size's
    # level. Compared through the baseline's mean rate at the candidate's size, 8.3 % of
    # (100, 50,000) and 13.4 % of (200, 20,000) were significant, all one way (Fisher's exact
    # test on the pooled counts: 3.0 % and 3.1 %).
    rng = np.random.default_rng(base_n)
    k = 3 if base_n == 100 else 5
    significant = fisher = 0
    for _ in range(600):
        base = rng.binomial(base_n, rate, k)
        cand = int(rng.binomial(cand_n, rate))
        result = compare_runs(
            [rate_statistic(int(x), base_n) for x in base],
            rate_statistic(cand, cand_n),
            statistic="rate",
            scale="arcsine",
            prior=RunNoise.prior(0.30),
            baseline_apart=True,
        )
        significant += result.p_value < 0.05
        table = [[base.sum(), k * base_n - base.sum()], [cand, cand_n - cand]]
        fisher += stats.fisher_exact(table)[1] < 0.05
    assert significant / 600 <= 0.03
    assert fisher / 600 <= 0.05


def test_a_candidate_with_more_requests_than_its_baseline_runs_keeps_its_power():
    # 3 baseline runs of 2,000 requests at 1 % errors, a candidate of 50,000: its smaller
    # sampling variance, subtracted from the measured spread, collapsed the t's degrees of
    # freedom (2 -> 0.16) and a tripled error rate was a regression in 0.5 % of runs,
    # against 78.5 % for a candidate of 2,000.
    rng = np.random.default_rng(2000)
    flagged = false = 0
    for _ in range(300):
        base = [rate_statistic(int(rng.binomial(2000, 0.01)), 2000) for _ in range(3)]
        settings = dict(
            statistic="rate",
            scale="arcsine",
            min_effect=0.005,
            prior=RunNoise.prior(0.30),
            baseline_apart=True,
        )
        same = rate_statistic(int(rng.binomial(50_000, 0.01)), 50_000)
        tripled = rate_statistic(int(rng.binomial(50_000, 0.03)), 50_000)
        false += compare_runs(base, same, **settings).p_value < 0.05
        flagged += compare_runs(base, tripled, **settings).regression
    assert flagged / 300 >= 0.7
    assert false / 300 <= 0.05
    # Baseline runs of other sizes (200, 200, 20,000): their sampling variance is the small
    # runs', and a candidate of 5,000 is larger than those (compared with their arithmetic
    # mean, 6,800, it was not: 0.17 df, and an interval of every rate from -1 to +99 points).
    mixed = [rate_statistic(2, 200), rate_statistic(2, 200), rate_statistic(200, 20_000)]
    result = compare_runs(mixed, rate_statistic(150, 5000), **settings)
    assert result.df == pytest.approx(2) and result.ci_high < 0.1, result


def test_the_interval_of_a_rate_holds_its_change_and_0_exactly_when_p_is_at_least_alpha():
    # Runs of different sizes (200 against 50,000 requests, either way): the interval, the
    # change and the test read the same difference, so they agree on every pair, and the
    # interval stays within the rates a candidate can have.
    rng = np.random.default_rng(11)
    for _ in range(400):
        sizes = rng.permutation([200, 50_000])
        rates = 0.005 * rng.gamma(4, 1 / 4, 2)
        base, cand = (
            rate_statistic(int(rng.binomial(n, r)), int(n))
            for n, r in zip(sizes, rates, strict=True)
        )
        result = compare_runs([base], cand, statistic="rate", scale="arcsine")
        assert (result.ci_low <= 0 <= result.ci_high) == (result.p_value >= 0.05), result
        assert result.ci_low <= result.change <= result.ci_high, result
        assert -base.value <= result.ci_low and result.ci_high <= 1 - base.value, result
    # Large changes over small baseline runs without an error (the test's difference, size
    # corrected, is smaller than the shown one's): the interval still holds the change.
    for base, cand in (((0, 100), (5000, 50_000)), ((0, 20), (10_000, 50_000))):
        result = compare_runs(
            [rate_statistic(*base)] * 5, rate_statistic(*cand), statistic="rate", scale="arcsine"
        )
        assert result.regression and result.ci_low <= result.change <= result.ci_high, result
    # A size-corrected difference near 0 next to a shown one that is not (one error in each of
    # 3 runs of 100 against 650 of 50,000): the interval keeps its width, where scaling it by
    # their ratio covered every rate from -1 to +99 points.
    near = compare_runs(
        [rate_statistic(1, 100)] * 3,
        rate_statistic(650, 50_000),
        statistic="rate",
        scale="arcsine",
        baseline_apart=True,
        prior=RunNoise.prior(0.30),
    )
    assert near.ci_low <= near.change <= near.ci_high and near.ci_high < 0.05, near
    # No error on either side is no change, whatever the sizes.
    none = compare_runs(
        [rate_statistic(0, 200)], rate_statistic(0, 50_000), statistic="rate", scale="arcsine"
    )
    assert none.p_value == 1.0 and none.ci_low == 0.0


def test_a_spread_pooled_over_endpoints_that_share_their_runs_keeps_its_false_alarms():
    # Ten endpoints of three nightly baseline runs and an unchanged candidate; the run effect
    # (5 %) is the machine's, shared by a run's endpoints; one endpoint has 30 requests a run,
    # the others 50,000. Written apart from the product: each run's log statistic is the run
    # effect plus its endpoint's sampling error (the median's, pi/2 sigma^2 / n, sigma 0.5).
    rng = np.random.default_rng(2024)
    sizes = [50_000] * 9 + [30]
    sampling = [math.pi / 2 * 0.25 / n for n in sizes]
    k, reps = 3, 300
    flagged = np.zeros(len(sizes))
    for _ in range(reps):
        effect = rng.normal(0, 0.05, k + 1)
        runs = [
            [RunStatistic(math.exp(4 + y), v, n) for y in effect + rng.normal(0, v**0.5, k + 1)]
            for v, n in zip(sampling, sizes, strict=True)
        ]
        spreads = [run_spread(r[:k]) for r in runs]
        pooled = moderated_noise(
            [s for s, _, _ in spreads], k - 1, source="endpoints", sampling=[v for *_, v in spreads]
        )
        for j, r in enumerate(runs):
            c = compare_runs(r[:k], r[k], statistic="median", history=pooled, baseline_apart=True)
            flagged[j] += c.p_value < 0.05
    # Taken as independent (22 df), 12-14 % of the busy endpoints' tests and 26 % of the
    # quiet one's came out below 0.05; the endpoints know the shared effect to k - 1 df, and
    # the quiet one's runs hold more sampling than the pool.
    assert flagged[:9].sum() / (9 * reps) <= 0.065
    assert flagged[9] / reps <= 0.075
