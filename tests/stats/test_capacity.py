"""Tests of metrics_pipeline.stats.capacity against hand-computed and published reference values."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from metrics_pipeline.stats.capacity import fit_usl, load_at_latency_sla, steps_from_series

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
