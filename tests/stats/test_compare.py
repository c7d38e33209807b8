"""Tests of metrics_pipeline.stats.compare against independently computed reference values."""

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from metrics_pipeline.stats import benjamini_hochberg, compare_rates, compare_samples

# scipy.stats.mannwhitneyu docs example (Conover): exact two-sided p = 14/126 = 1/9.
MALES = [19, 22, 16, 29, 24]
FEMALES = [20, 11, 17, 12]


def test_median_uses_mann_whitney_textbook_example():
    result = compare_samples(FEMALES, MALES, statistic="median")
    assert result.p_value == pytest.approx(1 / 9, rel=1e-12)
    assert result.baseline == 14.5
    assert result.candidate == 22.0
    assert result.change == pytest.approx(22.0 / 14.5 - 1)
    assert (result.n_baseline, result.n_candidate) == (4, 5)
    assert not result.regression  # +52 % but not significant


def test_quantile_test_small_counts_uses_fisher_hand_computed():
    # Pooled 1..20: p90 threshold 1 + 19 * 0.9 = 18.1, so the table is above [0, 2] and
    # below [10, 8]. Two-sided Fisher: P(0,2) + P(2,0) = 2 * C(10,2) / C(20,2) = 90/190.
    result = compare_samples(np.arange(1, 11), np.arange(11, 21), statistic="p90")
    assert result.p_value == pytest.approx(9 / 19, rel=1e-12)
    assert result.baseline == pytest.approx(9.1)  # 1 + 9 * 0.9
    assert result.candidate == pytest.approx(19.1)  # 11 + 9 * 0.9
    assert result.change == pytest.approx(19.1 / 9.1 - 1)


def test_p50_quantile_test_equals_mood_median_test():
    rng = np.random.default_rng(7)
    # Integers so that values tie with the pooled median (counted below, as ties="below").
    baseline = rng.integers(0, 20, size=60).astype(float)
    candidate = rng.integers(3, 23, size=80).astype(float)
    expected = stats.median_test(baseline, candidate, ties="below", correction=False).pvalue
    result = compare_samples(baseline, candidate, statistic="p50")
    assert result.p_value == pytest.approx(expected, rel=1e-12)


def test_mean_is_arithmetic_and_tested_with_welch_on_logs():
    rng = np.random.default_rng(3)
    baseline = rng.lognormal(1.0, 0.6, size=80)
    candidate = rng.lognormal(1.2, 0.9, size=50)
    expected = stats.ttest_ind(np.log(baseline), np.log(candidate), equal_var=False).pvalue
    result = compare_samples(baseline, candidate, statistic="mean")
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.baseline == pytest.approx(baseline.sum() / baseline.size)
    assert result.candidate == pytest.approx(candidate.sum() / candidate.size)


@pytest.mark.parametrize("statistic", ["median", "p95", "p99", "mean"])
def test_exact_scaling_gives_known_change_inside_ci(statistic):
    baseline = np.random.default_rng(11).lognormal(2.0, 0.5, size=3000)
    result = compare_samples(baseline, baseline * 1.3, statistic=statistic)
    assert result.change == pytest.approx(0.3, rel=1e-9)
    assert result.ci_low < 0.3 < result.ci_high
    assert result.regression


@pytest.mark.parametrize("statistic", ["median", "p95", "mean"])
def test_lognormal_shift_of_30_percent_is_a_regression(statistic):
    rng = np.random.default_rng(5)
    baseline = rng.lognormal(3.0, 0.5, size=5000)
    candidate = rng.lognormal(3.0, 0.5, size=5000) * 1.3
    result = compare_samples(baseline, candidate, statistic=statistic)
    assert result.regression
    assert result.change == pytest.approx(0.3, abs=0.05)
    assert result.ci_low > 0.15
    assert result.p_value < 1e-6


def test_identical_distributions_are_rarely_flagged():
    # Small, wide samples so that |change| > 20 % happens by chance and the p-value must
    # keep the verdict at False.
    false_alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        baseline = rng.lognormal(0.0, 1.0, size=300)
        candidate = rng.lognormal(0.0, 1.0, size=300)
        result = compare_samples(baseline, candidate, statistic="p95", n_resamples=500, seed=seed)
        false_alarms += result.regression
    assert false_alarms <= 2


def test_throughput_drop_is_worse():
    rng = np.random.default_rng(9)
    baseline = rng.normal(1000.0, 50.0, size=500)
    candidate = rng.normal(700.0, 35.0, size=500)
    result = compare_samples(baseline, candidate, higher_is_worse=False)
    assert result.change == pytest.approx(1 - result.candidate / result.baseline)
    assert result.change == pytest.approx(0.3, abs=0.02)
    assert 0.25 < result.ci_low < result.ci_high < 0.35
    assert result.regression

    improved = compare_samples(candidate, baseline, higher_is_worse=False)
    assert improved.change < 0
    assert not improved.regression


def test_min_effect_blocks_large_relative_change_of_fast_endpoint():
    rng = np.random.default_rng(4)
    baseline = rng.normal(0.5, 0.02, size=1000)  # 0.5 ms endpoint
    candidate = rng.normal(0.625, 0.025, size=1000)  # +25 %, +0.125 ms
    blocked = compare_samples(baseline, candidate, min_effect=1.0)
    assert blocked.change == pytest.approx(0.25, abs=0.01)
    assert blocked.p_value < 1e-10
    assert not blocked.regression
    assert compare_samples(baseline, candidate, min_effect=0.1).regression


def test_nan_null_and_infinite_values_are_dropped():
    clean_base, clean_cand = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0, 7.0, 9.0]
    expected = compare_samples(clean_base, clean_cand, statistic="p90")
    result = compare_samples(
        pl.Series([1.0, None, 2.0, 3.0, float("nan"), 4.0]),
        np.array([2.0, 3.0, np.inf, 5.0, 7.0, np.nan, 9.0]),
        statistic="p90",
    )
    assert result == expected
    assert (result.n_baseline, result.n_candidate) == (4, 5)


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [([1.0], [1.0, 2.0, 3.0]), ([], [1.0, 2.0]), ([np.nan, np.nan], [1.0, 2.0, 3.0])],
)
def test_fewer_than_two_values_gives_nan_and_no_regression(baseline, candidate):
    result = compare_samples(baseline, candidate, statistic="p95")
    for value in (result.change, result.ci_low, result.ci_high, result.p_value):
        assert math.isnan(value)
    assert not result.regression
    assert result.n_baseline == len([v for v in baseline if not math.isnan(v)])


def test_unknown_statistic_is_rejected():
    for statistic in ("p100", "p0", "max", "rate"):
        with pytest.raises(ValueError, match="unknown statistic"):
            compare_samples([1.0, 2.0], [1.0, 2.0], statistic=statistic)


def test_large_samples_ci_width_matches_delta_method():
    # Above the bootstrap subsample size; the reference is the delta-method standard error of
    # the ratio of two independent means: se(c/b) = (c/b) * sqrt(se_b²/b² + se_c²/c²).
    rng = np.random.default_rng(21)
    baseline = rng.lognormal(2.0, 0.5, size=100_000)
    candidate = rng.lognormal(2.0, 0.5, size=80_000) * 1.1
    result = compare_samples(baseline, candidate, statistic="mean")
    b, c = baseline.mean(), candidate.mean()
    se = (c / b) * math.hypot(
        baseline.std(ddof=1) / math.sqrt(baseline.size) / b,
        candidate.std(ddof=1) / math.sqrt(candidate.size) / c,
    )
    z = stats.norm.ppf(0.975)
    assert result.ci_high - result.ci_low == pytest.approx(2 * z * se, rel=0.15)
    assert result.ci_low < result.change < result.ci_high
    assert (result.n_baseline, result.n_candidate) == (100_000, 80_000)
    assert compare_samples(baseline, candidate, statistic="mean") == result  # seeded


def test_as_dict_is_json_serialisable():
    result = compare_samples(FEMALES, MALES)
    data = json.loads(json.dumps(result.as_dict()))
    assert data["regression"] is False
    assert set(data) >= {"change", "ci_low", "ci_high", "p_value", "baseline", "candidate"}


# Katz log CIs of the risk ratio (candidate / baseline), stored from statsmodels 0.15:
# Table2x2(table).riskratio_confint(method="normal") with rows candidate, baseline
# (importing statsmodels would cost ~5 s per test run).
KATZ_RR_30_OF_1000_VS_10_OF_1000 = (1.4745052273578412, 6.1037423489688525)
# Same with 0.5 added to every cell of [[10, 990], [0, 1000]] (Haldane-Anscombe).
KATZ_RR_10_OF_1000_VS_0_OF_1000_SHIFTED = (1.23224766397364, 357.8826017635965)


def test_error_rate_tripling_is_a_regression():
    result = compare_rates(10, 1000, 30, 1000)
    assert result.statistic == "rate"
    assert (result.baseline, result.candidate) == (0.01, 0.03)
    assert result.change == pytest.approx(2.0)
    assert result.p_value == pytest.approx(stats.fisher_exact([[10, 990], [30, 970]]).pvalue)
    expected_ci = [rr - 1 for rr in KATZ_RR_30_OF_1000_VS_10_OF_1000]
    assert (result.ci_low, result.ci_high) == pytest.approx(expected_ci, rel=1e-9)
    assert result.regression


def test_error_rate_small_increase_is_not_a_regression():
    result = compare_rates(10, 1000, 11, 1000)
    assert result.change == pytest.approx(0.1)
    assert result.p_value == pytest.approx(1.0)
    assert not result.regression


def test_error_rate_from_zero_baseline():
    result = compare_rates(0, 1000, 10, 1000)
    assert result.change == pytest.approx(0.01 / 0.0005)  # rate 0 floored at half an event
    assert result.p_value == pytest.approx(stats.fisher_exact([[0, 1000], [10, 990]]).pvalue)
    expected_ci = [rr - 1 for rr in KATZ_RR_10_OF_1000_VS_0_OF_1000_SHIFTED]
    assert (result.ci_low, result.ci_high) == pytest.approx(expected_ci, rel=1e-9)
    assert result.regression

    assert not compare_rates(0, 1000, 2, 1000).regression  # 0.2 % < min_effect 0.5 %
    unchanged = compare_rates(0, 1000, 0, 1000)
    assert unchanged.change == 0.0
    assert not unchanged.regression


def test_error_rate_invalid_and_empty_counts():
    with pytest.raises(ValueError):
        compare_rates(5, 4, 1, 10)
    with pytest.raises(ValueError):
        compare_rates(-1, 4, 1, 10)
    empty = compare_rates(0, 0, 3, 10)
    assert math.isnan(empty.p_value)
    assert empty.candidate == 0.3
    assert not empty.regression


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


def test_estimate_share_flags_a_change_whose_ci_reaches_the_threshold():
    # 10 % -> 11.6 % errors out of 10 000: +16 %. Katz interval computed here by hand:
    # se(log RR) = sqrt(1/1160 - 1/10000 + 1/1000 - 1/10000).
    se = math.sqrt(1 / 1160 - 1 / 10_000 + 1 / 1000 - 1 / 10_000)
    ci_high = math.exp(math.log(1.16) + stats.norm.ppf(0.975) * se) - 1
    p = stats.fisher_exact([[1000, 9000], [1160, 8840]]).pvalue
    assert ci_high > 0.20 and p < 0.05  # consistent with +20 %, and significant
    classic = compare_rates(1000, 10_000, 1160, 10_000, min_effect=0.0)
    assert classic.ci_high == pytest.approx(ci_high, rel=1e-9)
    assert not classic.regression  # +16 % is not "more than 20 %"
    assert compare_rates(1000, 10_000, 1160, 10_000, min_effect=0.0, estimate_share=0.75).regression
    # The estimate must still pass the share: 16 % < 0.9 x 20 %.
    assert not compare_rates(
        1000, 10_000, 1160, 10_000, min_effect=0.0, estimate_share=0.9
    ).regression
    # A CI that stays below the threshold is evidence against a 20 % worsening.
    narrow = compare_rates(10_000, 100_000, 11_600, 100_000, min_effect=0.0, estimate_share=0.75)
    assert narrow.ci_high < 0.20 and not narrow.regression
    with pytest.raises(ValueError, match="estimate_share"):
        compare_samples([1.0, 2.0], [1.0, 2.0], estimate_share=0.0)


def runs_with_factors(factors, size=20_000, seed=4):
    """One log-normal sample per run, scaled by the run's factor, and the run labels."""
    rng = np.random.default_rng(seed)
    values = [rng.lognormal(3.0, 0.3, size) * f for f in factors]
    labels = np.repeat([f"run-{i}" for i in range(len(factors))], size)
    return np.concatenate(values), labels


def test_run_to_run_noise_enters_the_ci_and_the_test():
    # Five baseline runs whose medians differ by a few % (their run effects); 20 000 requests
    # per run make request sampling negligible next to them (sd of a log median ~0.003).
    factors = np.exp([-0.05, 0.02, 0.0, 0.08, -0.03])
    baseline, labels = runs_with_factors(factors)
    candidate = np.random.default_rng(9).lognormal(3.0, 0.3, 20_000) * 1.10
    pooled = compare_samples(baseline, candidate)
    by_run = compare_samples(baseline, candidate, baseline_runs=labels)
    assert pooled.p_value < 1e-50  # request against request: the runs' spread is ignored

    # Reference: the candidate as one more run of a random-effects model, with the run
    # variance taken from the baseline runs' log medians (numpy, not the implementation).
    k = len(factors)
    per_run = np.log([np.median(baseline[labels == f"run-{i}"]) for i in range(k)])
    se = math.sqrt(np.var(per_run, ddof=1) * (1 + 1 / k))
    d = math.log(np.median(candidate) / np.median(baseline))
    z = stats.norm.ppf(0.975)
    assert by_run.change == pooled.change  # the estimate does not change
    assert by_run.p_value == pytest.approx(2 * stats.norm.sf(d / se), rel=0.1)
    assert (by_run.ci_low, by_run.ci_high) == pytest.approx(
        (math.exp(d - z * se) - 1, math.exp(d + z * se) - 1), rel=0.05
    )
    assert by_run.ci_high - by_run.ci_low > 5 * (pooled.ci_high - pooled.ci_low)


def test_a_candidate_within_the_spread_of_the_baseline_runs_is_not_a_regression():
    # p95 of runs that differ by up to 25 % (a slow mode whose share moves between runs; log
    # factors with sd 0.15): a candidate ~28 % above the pooled p95 is 1.5 run sd away.
    factors = [0.85, 1.0, 1.25, 0.9, 1.1]
    baseline, labels = runs_with_factors(factors, size=2000)
    candidate = np.random.default_rng(10).lognormal(3.0, 0.3, 2000) * 1.4
    pooled = compare_samples(baseline, candidate, statistic="p95")
    assert pooled.regression and pooled.change > 0.2
    by_run = compare_samples(baseline, candidate, statistic="p95", baseline_runs=labels)
    assert not by_run.regression and by_run.p_value > 0.05


def test_one_baseline_run_or_no_labels_is_the_request_level_comparison():
    baseline, labels = runs_with_factors([1.0], size=500)
    candidate = np.random.default_rng(3).lognormal(3.0, 0.3, 500) * 1.3
    assert compare_samples(baseline, candidate, baseline_runs=labels) == compare_samples(
        baseline, candidate
    )
    with pytest.raises(ValueError, match="one label per baseline value"):
        compare_samples(baseline, candidate, baseline_runs=labels[:-1])
