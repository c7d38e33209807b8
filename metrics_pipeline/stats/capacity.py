"""Peak capacity from a stepped or ramping load test: Universal Scalability Law and latency SLA.

A stepped test holds the load (concurrency: virtual users, threads, connections) constant for
a while at each of several levels. Per step it yields one load, one mean throughput and one
p95. :func:`steps_from_series` turns a test's interval time series into those steps,
:func:`fit_usl` fits Gunther's Universal Scalability Law to (load, throughput) and predicts the
maximum throughput and the load that reaches it, and :func:`load_at_latency_sla` finds the load
at which p95 breaks its SLA. For a continuous ramp, pass the interval samples directly.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

# Three parameters (lambda, sigma, kappa) need three distinct loads.
MIN_LOADS = 3
# Relative size below which a residual sum of squares (or a fitted rise in latency) is round-off:
# an exact fit to noise-free data, where the F test of kappa has no residual variance to use.
_EXACT_FIT = 1e-12


@dataclass(frozen=True)
class USLFit:
    r"""Universal Scalability Law fitted to (load, throughput).

    Attributes
    ----------
    lambda_ : float
        Throughput of one unit of load without contention (the ideal slope at :math:`N = 1`).
    sigma : float
        Contention (serial fraction), :math:`0 \le \sigma \le 1`.
    kappa : float
        Coherency (crosstalk) penalty, :math:`\kappa \ge 0`; exactly 0 when the data do not
        show it significantly (Amdahl's law).
    peak_load : float
        :math:`N^* = \sqrt{(1 - \sigma)/\kappa}`, the load of maximum throughput (at least 1);
        ``inf`` when :math:`\kappa = 0` (throughput never falls).
    max_throughput : float
        :math:`X(N^*)`; with :math:`\kappa = 0` the asymptote :math:`\lambda/\sigma`
        (``inf`` when :math:`\sigma = 0` too).
    r_squared : float
        :math:`1 - \mathrm{SSE}/\mathrm{SST}` of the fitted throughput.
    kappa_p_value : float
        p-value of the F test of :math:`\kappa = 0`; NaN when it cannot be tested (3 points).
    n_points : int
        (load, throughput) pairs used.
    """

    lambda_: float
    sigma: float
    kappa: float
    peak_load: float
    max_throughput: float
    r_squared: float
    kappa_p_value: float
    n_points: int

    def predict(self, load: ArrayLike) -> np.ndarray:
        """Throughput :math:`X(N)` predicted by the fitted law at each load."""
        return _usl(np.asarray(load, dtype=float), self.lambda_, self.sigma, self.kappa)


@dataclass(frozen=True, eq=False)
class LoadSteps:
    """Per-step summary of a stepped load test (sorted by time of the step).

    Attributes
    ----------
    load : numpy.ndarray
        The load held during each step.
    throughput : numpy.ndarray
        Mean throughput of the step's samples after warm-up.
    p95 : numpy.ndarray
        Median of the step's per-interval p95 after warm-up (robust to a single spike).
    samples : numpy.ndarray
        Samples used per step.
    """

    load: np.ndarray
    throughput: np.ndarray
    p95: np.ndarray
    samples: np.ndarray


def fit_usl(load: ArrayLike, throughput: ArrayLike, *, alpha: float = 0.05) -> USLFit:
    r"""Fit the Universal Scalability Law to the steps of a stepped load test.

    Parameters
    ----------
    load : array_like
        Load of each step, :math:`N > 0` (concurrency: virtual users, threads).
    throughput : array_like
        Mean throughput of each step (requests/s or any rate unit; the fit keeps the unit).
        Pairs with a missing or non-positive value are dropped.
    alpha : float
        Significance level of the F test that keeps :math:`\kappa`.

    Returns
    -------
    USLFit

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_LOADS` distinct loads.

    Notes
    -----
    Gunther's Universal Scalability Law:

    .. math:: X(N) = \frac{\lambda N}{1 + \sigma (N - 1) + \kappa N (N - 1)}

    fitted by least squares on :math:`X` (``scipy.optimize.curve_fit``, trust-region
    reflective, bounds :math:`\lambda > 0`, :math:`0 \le \sigma \le 1`,
    :math:`\kappa \ge 0`). Starting values come from the lowest step, assumed nearly free of
    contention: :math:`\lambda_0 = X(N_1)/N_1`; then :math:`\lambda_0 N / X(N) - 1 =
    \sigma (N - 1) + \kappa N (N - 1)` is linear in :math:`\sigma, \kappa` and solved by
    non-negative least squares.

    A small :math:`\kappa` fitted to noise would predict a finite peak that the system does not
    have, so Amdahl's law (:math:`\kappa = 0`) is also fitted and kept unless the full law
    reduces the residual sum of squares significantly (extra-sum-of-squares F test,
    :math:`F = (\mathrm{SSE}_0 - \mathrm{SSE}_1) / (\mathrm{SSE}_1 / (n - 3))` on 1 and
    :math:`n - 3` degrees of freedom, kept when :math:`p < \alpha`). With three points there
    are no residual degrees of freedom and the full law is kept.

    The peak is where :math:`dX/dN = 0`: :math:`N^* = \sqrt{(1 - \sigma)/\kappa}`.
    """
    n_load = np.asarray(load, dtype=float).ravel()
    x = np.asarray(throughput, dtype=float).ravel()
    if n_load.shape != x.shape:
        raise ValueError(f"load and throughput differ in length: {n_load.size} vs {x.size}")
    keep = np.isfinite(n_load) & np.isfinite(x) & (n_load > 0) & (x > 0)
    n_load, x = n_load[keep], x[keep]
    if np.unique(n_load).size < MIN_LOADS:
        raise ValueError(
            f"need at least {MIN_LOADS} distinct loads to fit the USL, got {np.unique(n_load).size}"
        )
    order = np.argsort(n_load, kind="stable")
    n_load, x = n_load[order], x[order]

    lambda0 = x[0] / n_load[0]
    design = np.column_stack([n_load - 1, n_load * (n_load - 1)])
    (sigma0, kappa0), _ = optimize.nnls(design, lambda0 * n_load / x - 1)
    sigma0 = min(sigma0, 0.99)  # strictly inside the bounds

    full = _least_squares(
        _usl,
        n_load,
        x,
        [lambda0, sigma0, kappa0],
        ([0.0, 0.0, 0.0], [np.inf, 1.0, np.inf]),
    )
    amdahl = _least_squares(
        lambda n, lam, sig: _usl(n, lam, sig, 0.0),
        n_load,
        x,
        [lambda0, sigma0],
        ([0.0, 0.0], [np.inf, 1.0]),
    )
    sse_full = float(np.sum((x - _usl(n_load, *full)) ** 2))
    sse_amdahl = float(np.sum((x - _usl(n_load, *amdahl, 0.0)) ** 2))
    sst = float(np.sum((x - x.mean()) ** 2))
    df_resid = x.size - 3
    exact = _EXACT_FIT * float(np.sum(x**2))
    if df_resid == 0:
        p_value, keep_kappa = math.nan, True
    elif sse_full <= exact:
        p_value = 0.0 if sse_amdahl > exact else 1.0
        keep_kappa = p_value < alpha
    else:
        f_stat = max(sse_amdahl - sse_full, 0.0) / (sse_full / df_resid)
        p_value = float(stats.f.sf(f_stat, 1, df_resid))
        keep_kappa = p_value < alpha

    lam, sig, kap = full if keep_kappa else (*amdahl, 0.0)
    sse = sse_full if keep_kappa else sse_amdahl
    if kap > 0:
        peak = max(1.0, math.sqrt(max(1.0 - sig, 0.0) / kap))
        max_x = float(_usl(np.float64(peak), lam, sig, kap))
    else:
        peak = math.inf
        max_x = lam / sig if sig > 0 else math.inf
    return USLFit(
        lambda_=float(lam),
        sigma=float(sig),
        kappa=float(kap),
        peak_load=peak,
        max_throughput=max_x,
        r_squared=1.0 - sse / sst if sst > 0 else math.nan,
        kappa_p_value=p_value,
        n_points=int(x.size),
    )


def load_at_latency_sla(load: ArrayLike, p95_ms: ArrayLike, sla_ms: float) -> float | None:
    r"""Load at which p95 latency reaches its SLA, from a fitted latency-versus-load curve.

    Parameters
    ----------
    load : array_like
        Load of each step (concurrency, :math:`N \ge 1`).
    p95_ms : array_like
        p95 latency of each step. Pairs with a missing value are dropped.
    sla_ms : float
        The p95 SLA, same unit as ``p95_ms``.

    Returns
    -------
    float or None
        The smallest load :math:`N \ge 1` where the fitted p95 reaches ``sla_ms``: interpolated
        within the tested loads, extrapolated beyond them (compare with ``max(load)`` before
        trusting a value far outside). ``None`` when the fitted p95 never reaches it (no growth
        with load).

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_LOADS` distinct loads.

    Notes
    -----
    In a closed load test (a fixed number of users, as with k6 VUs, Locust users or JMeter
    threads) Little's law gives the mean response time :math:`R(N) = N / X(N) - Z` (:math:`Z`
    the think time), and with the USL for :math:`X(N)`:

    .. math:: R(N) = \frac{1 + \sigma (N - 1) + \kappa N (N - 1)}{\lambda} - Z

    Assuming p95 is proportional to the mean (a latency distribution whose shape does not
    change with load), p95 has the same form,

    .. math:: p_{95}(N) = a + b (N - 1) + c N (N - 1), \quad a, b, c \ge 0,

    fitted by non-negative least squares (``scipy.optimize.nnls``), which is non-decreasing
    for :math:`N \ge 1` and needs no throughput. The crossing solves
    :math:`c N^2 + (b - c) N + a - b - \mathrm{SLA} = 0`. For open tests driven by an arrival
    rate, latency grows like :math:`1/(1 - \rho)` near saturation and this quadratic places
    the crossing too late: test capacity with a closed (stepped-users) test.
    """
    n_load = np.asarray(load, dtype=float).ravel()
    y = np.asarray(p95_ms, dtype=float).ravel()
    if n_load.shape != y.shape:
        raise ValueError(f"load and p95_ms differ in length: {n_load.size} vs {y.size}")
    keep = np.isfinite(n_load) & np.isfinite(y)
    n_load, y = n_load[keep], y[keep]
    if np.unique(n_load).size < MIN_LOADS:
        raise ValueError(
            f"need at least {MIN_LOADS} distinct loads to fit latency against load, "
            f"got {np.unique(n_load).size}"
        )
    design = np.column_stack([np.ones_like(n_load), n_load - 1, n_load * (n_load - 1)])
    (a, b, c), _ = optimize.nnls(design, y)
    if a >= sla_ms:
        return 1.0
    top = n_load.max()
    if b * (top - 1) + c * top * (top - 1) <= _EXACT_FIT * np.abs(y).max():
        return None  # flat: the solver's round-off in b, c is no growth
    # Solve c N^2 + p N + q = 0 for the root above 1 (the left side is a - SLA < 0 at N = 1).
    # Each form avoids subtracting nearly equal numbers; the first also covers c = 0.
    p, q = b - c, a - b - sla_ms
    root = math.sqrt(p * p - 4 * c * q)
    return float(2 * q / (-p - root)) if p > 0 else float((-p + root) / (2 * c))


def steps_from_series(
    ts: ArrayLike,
    load: ArrayLike,
    throughput: ArrayLike,
    p95: ArrayLike,
    *,
    warmup: int = 1,
) -> LoadSteps:
    """Group a stepped load test's interval samples into steps of constant load.

    Parameters
    ----------
    ts : array_like
        Time of each sample (anything numpy can sort: datetime64, epoch seconds).
    load, throughput, p95 : array_like
        Load, throughput and p95 of each sample (e.g. from ``interval_stats``).
    warmup : int
        Samples dropped at the start of each step, where the system is still adjusting to the
        new load; a step keeps at least its last sample.

    Returns
    -------
    LoadSteps
        One entry per run of consecutive samples with the same load, in time order. A load
        visited twice (a step down and back up) gives two steps; :func:`fit_usl` accepts that.
    """
    t = np.asarray(ts)
    arrays = [np.asarray(a, dtype=float).ravel() for a in (load, throughput, p95)]
    if any(a.size != t.size for a in arrays):
        raise ValueError("ts, load, throughput and p95 must have the same length")
    order = np.argsort(t, kind="stable")
    n_load, x, y = (a[order] for a in arrays)
    starts = np.flatnonzero(np.r_[True, n_load[1:] != n_load[:-1]])
    ends = np.r_[starts[1:], n_load.size]
    steps = []
    for start, end in zip(starts, ends, strict=True):
        first = min(start + warmup, end - 1)
        steps.append(
            (n_load[start], np.nanmean(x[first:end]), np.nanmedian(y[first:end]), end - first)
        )
    load_s, x_s, y_s, samples = (np.array(column) for column in zip(*steps, strict=True))
    return LoadSteps(load=load_s, throughput=x_s, p95=y_s, samples=samples.astype(int))


def _usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def _least_squares(model, n_load, x, p0, bounds) -> tuple[float, ...]:
    """curve_fit with parameters scaled by the Jacobian (kappa is orders below lambda)."""
    with warnings.catch_warnings():
        # Only the estimates are used; the covariance of an exact fit is undefined.
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, _ = optimize.curve_fit(model, n_load, x, p0=p0, bounds=bounds, x_scale="jac")
    return tuple(float(p) for p in params)
