"""Peak capacity from a stepped or ramping load test: Universal Scalability Law and latency SLA.

A stepped test holds the load (concurrency: virtual users, threads, connections) constant for
a while at each of several levels; a ramp changes it continuously. Either yields (load,
throughput, p95) points, one per step or per time window. :func:`steps_from_series` turns a
test's interval time series into steps, :func:`fit_usl` fits Gunther's Universal Scalability
Law to (load, throughput), :func:`estimate_capacity` turns the fit into a peak with a bootstrap
interval, or into a lower bound when the tested loads stop short of the peak, and
:func:`sla_crossing` finds the tested load at which p95 crosses its SLA
(:func:`load_at_latency_sla` extrapolates the same with a fitted curve).
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
# A capacity estimate needs a few residual degrees of freedom beyond the three parameters, and
# enough points that a bootstrap resample rarely loses a whole load level.
MIN_POINTS = 6
# A stepped or ramping test changes its load by at least this factor between the 10th and the
# 90th percentile of its points (after a running median over SMOOTHING points, in time order).
# The measured concurrency of a constant-load run varies from window to window, by up to a
# third in short windows of a few dozen requests; a USL fitted to that noise is meaningless.
MIN_LOAD_RANGE = 1.5
SMOOTHING = 5
CONFIDENCE = 0.95
BOOTSTRAP_REPLICATES = 200
# About this many blocks of consecutive points for the lower bound: more blocks follow a ramp
# more closely, fewer average more points each and pay less for picking the best.
BOUND_BLOCKS = 10
# Capacity.status: a point estimate, a lower bound, or nothing (with the reason).
PEAK, LOWER_BOUND, NO_FIT = "peak", "lower_bound", "no_fit"
# SlaCrossing.status.
CROSSED, NOT_REACHED, ABOVE_AT_LOWEST = "crossed", "not_reached", "above_at_lowest_load"


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
        (``inf`` when :math:`\sigma = 0` too). When :math:`N^*` lies beyond the fitted loads
        this is an extrapolation, often far above the true peak (Amdahl's asymptote of a
        system whose fall was not tested): :func:`estimate_capacity` reports a bound instead.
    r_squared : float
        :math:`1 - \mathrm{SSE}/\mathrm{SST}` of the fitted throughput.
    kappa_p_value : float
        p-value of the F test of :math:`\kappa = 0`; NaN when it cannot be tested (3 points).
    n_points : int
        (load, throughput) pairs used.
    model : str
        ``"usl"`` (kappa kept) or ``"amdahl"`` (kappa fixed at 0 by the F test).
    """

    lambda_: float
    sigma: float
    kappa: float
    peak_load: float
    max_throughput: float
    r_squared: float
    kappa_p_value: float
    n_points: int
    model: str = "usl"

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
        model="usl" if keep_kappa else "amdahl",
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
    n_load, y = _finite_pairs(load, p95_ms, "p95_ms")
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


@dataclass(frozen=True)
class Capacity:
    """The peak throughput of a load test and the load that reaches it, or why there is none.

    Attributes
    ----------
    status : str
        ``"peak"``: the fitted peak lies within the tested loads; ``peak_throughput`` and
        ``peak_load`` are point estimates inside their intervals. ``"lower_bound"``: it does
        not (throughput still rising, or not falling significantly, at the highest tested
        load; or already falling at the lowest): the peak throughput is at least
        ``peak_throughput_low``, reached at a load of at least ``peak_load_low`` (or at most
        ``peak_load_high`` when the peak lies below the tested loads), and the point
        estimates are NaN. ``"no_fit"``: no estimate; ``reason`` says why.
    reason : str
        Why there is a bound or no fit; empty for a peak.
    fit : USLFit or None
        The law fitted to all points (None without a fit).
    load_min, load_max : float
        The tested range: lowest and highest load of the points (NaN without points).
    n_points : int
        (load, throughput) points used.
    peak_throughput, peak_throughput_low, peak_throughput_high : float
        Peak throughput and its interval; NaN where unknown, ``inf`` for an upper limit the
        data do not bound.
    peak_load, peak_load_low, peak_load_high : float
        Load at the peak and its interval, likewise.
    confidence : float
        Coverage the intervals and the bound aim at.
    """

    status: str
    reason: str
    fit: USLFit | None
    load_min: float
    load_max: float
    n_points: int
    peak_throughput: float = math.nan
    peak_throughput_low: float = math.nan
    peak_throughput_high: float = math.nan
    peak_load: float = math.nan
    peak_load_low: float = math.nan
    peak_load_high: float = math.nan
    confidence: float = CONFIDENCE

    def describe(self, rate_unit: str = "req/s", load_unit: str = "concurrent requests") -> str:
        """One sentence for a report: the peak with its interval, the bound, or the reason."""
        level = f"{self.confidence:.0%}"
        if self.status == PEAK:
            return (
                f"peak {self.peak_throughput:,.4g} {rate_unit} ({level} interval "
                f"{self.peak_throughput_low:,.4g}-{self.peak_throughput_high:,.4g}) at "
                f"{self.peak_load:,.3g} {load_unit} ({self.peak_load_low:,.3g}-"
                f"{self.peak_load_high:,.3g}), tested {self.load_min:,.3g}-{self.load_max:,.3g}"
            )
        if self.status == LOWER_BOUND:
            where = (
                f"at >= {self.peak_load_low:,.3g} {load_unit}"
                if math.isfinite(self.peak_load_low)
                else f"at <= {self.peak_load_high:,.3g} {load_unit}"
            )
            return f"at least {self.peak_throughput_low:,.4g} {rate_unit} {where}: {self.reason}"
        return f"no capacity fit: {self.reason}"


def estimate_capacity(
    load: ArrayLike,
    throughput: ArrayLike,
    *,
    confidence: float = CONFIDENCE,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
    alpha: float = 0.05,
) -> Capacity:
    r"""Peak throughput and the load at the peak from (load, throughput) points, with intervals.

    Parameters
    ----------
    load : array_like
        Load of each point, :math:`N > 0`: per time window of a ramp, or per step; in time
        order (the bound averages consecutive points).
    throughput : array_like
        Throughput of each point. Pairs with a missing or non-positive value are dropped.
    confidence : float
        Coverage of the intervals; the bound holds with at least this probability.
    replicates : int
        Bootstrap replicates.
    seed : int
        Seed of the bootstrap (the same points always give the same result).
    alpha : float
        Level of the F test that keeps :math:`\kappa` (:func:`fit_usl`).

    Returns
    -------
    Capacity
        ``no_fit`` with the reason when there are fewer than :data:`MIN_POINTS` points, when
        the load does not vary by :data:`MIN_LOAD_RANGE` (10th to 90th percentile of its
        running median over :data:`SMOOTHING` points: a constant-load run), or when the law
        cannot be fitted.

    Notes
    -----
    :func:`fit_usl` fits

    .. math:: X(N) = \frac{\lambda N}{1 + \sigma (N - 1) + \kappa N (N - 1)}

    with :math:`\lambda > 0`, :math:`0 \le \sigma \le 1`, :math:`\kappa \ge 0`, and keeps
    :math:`\kappa` only when the F test against Amdahl's law (:math:`\kappa = 0`) finds it
    significant. The peak is at :math:`N^* = \sqrt{(1 - \sigma)/\kappa}`.

    A peak is reported as a number only when the full law was kept and
    :math:`N_{min} \le N^* \le N_{max}`, the tested range: then the fall after the peak (or
    its flat top) was observed. Otherwise the peak was not observed: the data cannot tell a
    system about to saturate from one that keeps scaling, and the value of the fitted curve at
    :math:`N^*` (or Amdahl's asymptote :math:`\lambda/\sigma`) is an extrapolation that can lie
    far above the truth. Then only what was tested is reported: the throughput the system
    sustained, a lower bound of its peak, at a load of at least :math:`N_{max}` (or at most
    :math:`N_{min}` when the fitted curve is already falling there).

    The bound needs no model, only that the peak throughput is at least the true throughput
    of any stretch of the test. The points are cut, in time order, into :math:`G` blocks of
    :math:`k` consecutive points (about :data:`BOUND_BLOCKS` blocks); the bound is the best
    lower confidence limit of a block's mean throughput :math:`\bar X_g`,

    .. math:: X_{lb} = \max_g \bar X_g \left(1 - t_{1 - a/G,\, n - p}\,
              \frac{s}{\sqrt{k_g}}\right), \quad a = (1 - c)/2,

    with :math:`s` the relative residual standard deviation of the fit
    (:math:`\hat X` the fitted curve, :math:`p` its parameters),
    :math:`s^2 = \sum_i (X_i/\hat X(N_i) - 1)^2 / (n - p)`, and the Bonferroni factor
    :math:`G` for picking the best block. Blocks follow time, not the measured load: when the
    load is measured from the same requests as the throughput (Little's law), a window with
    more requests than its true rate also shows a higher load, so the points at the highest
    measured loads (and a curve fitted to them) overstate the throughput there; a block's
    mean, chosen by position, does not.

    The peak's intervals are percentile intervals of a pairs bootstrap (points resampled
    with replacement, the full law refitted to each resample), widened to contain the point
    estimate when the bootstrap distribution is skewed away from it.
    """
    n_load, x = _positive_pairs(load, throughput)
    if x.size == 0:
        return Capacity(NO_FIT, "no window with load and throughput", None, math.nan, math.nan, 0)
    load_min, load_max = float(n_load.min()), float(n_load.max())
    base = {"fit": None, "load_min": load_min, "load_max": load_max, "n_points": int(x.size)}
    if x.size < MIN_POINTS:
        return Capacity(
            NO_FIT, f"{x.size} points with load and throughput, need {MIN_POINTS}", **base
        )
    # A step or a ramp lasts several points; the noise of a measured load does not: the
    # running median keeps the one and removes most of the other.
    padded = np.pad(n_load, SMOOTHING // 2, mode="edge")
    smoothed = np.median(np.lib.stride_tricks.sliding_window_view(padded, SMOOTHING), axis=1)
    low, high = np.quantile(smoothed, [0.1, 0.9])
    if high < MIN_LOAD_RANGE * low:
        return Capacity(
            NO_FIT,
            f"constant load: it varies x{high / low:.2f} between the 10th and 90th percentile "
            f"of {x.size} points (running median of {SMOOTHING}; a stepped or ramping test "
            f"varies it at least x{MIN_LOAD_RANGE:g})",
            **base,
        )
    try:
        fit = fit_usl(n_load, x, alpha=alpha)
    except (ValueError, RuntimeError) as exc:  # too few distinct loads; no convergence
        return Capacity(NO_FIT, f"the law could not be fitted: {exc}", **base)
    base["fit"] = fit
    base["confidence"] = confidence
    tail = (1.0 - confidence) / 2
    if fit.model == "usl" and load_min <= fit.peak_load <= load_max:
        lam, sig, kap = _bootstrap(n_load, x, fit, replicates, np.random.default_rng(seed)).T
        peak_b = np.full(lam.shape, math.inf)
        np.divide(np.sqrt(np.clip(1.0 - sig, 0.0, None)), np.sqrt(kap), out=peak_b, where=kap > 0)
        peak_x_b = np.where(
            np.isfinite(peak_b),
            _usl(np.where(np.isfinite(peak_b), peak_b, 1.0), lam, sig, kap),
            np.divide(lam, sig, out=np.full(lam.shape, math.inf), where=sig > 0),
        )
        x_low, x_high = _interval(peak_x_b, fit.max_throughput, tail)
        n_low, n_high = _interval(peak_b, fit.peak_load, tail)
        return Capacity(
            PEAK,
            "",
            peak_throughput=fit.max_throughput,
            peak_throughput_low=x_low,
            peak_throughput_high=x_high,
            peak_load=fit.peak_load,
            peak_load_low=n_low,
            peak_load_high=n_high,
            **base,
        )
    bound = _sustained(x, fit.predict(n_load), 3 if fit.model == "usl" else 2, tail)
    if fit.model == "usl" and fit.peak_load < load_min:
        reason = "throughput already falls at the lowest tested load: the peak lies below it"
        return Capacity(
            LOWER_BOUND, reason, peak_throughput_low=bound, peak_load_high=load_min, **base
        )
    reason = (
        "the peak lies beyond the tested loads: the fitted peak is at "
        f"{fit.peak_load:,.3g}, above the highest tested load"
        if fit.model == "usl"
        else "throughput does not fall significantly up to the highest tested load "
        f"(kappa F-test p = {fit.kappa_p_value:.2g}): the peak lies at or beyond it"
    )
    return Capacity(LOWER_BOUND, reason, peak_throughput_low=bound, peak_load_low=load_max, **base)


@dataclass(frozen=True)
class SlaCrossing:
    """Where a latency reached its SLA along the tested loads.

    Attributes
    ----------
    status : str
        ``"crossed"``: between two tested loads, at ``load``; ``"not_reached"``: never up to
        ``load_max``; ``"above_at_lowest_load"``: already above it at ``load_min``.
    load : float
        The load at the crossing, interpolated; NaN unless crossed.
    load_min, load_max : float
        The tested range.
    """

    status: str
    load: float
    load_min: float
    load_max: float


def sla_crossing(load: ArrayLike, latency: ArrayLike, limit: float) -> SlaCrossing:
    r"""The load at which a latency (p95) crosses its SLA, interpolated between tested loads.

    Parameters
    ----------
    load : array_like
        Load of each point (time window or step).
    latency : array_like
        The latency (e.g. p95) of each point; pairs with a missing value are dropped.
    limit : float
        The SLA, same unit as ``latency``.

    Returns
    -------
    SlaCrossing

    Raises
    ------
    ValueError
        Fewer than two points.

    Notes
    -----
    Latency does not fall when the load grows (by Little's law the mean response time at
    concurrency :math:`N` is :math:`R(N) = N / X(N)`, non-decreasing whenever throughput grows
    less than proportionally, as the USL says it does), so the points' latencies are first
    made monotone in load by isotonic regression (``scipy.optimize.isotonic_regression``,
    pool adjacent violators): a single slow window pools with its neighbours instead of
    placing the crossing at a load where the rest are fast. The crossing is the first point
    whose fitted latency :math:`\hat y_i` exceeds the limit :math:`L`, interpolated linearly
    from the point before it:

    .. math:: N_L = N_{i-1} + (L - \hat y_{i-1}) \frac{N_i - N_{i-1}}{\hat y_i - \hat y_{i-1}}

    Nothing is extrapolated: beyond the tested loads the answer is "not reached up to
    :math:`N_{max}`" (:func:`load_at_latency_sla` extrapolates with a fitted curve).
    """
    n_load, y = _finite_pairs(load, latency, "latency")
    if n_load.size < 2:
        raise ValueError(f"need at least 2 points to place an SLA crossing, got {n_load.size}")
    order = np.argsort(n_load, kind="stable")
    n_load = n_load[order]
    fitted = optimize.isotonic_regression(y[order]).x
    low, high = float(n_load[0]), float(n_load[-1])
    above = np.flatnonzero(fitted > limit)
    if above.size == 0:
        return SlaCrossing(NOT_REACHED, math.nan, low, high)
    i = int(above[0])
    if i == 0:
        return SlaCrossing(ABOVE_AT_LOWEST, math.nan, low, high)
    n0, n1, y0, y1 = n_load[i - 1], n_load[i], fitted[i - 1], fitted[i]
    return SlaCrossing(CROSSED, float(n0 + (limit - y0) * (n1 - n0) / (y1 - y0)), low, high)


def _positive_pairs(load: ArrayLike, throughput: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    n_load = np.asarray(load, dtype=float).ravel()
    x = np.asarray(throughput, dtype=float).ravel()
    if n_load.shape != x.shape:
        raise ValueError(f"load and throughput differ in length: {n_load.size} vs {x.size}")
    keep = np.isfinite(n_load) & np.isfinite(x) & (n_load > 0) & (x > 0)
    return n_load[keep], x[keep]


def _params(fit: USLFit) -> tuple[float, float, float]:
    return fit.lambda_, fit.sigma, fit.kappa


def _sustained(x: np.ndarray, fitted: np.ndarray, parameters: int, tail: float) -> float:
    """The best lower confidence limit of the mean throughput of consecutive points (see
    :func:`estimate_capacity`)."""
    size = max(1, x.size // BOUND_BLOCKS)
    starts = np.arange(0, x.size - size + 1, size)
    # The remainder joins the last block rather than forming a short, noisy one.
    blocks = np.split(x, starts[1:])
    relative = x / fitted - 1.0
    spread = math.sqrt(float(np.sum(relative**2)) / max(x.size - parameters, 1))
    t = float(stats.t.ppf(1.0 - tail / len(blocks), max(x.size - parameters, 1)))
    limits = [float(np.mean(b)) * (1.0 - t * spread / math.sqrt(b.size)) for b in blocks]
    return max(max(limits), 0.0)


def _bootstrap(
    n_load: np.ndarray, x: np.ndarray, fit: USLFit, replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """(lambda, sigma, kappa) of the full law refitted to pairs resampled with replacement,
    one row per replicate; the point fit is the last row, so there is always one."""
    start = [fit.lambda_, min(fit.sigma, 0.99), fit.kappa]
    rows = []
    for _ in range(replicates):
        pick = rng.integers(0, x.size, x.size)
        n_b, x_b = n_load[pick], x[pick]
        if np.unique(n_b).size < MIN_LOADS:
            continue  # a resample that lost all but two loads fits any curve
        try:
            rows.append(_least_squares(_usl, n_b, x_b, start, ([0, 0, 0], [np.inf, 1, np.inf])))
        except RuntimeError:  # no convergence on a degenerate resample
            continue
    rows.append(_params(fit))
    return np.array(rows, dtype=float)


def _interval(values: np.ndarray, estimate: float, tail: float) -> tuple[float, float]:
    """Percentile interval (sample quantiles, so an infinite upper tail stays ``inf``),
    widened to contain ``estimate``."""
    low, high = np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf")
    return min(float(low), estimate), max(float(high), estimate)


def _usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def _least_squares(model, n_load, x, p0, bounds) -> tuple[float, ...]:
    """curve_fit with parameters scaled by the Jacobian (kappa is orders below lambda)."""
    with warnings.catch_warnings():
        # Only the estimates are used; the covariance of an exact fit is undefined.
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, _ = optimize.curve_fit(model, n_load, x, p0=p0, bounds=bounds, x_scale="jac")
    return tuple(float(p) for p in params)


def _finite_pairs(load: ArrayLike, values: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``load`` and ``values`` as float arrays of equal length, pairs with a NaN left out."""
    n_load = np.asarray(load, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if n_load.shape != y.shape:
        raise ValueError(f"load and {name} differ in length: {n_load.size} vs {y.size}")
    keep = np.isfinite(n_load) & np.isfinite(y)
    return n_load[keep], y[keep]
