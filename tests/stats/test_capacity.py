"""Tests of metrics_pipeline.stats.capacity against hand-computed and published reference values."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from metrics_pipeline.stats.capacity import (
    estimate_capacity,
    fit_usl,
    load_at_latency_sla,
    sla_crossing,
    steps_from_series,
)

LOADS = np.array([1, 2, 4, 8, 16, 24, 32, 48, 64, 96], dtype=float)
LAMBDA, SIGMA, KAPPA = 100.0, 0.05, 0.001

# SPEC SDM91 on a Sun SPARCcenter 2000 (Gunther, Guerrilla Capacity Planning, 2007), as shipped
# with the R package usl. R usl 2.0 (nls, tests/summary.Rout.save and residuals.Rout.save):
# sigma 2.773e-02, kappa 1.044e-04, gamma (lambda) 9.000e+01, R^2 0.9896, peak 97 (2 digits).
SDM91_LOAD = [1, 18, 36, 72, 108, 144, 216]
SDM91_THROUGHPUT = [64.9, 995.9, 1652.4, 1853.2, 1828.9, 1775.0, 1702.2]
SDM91_R_RESIDUALS = [-25.10, -81.66, 111.09, 3.05, -49.99, -46.60, 56.00]

# Ray tracer benchmark from the same book; R usl fits kappa = 0 (tests/usl-default.Rout.save:
# sigma 0.06, kappa 0.00 at one digit).
RAYTRACER_LOAD = [1, 4, 8, 12, 16, 20, 24, 28, 32, 48, 64]
RAYTRACER_THROUGHPUT = [20, 78, 130, 170, 190, 200, 210, 230, 260, 280, 310]


def usl(n, lam, sigma, kappa):
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def test_recovers_known_parameters_from_exact_data():
    fit = fit_usl(LOADS, usl(LOADS, LAMBDA, SIGMA, KAPPA))
    assert fit.lambda_ == pytest.approx(LAMBDA, rel=1e-6)
    assert fit.sigma == pytest.approx(SIGMA, rel=1e-6)
    assert fit.kappa == pytest.approx(KAPPA, rel=1e-6)
    peak = math.sqrt((1 - 0.05) / 0.001)  # 30.822...
    assert fit.peak_load == pytest.approx(peak, rel=1e-6)
    assert fit.max_throughput == pytest.approx(
        100 * peak / (1 + 0.05 * (peak - 1) + 0.001 * peak * (peak - 1)), rel=1e-6
    )
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.n_points == LOADS.size


@pytest.mark.parametrize("seed", range(5))
def test_recovers_known_parameters_with_two_percent_noise(seed):
    rng = np.random.default_rng(seed)
    noisy = usl(LOADS, LAMBDA, SIGMA, KAPPA) * (1 + rng.normal(0, 0.02, LOADS.size))
    fit = fit_usl(LOADS, noisy)
    assert fit.sigma == pytest.approx(SIGMA, abs=0.015)
    assert fit.kappa == pytest.approx(KAPPA, rel=0.15)
    assert fit.peak_load == pytest.approx(math.sqrt(0.95 / 0.001), rel=0.10)
    assert fit.max_throughput == pytest.approx(usl(30.822, LAMBDA, SIGMA, KAPPA), rel=0.03)


def test_spec_sdm91_matches_r_usl():
    fit = fit_usl(SDM91_LOAD, SDM91_THROUGHPUT)
    assert fit.sigma == pytest.approx(2.773e-02, rel=1e-3)
    assert fit.kappa == pytest.approx(1.044e-04, rel=1e-3)
    assert fit.lambda_ == pytest.approx(90.00, rel=1e-3)
    assert fit.r_squared == pytest.approx(0.9896, abs=1e-4)
    assert round(fit.peak_load) == 97
    residuals = np.array(SDM91_THROUGHPUT) - fit.predict(SDM91_LOAD)
    np.testing.assert_allclose(residuals, SDM91_R_RESIDUALS, atol=0.02)
    assert fit.kappa_p_value < 0.05  # the retrograde fall after 72 users is significant


def test_raytracer_is_amdahl_like_r_usl():
    fit = fit_usl(RAYTRACER_LOAD, RAYTRACER_THROUGHPUT)
    assert fit.kappa == 0.0
    assert fit.sigma == pytest.approx(0.06, abs=0.005)
    assert fit.peak_load == math.inf
    assert fit.max_throughput == pytest.approx(fit.lambda_ / fit.sigma)


def test_amdahl_data_gives_infinite_peak_and_asymptote():
    fit = fit_usl(LOADS, usl(LOADS, LAMBDA, SIGMA, 0.0))
    assert fit.kappa == 0.0
    assert fit.peak_load == math.inf
    assert fit.sigma == pytest.approx(SIGMA, rel=1e-6)
    assert fit.max_throughput == pytest.approx(100 / 0.05, rel=1e-6)  # lambda / sigma


def test_noisy_amdahl_data_rarely_gets_a_spurious_peak():
    # The F test keeps kappa at the 5 % level: about 1 in 20 noise draws is a false positive.
    dropped = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        noisy = usl(LOADS, LAMBDA, SIGMA, 0.0) * (1 + rng.normal(0, 0.02, LOADS.size))
        dropped += fit_usl(LOADS, noisy).peak_load == math.inf
    assert dropped >= 16


def test_predict_is_the_usl_formula():
    fit = fit_usl(LOADS, usl(LOADS, LAMBDA, SIGMA, KAPPA))
    assert fit.predict([10.0])[0] == pytest.approx(100 * 10 / (1 + 0.05 * 9 + 0.001 * 90), rel=1e-6)


def test_invalid_points_are_dropped_and_three_loads_required():
    fit = fit_usl([*LOADS, np.nan, 5.0], [*usl(LOADS, LAMBDA, SIGMA, KAPPA), 1.0, 0.0])
    assert fit.n_points == LOADS.size
    with pytest.raises(ValueError, match="3 distinct loads"):
        fit_usl([1, 1, 2, 2], [10, 11, 19, 20])


def p95_from_littles_law(n, think_time_ms=0.0):
    # R(N) = N / X(N) - Z (seconds -> ms), p95 twice the mean.
    return 2 * (1000 * n / usl(n, LAMBDA, SIGMA, KAPPA) - think_time_ms)


@pytest.mark.parametrize("think_time_ms", [0.0, 5.0])
def test_load_at_sla_on_usl_latency_matches_root_of_true_curve(think_time_ms):
    loads = LOADS[:-1]  # tested up to 64: 200 ms is crossed inside the range
    p95 = p95_from_littles_law(loads, think_time_ms)
    expected = brentq(lambda n: p95_from_littles_law(n, think_time_ms) - 200.0, 1, 1000)
    assert load_at_latency_sla(loads, p95, 200.0) == pytest.approx(expected, rel=1e-8)


def test_load_at_sla_extrapolates_and_tolerates_noise():
    loads = LOADS[:6]  # up to 24 users, p95 at most 54 ms: the 200 ms crossing is extrapolated
    rng = np.random.default_rng(3)
    p95 = p95_from_littles_law(loads) * (1 + rng.normal(0, 0.03, loads.size))
    expected = brentq(lambda n: p95_from_littles_law(n) - 200.0, 1, 1000)  # 73.7
    assert load_at_latency_sla(loads, p95, 200.0) == pytest.approx(expected, rel=0.10)


def test_load_at_sla_edge_cases():
    loads = np.array([1.0, 10.0, 20.0, 40.0])
    assert load_at_latency_sla(loads, 10 + 2 * (loads - 1), 100.0) == pytest.approx(46.0)
    assert load_at_latency_sla(loads, np.full(4, 50.0), 200.0) is None
    assert load_at_latency_sla(loads, np.full(4, 250.0), 200.0) == 1.0


def test_steps_from_series_groups_plateaus_and_drops_warmup():
    # Three steps of 4 samples; the first sample of each is a transient (warm-up).
    load = np.repeat([10.0, 20.0, 40.0], 4)
    throughput = np.array([50, 100, 102, 98, 150, 190, 200, 210, 300, 330, 320, 340], dtype=float)
    p95 = np.array([90, 20, 21, 80, 90, 30, 31, 32, 90, 60, 61, 99], dtype=float)
    ts = np.arange(12)
    shuffled = np.random.default_rng(0).permutation(12)
    steps = steps_from_series(ts[shuffled], load[shuffled], throughput[shuffled], p95[shuffled])
    np.testing.assert_array_equal(steps.load, [10, 20, 40])
    np.testing.assert_allclose(steps.throughput, [100, 200, 330])
    np.testing.assert_allclose(steps.p95, [21, 31, 61])
    np.testing.assert_array_equal(steps.samples, [3, 3, 3])


def test_stepped_test_end_to_end_recovers_peak():
    rng = np.random.default_rng(5)
    load = np.repeat(LOADS, 6)
    throughput = usl(load, LAMBDA, SIGMA, KAPPA) * (1 + rng.normal(0, 0.02, load.size))
    steps = steps_from_series(np.arange(load.size), load, throughput, np.ones(load.size))
    fit = fit_usl(steps.load, steps.throughput)
    assert fit.peak_load == pytest.approx(math.sqrt(0.95 / 0.001), rel=0.05)


# --- estimate_capacity: a peak only where it was tested, a bound otherwise -------------------

PEAK_LOAD = math.sqrt((1 - SIGMA) / KAPPA)  # 30.82
PEAK = usl(PEAK_LOAD, LAMBDA, SIGMA, KAPPA)  # 903.8


def stepped(top, seed, noise=0.03, levels=8, windows=4):
    """Windows of a stepped test up to ``top``, in time order, with relative noise."""
    rng = np.random.default_rng(seed)
    load = np.repeat(np.linspace(top / levels, top, levels), windows)
    return load, usl(load, LAMBDA, SIGMA, KAPPA) * (1 + rng.normal(0, noise, load.size))


@pytest.mark.parametrize("seed", range(3))
def test_peak_inside_the_tested_loads_is_a_point_estimate_with_intervals(seed):
    load, throughput = stepped(2 * PEAK_LOAD, seed, noise=0.01)
    result = estimate_capacity(load, throughput)
    assert result.status == "peak" and result.reason == ""
    assert result.peak_throughput == pytest.approx(PEAK, rel=0.02)
    assert result.peak_throughput_low <= PEAK <= result.peak_throughput_high
    assert result.peak_load == pytest.approx(PEAK_LOAD, rel=0.10)
    assert result.peak_load_low <= PEAK_LOAD <= result.peak_load_high
    assert result.load_min == load.min() and result.load_max == load.max()
    assert result.fit.model == "usl" and result.n_points == load.size
    assert "peak" in result.describe()


def test_tested_to_half_the_peak_gives_a_lower_bound_that_holds():
    for seed in range(20):
        load, throughput = stepped(PEAK_LOAD / 2, seed)
        result = estimate_capacity(load, throughput, replicates=20)
        assert result.status == "lower_bound", seed
        assert math.isnan(result.peak_throughput) and math.isnan(result.peak_load)
        assert result.peak_throughput_low <= PEAK, seed  # the bound holds
        # ... and is what the test showed: most of the best throughput tested.
        assert result.peak_throughput_low >= 0.85 * usl(load.max(), LAMBDA, SIGMA, KAPPA)
        assert result.peak_load_low == load.max()
        assert "at least" in result.describe() and result.reason


def test_the_bare_fit_extrapolates_beyond_the_tested_loads_and_the_estimate_does_not():
    # What the bound replaces: Amdahl's asymptote lambda / sigma of a system whose fall was
    # never tested, far above its true peak.
    load, throughput = stepped(PEAK_LOAD / 4, seed=0)
    assert fit_usl(load, throughput).max_throughput > 1.2 * PEAK
    assert estimate_capacity(load, throughput).peak_throughput_low < PEAK


def test_a_system_that_keeps_scaling_never_gets_a_peak():
    load, throughput = stepped(96, seed=4, noise=0.02)
    throughput = usl(load, LAMBDA, SIGMA, 0.0) * (throughput / usl(load, LAMBDA, SIGMA, KAPPA))
    result = estimate_capacity(load, throughput)
    assert result.status == "lower_bound" and result.fit.model == "amdahl"
    assert result.peak_throughput_low <= usl(96, LAMBDA, SIGMA, 0.0)
    assert "does not fall" in result.reason


def test_throughput_already_falling_at_the_lowest_load_bounds_the_peak_load_from_above():
    load, throughput = stepped(8 * PEAK_LOAD, seed=5, noise=0.01)
    keep = load >= 2 * PEAK_LOAD
    result = estimate_capacity(load[keep], throughput[keep])
    assert result.status == "lower_bound"
    assert result.peak_load_high == load[keep].min() and math.isnan(result.peak_load_low)
    assert result.peak_throughput_low <= PEAK
    assert "<=" in result.describe()


def test_constant_or_scarce_load_gives_no_fit_with_the_reason():
    rng = np.random.default_rng(6)
    load = 40 * (1 + rng.normal(0, 0.08, 30))  # one level, measured with noise
    result = estimate_capacity(load, usl(load, LAMBDA, SIGMA, KAPPA))
    assert result.status == "no_fit" and "constant load" in result.reason
    assert result.fit is None and result.reason in result.describe()
    few = estimate_capacity([1, 2, 4, 8], [10, 19, 35, 60])
    assert few.status == "no_fit" and "need 6" in few.reason
    assert estimate_capacity([], []).status == "no_fit"


def test_estimate_is_reproducible():
    load, throughput = stepped(2 * PEAK_LOAD, seed=7)
    assert estimate_capacity(load, throughput) == estimate_capacity(load, throughput)


# --- sla_crossing: interpolated between tested loads, never extrapolated ---------------------


def test_sla_crossing_interpolates_between_the_tested_loads():
    load = [10.0, 20.0, 30.0, 40.0]
    crossing = sla_crossing(load, [100.0, 200.0, 300.0, 400.0], 250.0)
    assert crossing.status == "crossed" and crossing.load == pytest.approx(25.0)
    assert (crossing.load_min, crossing.load_max) == (10.0, 40.0)


def test_sla_crossing_not_reached_or_already_above():
    load = [10.0, 20.0, 30.0, 40.0]
    below = sla_crossing(load, [100.0, 120.0, 150.0, 190.0], 200.0)
    assert below.status == "not_reached" and math.isnan(below.load) and below.load_max == 40
    above = sla_crossing(load, [210.0, 220.0, 300.0, 400.0], 200.0)
    assert above.status == "above_at_lowest_load" and math.isnan(above.load)


def test_sla_crossing_ignores_a_single_slow_window_and_order():
    # One slow window at 20 pools with its faster neighbours instead of crossing there.
    load = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    p95 = np.array([100.0, 260.0, 120.0, 150.0, 300.0, 400.0])
    order = np.random.default_rng(0).permutation(load.size)
    crossing = sla_crossing(load[order], p95[order], 250.0)
    assert crossing.status == "crossed" and 40.0 < crossing.load < 50.0
    with pytest.raises(ValueError, match="2 points"):
        sla_crossing([1.0], [1.0], 1.0)
