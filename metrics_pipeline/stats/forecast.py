"""Forecasts of daily (or per-run) metric series with prediction intervals, and time to a limit.

The weekly stage forecasts throughput, latency and resource usage 30 steps ahead (the
performance horizon) and 90 steps ahead (the capacity horizon), and reports when a metric is
expected to cross its capacity limit (CPU 80 %, p95 at its SLA, ...).

A series is one value per step: a daily aggregate (pass ``timestamps`` so that missing days are
placed correctly) or one value per run (omit ``timestamps``: a step is then one run). The models
are trend models (a fixed trend with autocorrelated noise, random walks with drift, a local
linear trend), each also with a weekly pattern (period :data:`PERIOD` steps: the week when a
step is a day). They are averaged with weights from their fit (see :func:`forecast`), so a
pattern the history does not support, or a per-run series, gets (almost) no weekly model.
"""

import math
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

PERFORMANCE_HORIZON = 30
CAPACITY_HORIZON = 90
# The state-space models estimate 1-3 variance/AR parameters and 2 diffuse states; below this
# many points the estimates (and the weights that compare models) are noise, and a straight line
# is safer.
MIN_MODEL_POINTS = 10
# A straight line needs two points and one more for the residual variance of its interval.
MIN_POINTS = 3
# Weekly pattern: period in steps, and the observed values needed before it is tried (its 6
# weekday effects are diffuse states: three weeks leave two weeks of one-step errors to judge it).
PERIOD = 7
MIN_SEASONAL_POINTS = 3 * PERIOD
# Draws of the estimated variance/AR parameters that carry their uncertainty into the interval,
# besides the estimate itself (antithetic pairs; a fixed set, so that a forecast is
# reproducible). On bench/forecast_coverage.py's development series 32 draws raised coverage by
# 0.1-0.2 points only, at 1.5 times the cost.
PARAMETER_DRAWS = 16
# Models whose Akaike weight is below this are left out of the average: they would change a
# quantile by less than this share of probability, and their draws cost time.
MIN_WEIGHT = 1e-3

# The non-seasonal models (statsmodels UnobservedComponents specifications); each also exists
# with a fixed weekly pattern, as "<name>_weekly".
_TRENDS: dict[str, dict[str, Any]] = {
    "trend_ar1": {
        "level": True,
        "trend": True,
        "stochastic_level": False,
        "stochastic_trend": False,
        "irregular": False,
        "autoregressive": 1,
    },
    "rw_drift": {
        "level": True,
        "trend": True,
        "stochastic_level": True,
        "stochastic_trend": False,
        "irregular": False,
    },
    "level_drift": {
        "level": True,
        "trend": True,
        "stochastic_level": True,
        "stochastic_trend": False,
        "irregular": True,
    },
    "local_trend": {
        "level": True,
        "trend": True,
        "stochastic_level": True,
        "stochastic_trend": True,
        "irregular": True,
    },
}
_WEEKLY = "_weekly"
_DESCRIPTIONS = {
    "trend_ar1": "linear trend + AR(1) noise",
    "rw_drift": "random walk with drift",
    "level_drift": "random walk with drift + noise (local level with drift; ARIMA(0,1,1) + drift)",
    "local_trend": "local linear trend: level and slope both random walks, + noise (ETS(A,A,N))",
}
# Models averaged by method="auto" (see forecast, Notes).
MODELS = {
    **_DESCRIPTIONS,
    **{
        name + _WEEKLY: f"{text}, with a fixed weekly pattern (period {PERIOD})"
        for name, text in _DESCRIPTIONS.items()
    },
}
METHODS = ("auto", *MODELS, "linear")


@dataclass(frozen=True, eq=False)
class Forecast:
    r"""Point forecasts and prediction intervals for the steps after the end of a series.

    Attributes
    ----------
    mean, lower, upper : numpy.ndarray
        Mean of the predictive distribution and prediction interval bounds (its
        :math:`(1 \mp level)/2` quantiles), one value per step ``1..horizon`` after the end of
        the input series (``mean[0]`` is the next step).
    std : numpy.ndarray
        Standard deviation of the predictive distribution of each step, counting each Student
        t component by its scale (for ``"linear"``: the standard error of the prediction).
    df : float
        Degrees of freedom of the Student t components of ``method``'s predictive
        distribution: :math:`N - k` for a state-space model (see :func:`forecast`, Notes; the
        distribution is a mixture of such components), :math:`n - 2` for the linear trend.
    method : str
        The model with the largest weight: a key of :data:`MODELS`, or ``"linear"``.
    aicc : float
        Selection criterion of ``method`` (see :func:`forecast`, Notes); lower is better.
        For ``"linear"`` the AICc of its OLS residuals (NaN below 5 points).
    candidates : dict[str, float]
        ``aicc`` of every model fitted (one entry unless ``method="auto"``).
    level : float
        Coverage of the prediction interval.
    n_obs : int
        Observed (non-missing) values the model was fitted on.
    timestamps : numpy.ndarray or None
        ``datetime64[us]`` of each forecast step when ``timestamps`` were given.
    notes : tuple[str, ...]
        What was done to the input (missing values, fallbacks), for reports.
    weights : dict[str, float]
        Weight of each model of ``candidates`` in the predictive distribution (they sum to 1;
        models below :data:`MIN_WEIGHT` get 0).
    """

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    std: np.ndarray
    df: float
    method: str
    aicc: float
    candidates: dict[str, float]
    level: float
    n_obs: int
    timestamps: np.ndarray | None = None
    notes: tuple[str, ...] = field(default=())
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TimeToLimit:
    r"""When a forecast metric crosses its capacity limit.

    Steps are counted from the end of the input series (1.0 = the next step) and are fractional:
    the forecast is interpolated linearly between steps. ``None``: not within the horizon.

    Attributes
    ----------
    limit : float
        The capacity limit.
    steps : float or None
        Crossing of the point forecast (``0.0``: the last observed value is already past it).
    steps_earliest : float or None
        Crossing of the interval bound on the bad side (the upper bound when higher is worse):
        the pessimistic estimate.
    steps_latest : float or None
        Crossing of the bound on the good side: by then the crossing is nearly certain.
    crossing_probability : float
        :math:`\max_h P(Y_{n+h} \text{ past the limit})` under the predictive distribution:
        the probability for the riskiest single step, a lower bound of the probability of
        crossing at least once within the horizon.
    horizon : int
        Steps looked ahead.
    forecast : Forecast
        The forecast the crossings were read from.
    """

    limit: float
    steps: float | None
    steps_earliest: float | None
    steps_latest: float | None
    crossing_probability: float
    horizon: int
    forecast: Forecast


class _Series(NamedTuple):
    """A series on a regular grid of steps, ready to fit."""

    values: np.ndarray  # from the first observed value to the end of the input, missing = NaN
    positions: np.ndarray  # grid positions of the observed values (0 = the first one)
    observed: np.ndarray  # the observed values at those positions
    offset: int  # trailing missing steps: the last observed value is this many steps from the end
    end: np.datetime64 | None  # timestamp of the input's last grid step, when timestamps given
    step: np.timedelta64 | None  # grid spacing, when timestamps given
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Mixture:
    r"""Predictive distribution of each forecast step: :math:`\sum_c w_c\, T_{\nu_c}((x -
    \mu_{ch}) / \sigma_{ch})` with :math:`T_\nu` the Student t distribution function
    (:math:`\nu = \infty`: normal); a component with :math:`\sigma = 0` is a point mass."""

    weights: np.ndarray  # (components,), summing to 1
    means: np.ndarray  # (components, steps)
    stds: np.ndarray  # (components, steps)
    dfs: np.ndarray  # (components,)

    def probability_below(self, x: np.ndarray, *, strict: bool = False) -> np.ndarray:
        """P(Y_h < x_h) if ``strict`` else P(Y_h <= x_h), for every step h."""
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x - self.means) / self.stds
        cdf = special.stdtr(self.dfs[:, None], z)  # df = inf: the normal distribution
        point = (x > self.means) if strict else (x >= self.means)
        return self.weights @ np.where(self.stds > 0, cdf, point)

    def density(self, x: np.ndarray) -> np.ndarray:
        """Density at ``x_h`` for every step h (point masses left out)."""
        nu = self.dfs[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x - self.means) / self.stds
            finite = np.exp(
                special.gammaln((nu + 1) / 2)
                - special.gammaln(nu / 2)
                - 0.5 * np.log(nu * math.pi)
                - (nu + 1) / 2 * np.log1p(z**2 / nu)
            )
            standard = np.where(np.isinf(nu), np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi), finite)
            return self.weights @ np.where(self.stds > 0, standard / self.stds, 0.0)

    def quantile(self, p: float) -> np.ndarray:
        """The ``p`` quantile of every step: Newton's method on the distribution function,
        kept inside a shrinking bracket (bisection when a Newton step leaves it)."""
        each = self.means + self.stds * special.stdtrit(self.dfs, p)[:, None]
        if self.weights.size == 1:
            return each[0]
        # The mixture's quantile lies between the smallest and the largest of its components'
        # quantiles (its distribution function is <= p at the one, >= p at the other).
        low, high = np.min(each, axis=0), np.max(each, axis=0)
        x = self.weights @ each
        tolerance = 1e-10 * (self.weights @ self.stds)
        for _ in range(100):
            excess = self.probability_below(x) - p
            low, high = np.where(excess < 0, x, low), np.where(excess < 0, high, x)
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = x - excess / self.density(x)
            inside = np.isfinite(newton) & (newton > low) & (newton < high)
            step = np.where(inside, newton, (low + high) / 2) - x
            x = x + step
            if np.all(np.abs(step) <= tolerance):
                break
        return x

    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    def std(self) -> np.ndarray:
        """Standard deviation of the mixture, taking each component's scale as its standard
        deviation (for Student t components, the convention of ``Forecast.std``)."""
        second = self.weights @ (self.stds**2 + self.means**2)
        return np.sqrt(np.maximum(second - self.mean() ** 2, 0.0))


def forecast(
    values: ArrayLike,
    horizon: int = PERFORMANCE_HORIZON,
    *,
    timestamps: ArrayLike | None = None,
    method: str = "auto",
    level: float = 0.95,
) -> Forecast:
    r"""Forecast a metric series ``horizon`` steps ahead with prediction intervals.

    Parameters
    ----------
    values : array_like
        One value per step (daily aggregate or per-run value), oldest first. NaN, null and
        infinite values are missing values.
    horizon : int
        Steps to forecast after the end of ``values``.
    timestamps : array_like of datetime64, optional
        Time of each value (numpy ``datetime64``, polars Date/Datetime). The values are sorted
        and placed on a grid whose step is the median spacing (one day for daily aggregates);
        grid steps without a value are missing, values sharing a step are averaged, and the
        forecast steps continue the grid (``Forecast.timestamps``).
    method : str
        ``"auto"``: the average of every model of :data:`MODELS` (the weekly ones from
        :data:`MIN_SEASONAL_POINTS` observed values on); series shorter than
        :data:`MIN_MODEL_POINTS` observed values, and series a straight line fits exactly
        (constant or perfectly linear), get ``"linear"``. A key of :data:`MODELS` fits only
        that model; ``"linear"`` the straight line.
    level : float
        Coverage of the prediction intervals.

    Returns
    -------
    Forecast

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_POINTS` observed values, fewer than :data:`MIN_MODEL_POINTS`
        (:data:`MIN_SEASONAL_POINTS` for a weekly one) for an explicitly named model, or an
        unknown ``method``.

    Notes
    -----
    *Models.* Linear Gaussian state-space models (:math:`e_t, \eta_t, \zeta_t` independent
    normal noises, each model with its own variances):

    - ``"trend_ar1"``: :math:`y_t = a + b t + u_t`, :math:`u_t = \phi u_{t-1} + e_t`;
    - ``"rw_drift"``: :math:`y_t = \mu_t`, :math:`\mu_t = \mu_{t-1} + b + \eta_t`;
    - ``"level_drift"``: :math:`y_t = \mu_t + e_t`, :math:`\mu_t = \mu_{t-1} + b + \eta_t`
      (the same model as ARIMA(0,1,1) with drift);
    - ``"local_trend"``: :math:`y_t = \mu_t + e_t`, :math:`\mu_t = \mu_{t-1} + b_{t-1} +
      \eta_t`, :math:`b_t = b_{t-1} + \zeta_t` (the model of ETS(A,A,N), Holt's method);
    - ``"<model>_weekly"``: the same plus a fixed weekday effect :math:`\gamma_{t \bmod 7}`,
      :math:`\sum_{j<7} \gamma_j = 0`;
    - ``"linear"``: OLS :math:`y = a + b t + e` on the observed values, with the Student t
      prediction interval :math:`\hat y_0 \pm t_{n-2,\,(1+level)/2}\, s
      \sqrt{1 + 1/n + (t_0 - \bar t)^2 / \sum (t_i - \bar t)^2}`.

    The level, slope and weekday effects are states of the Kalman filter with an exact diffuse
    initialisation (statsmodels ``UnobservedComponents``), so the error of their estimates is
    part of each forecast's variance: for ``"rw_drift"`` the variance of :math:`y_{n+h}` is
    :math:`\sigma^2 (h + h^2 / (n - 1))` (estimated drift) rather than :math:`\sigma^2 h`.
    Missing values are skipped by the filter (no interpolation); the forecast continues over
    trailing missing steps, so ``mean[0]`` is always the step after the input.

    *Parameter uncertainty.* The variances and :math:`\phi` are fitted by maximum likelihood
    on the series scaled to unit variance. In statsmodels' unconstrained parametrisation
    :math:`\vartheta` (a standard deviation for each variance, :math:`\phi = \vartheta /
    \sqrt{1 + \vartheta^2}`) they are drawn as :math:`\vartheta_s = \hat\vartheta + L z_s`,
    :math:`L L^\top = (-\nabla^2 \ell(\hat\vartheta))^{-1}` (numerical Hessian of the
    log-likelihood, eigenvalues floored at 1: standard deviations of at most one unit), with
    :math:`z_0 = 0` and :data:`PARAMETER_DRAWS` fixed antithetic standard normal :math:`z_s`.
    Each draw is weighted by importance sampling from this normal approximation to the
    likelihood, :math:`v_s \propto \exp(\ell(\vartheta_s) - \ell(\hat\vartheta) + |z_s|^2 / 2)`
    (a flat prior on :math:`\vartheta`): where the likelihood is close to normal the weights
    are equal, and draws the data rule out (a saddle or boundary the normal approximation
    does not see) count for nothing. Each draw is filtered again and gives the forecast mean
    :math:`\mu_{s,h}` and scale :math:`\sigma_{s,h}` of a Student t with :math:`\nu = N - k`
    degrees of freedom (:math:`N, k` below). For ``"rw_drift"`` the exact predictive
    distribution is :math:`(y_{n+h} - y_n - h \bar d) / (s \sqrt{h + h^2/(n-1)}) \sim t_{n-2}`
    (:math:`\bar d, s` the mean and standard deviation of the differences); the t components
    and the draws both carry the uncertainty of :math:`s`, which makes the interval 0.8 %
    wider than that one at :math:`n = 60` (3 % at :math:`n = 20`): slightly conservative, in
    exchange for covering the variance ratios and :math:`\phi`, which the t does not.

    *Averaging.* With :math:`K` the longest diffuse start of the models fitted (the steps
    until every state is estimable, at least the number of diffuse states), every model is
    scored on the same :math:`N` observed values after step :math:`K`, by the log-likelihood of
    its one-step predictions :math:`\ell_m = \sum_{t > K} \log p_m(y_t \mid y_{1..t-1})`, with
    :math:`k` its variance/AR parameters:

    .. math:: \mathrm{AICc}_m = -2 \ell_m + 2k + \frac{2k(k+1)}{N - k - 1},
              \qquad w_m \propto \exp(-\mathrm{AICc}_m / 2)

    (Akaike weights; the diffuse states are not counted in :math:`k`: conditioning on the first
    :math:`K` steps estimates them, and their remaining error widens the one-step predictions
    the likelihood scores). The predictive distribution of step :math:`h` is the mixture
    :math:`F_h(x) = \sum_m w_m \sum_s v_{m,s} T_{\nu_m}((x - \mu_{m,s,h}) /
    \sigma_{m,s,h})`; ``lower`` and ``upper`` are its :math:`(1 - level)/2` and :math:`(1 +
    level)/2` quantiles, ``mean`` and ``std`` its mean and standard deviation. Averaging
    rather than picking one model keeps the doubt between a trend with autocorrelated noise and
    a random walk (which 60-180 points often cannot settle, and whose intervals differ most at
    long horizons) in the interval.

    Rolling-origin (conformal) calibration of the intervals was not used: 95 % needs at least
    19 held-out errors per horizon, i.e. more than ``19 + h`` points after a training window,
    which 60-180 points of history do not have at ``h = 30`` (and at ``h = 90`` never).
    """
    result, _ = _forecast_series(_prepare(values, timestamps), horizon, method, level)
    return result


def time_to_threshold(
    values: ArrayLike,
    limit: float,
    *,
    horizon: int = CAPACITY_HORIZON,
    timestamps: ArrayLike | None = None,
    method: str = "auto",
    level: float = 0.95,
    higher_is_worse: bool = True,
) -> TimeToLimit:
    r"""Forecast when a metric crosses its capacity limit (CPU 80 %, p95 at its SLA, ...).

    Parameters
    ----------
    values, timestamps, method, level
        As for :func:`forecast`.
    limit : float
        The capacity limit, in the metric's units.
    horizon : int
        Steps to look ahead (default: the 90-step capacity horizon).
    higher_is_worse : bool
        ``True``: crossing means rising to ``limit`` or above (CPU, memory, latency).
        ``False``: falling to ``limit`` or below (throughput, free disk).

    Returns
    -------
    TimeToLimit

    Notes
    -----
    The path starts at the last observed value (step 0, or step :math:`-k` after :math:`k`
    trailing missing steps) and continues with the forecast at steps :math:`1..H`. The
    crossing is the first point of the path at or past the limit, interpolated linearly from
    the point before it. The same is done with each interval bound. With :math:`F_h` the
    predictive distribution function of step :math:`h` (see :func:`forecast`), the crossing
    probability is :math:`\max_h P(Y_h \ge L) = \max_h 1 - F_h(L^-)` when higher is worse,
    :math:`\max_h F_h(L)` otherwise.
    """
    series = _prepare(values, timestamps)
    result, predictive = _forecast_series(series, horizon, method, level)
    # Work on "higher is worse" throughout: negating the metric and the limit turns a fall
    # below a limit into a rise above one.
    sign = 1.0 if higher_is_worse else -1.0
    bad_bound, good_bound = (
        (result.upper, result.lower) if higher_is_worse else (result.lower, result.upper)
    )
    start = (-float(series.offset), sign * float(series.observed[-1]))

    def crossing(path: np.ndarray) -> float | None:
        return _first_crossing(start, sign * path, sign * limit)

    if start[1] >= sign * limit:
        probability = 1.0
    else:
        at_limit = np.full(horizon, float(limit))
        past = (
            1.0 - predictive.probability_below(at_limit, strict=True)
            if higher_is_worse
            else predictive.probability_below(at_limit)
        )
        probability = float(np.clip(np.max(past), 0.0, 1.0))
    return TimeToLimit(
        limit=float(limit),
        steps=crossing(result.mean),
        steps_earliest=crossing(bad_bound),
        steps_latest=crossing(good_bound),
        crossing_probability=probability,
        horizon=horizon,
        forecast=result,
    )


def mape(actual: ArrayLike, predicted: ArrayLike) -> float:
    r"""Mean absolute percentage error, as a fraction (``0.1`` = 10 %).

    .. math:: \mathrm{MAPE} = \frac{1}{n} \sum_{i} \frac{|a_i - p_i|}{|a_i|}

    Pairs with a missing value or an actual value of 0 (where the ratio is undefined) are
    left out; NaN when no pair is left.
    """
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in shape: {a.shape} vs {p.shape}")
    keep = np.isfinite(a) & np.isfinite(p) & (a != 0)
    if not keep.any():
        return math.nan
    return float(np.mean(np.abs(a[keep] - p[keep]) / np.abs(a[keep])))


def backtest_forecast(
    values: ArrayLike,
    horizon: int = PERFORMANCE_HORIZON,
    *,
    method: str = "auto",
) -> float:
    """MAPE of a forecast fitted on all but the last ``horizon`` values, on those values.

    Parameters
    ----------
    values : array_like
        The whole series, oldest first, one value per step (missing values as NaN).
    horizon : int
        Held-out steps at the end of the series.
    method : str
        As for :func:`forecast`.

    Returns
    -------
    float
        :func:`mape` of ``forecast(values[:-horizon], horizon).mean`` against
        ``values[-horizon:]``.
    """
    y = np.asarray(values, dtype=float)
    if not 0 < horizon < y.size:
        raise ValueError(f"horizon must be between 1 and {y.size - 1}, got {horizon}")
    result = forecast(y[:-horizon], horizon, method=method)
    return mape(y[-horizon:], result.mean)


def _prepare(values: ArrayLike, timestamps: ArrayLike | None) -> _Series:
    """Place the values on a regular grid and cut the leading missing ones."""
    y = np.asarray(values, dtype=float).ravel()
    notes: list[str] = []
    end = step = None
    if timestamps is not None:
        y, end, step, grid_notes = _to_grid(y, timestamps)
        notes += grid_notes
    y = np.where(np.isfinite(y), y, np.nan)
    observed = np.flatnonzero(np.isfinite(y))
    if observed.size < MIN_POINTS:
        raise ValueError(
            f"need at least {MIN_POINTS} observed values to forecast, got {observed.size}"
        )
    first, last = observed[0], observed[-1]
    offset = y.size - 1 - last
    gaps = last - first + 1 - observed.size
    if first:
        notes.append(f"{first} leading missing values dropped")
    if gaps:
        notes.append(
            f"{gaps} missing values: skipped by the Kalman filter (the linear trend uses the "
            "observed values only)"
        )
    if offset:
        notes.append(f"{offset} trailing missing values: forecast starts after the last value")
    return _Series(y[first:], observed - first, y[observed], int(offset), end, step, tuple(notes))


def _to_grid(
    y: np.ndarray, timestamps: ArrayLike
) -> tuple[np.ndarray, np.datetime64, np.timedelta64, list[str]]:
    """Average the values onto a grid of the median timestamp spacing; gaps become NaN."""
    ts = np.asarray(timestamps).astype("datetime64[us]").ravel()
    if ts.shape != y.shape:
        raise ValueError(f"values and timestamps differ in length: {y.size} vs {ts.size}")
    if np.isnat(ts).any():
        raise ValueError("timestamps contain missing values")
    order = np.argsort(ts, kind="stable")
    ts, y = ts[order], y[order]
    spacing = np.diff(ts)
    spacing = spacing[spacing > np.timedelta64(0, "us")]
    if spacing.size == 0:
        raise ValueError("timestamps need at least two distinct values")
    step = np.median(spacing.astype(np.int64)).astype(np.int64).astype("timedelta64[us]")
    slot = np.rint((ts - ts[0]) / step).astype(np.int64)
    finite = np.isfinite(y)
    sums = np.bincount(slot[finite], weights=y[finite], minlength=slot[-1] + 1)
    counts = np.bincount(slot[finite], minlength=slot[-1] + 1)
    with np.errstate(invalid="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    notes = []
    if (counts > 1).any():
        notes.append(f"{int((counts > 1).sum())} steps had several values: averaged")
    return grid, ts[0] + step * slot[-1], step, notes


def _forecast_series(
    series: _Series, horizon: int, method: str, level: float
) -> tuple[Forecast, _Mixture]:
    if method not in METHODS:
        raise ValueError(f"unknown forecast method {method!r}; expected one of {METHODS}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    notes = list(series.notes)
    n = series.observed.size
    names = _model_names(series, method, notes)
    fit = _average(series.values, horizon, names, notes) if names else None
    if fit is None:
        fit = _linear(series.positions, series.observed, horizon + series.offset, series.offset)
    predictive, candidates, weights, dfs = fit
    chosen = max(weights, key=weights.__getitem__)
    timestamps = None
    if series.end is not None:
        timestamps = series.end + series.step * np.arange(1, horizon + 1)
    result = Forecast(
        mean=predictive.mean(),
        lower=predictive.quantile((1 - level) / 2),
        upper=predictive.quantile((1 + level) / 2),
        std=predictive.std(),
        df=dfs[chosen],
        method=chosen,
        aicc=candidates[chosen],
        candidates=candidates,
        level=level,
        n_obs=n,
        timestamps=timestamps,
        notes=tuple(notes),
        weights=weights,
    )
    return result, predictive


def _model_names(series: _Series, method: str, notes: list[str]) -> list[str]:
    """The state-space models to fit; empty for the linear trend."""
    n = series.observed.size
    if method == "linear":
        return []
    if method != "auto":
        needed = MIN_SEASONAL_POINTS if method.endswith(_WEEKLY) else MIN_MODEL_POINTS
        if n < needed:
            raise ValueError(f"{method} needs at least {needed} observed values, got {n}")
        return [method]
    if n < MIN_MODEL_POINTS:
        notes.append(f"{n} values (< {MIN_MODEL_POINTS}): linear trend instead of the models")
        return []
    if _is_exact_line(series.positions, series.observed):
        notes.append("a straight line fits exactly: linear trend (no noise to model)")
        return []
    if n < MIN_SEASONAL_POINTS:
        notes.append(f"{n} values (< {MIN_SEASONAL_POINTS}): no weekly models")
        return list(_TRENDS)
    return list(MODELS)


# The predictive distribution, and per model its AICc, weight and degrees of freedom.
_Averaged = tuple[_Mixture, dict[str, float], dict[str, float], dict[str, float]]


def _average(y: np.ndarray, horizon: int, names: list[str], notes: list[str]) -> _Averaged | None:
    """Fit the models, weigh them and mix their parameter draws (see :func:`forecast`, Notes).

    ``None`` when no model could be fitted (the caller falls back to the linear trend).
    """
    observed = np.isfinite(y)
    # Unit scale: the parameters, the Hessian's step and the eigenvalue floor are then
    # comparable from one series to the next.
    center, scale = float(np.mean(y[observed])), float(np.std(y[observed]))
    if not scale > 0:
        notes.append("a constant series: linear trend (no noise to model)")
        return None
    z = (y - center) / scale
    fits: dict[str, _StateSpaceFit] = {}
    for name in names:
        try:
            fits[name] = _fit_state_space(z, name)
        except (np.linalg.LinAlgError, ValueError) as error:
            if len(names) == 1:
                raise
            notes.append(f"{name} could not be fitted: {error}")
    if not fits:
        notes.append("no state-space model could be fitted: linear trend")
        return None
    burn = max(fit.burn for fit in fits.values())
    count = int(observed[burn:].sum())
    # AICc on the original scale: the scaled likelihood differs by the Jacobian, -N ln(scale).
    candidates = {
        name: _conditional_aicc(fit, burn, count) + 2 * count * math.log(scale)
        for name, fit in fits.items()
    }
    weights = _akaike_weights(candidates)
    draws = {}
    for name, weight in weights.items():
        if weight >= MIN_WEIGHT:
            try:
                draws[name] = _parameter_draws(fits[name], horizon)
            except (np.linalg.LinAlgError, ValueError) as error:
                notes.append(f"{name} left out: {error}")
    if not draws:
        notes.append("no state-space model gave a forecast: linear trend")
        return None
    total = sum(weights[name] for name in draws)
    # Student t with the residual degrees of freedom: the exact predictive distribution of a
    # random walk with drift whose variance is estimated (see forecast, Notes).
    dfs = {name: float(count - fit.k) for name, fit in fits.items()}
    components_w, means, stds, component_dfs = [], [], [], []
    for name, (draw_means, draw_stds, draw_weights) in draws.items():
        components_w.append(weights[name] / total * draw_weights)
        means.append(draw_means)
        stds.append(draw_stds)
        component_dfs.append(np.full(len(draw_weights), dfs[name]))
    predictive = _Mixture(
        weights=np.concatenate(components_w),
        means=center + scale * np.vstack(means),
        stds=scale * np.vstack(stds),
        dfs=np.concatenate(component_dfs),
    )
    weights = {name: (w / total if name in draws else 0.0) for name, w in weights.items()}
    return predictive, candidates, weights, dfs


class _StateSpaceFit(NamedTuple):
    model: Any  # statsmodels UnobservedComponents
    params: np.ndarray  # maximum-likelihood estimates (constrained)
    loglike_obs: np.ndarray  # log p(y_t | y_1..t-1) per step (0 where y_t is missing)
    burn: int  # steps of the exact diffuse start
    k: int  # estimated variance/AR parameters


# statsmodels (and the pandas it needs) are imported where used: together they take seconds
# to import, a cost every process that loads the Dagster definitions would otherwise pay.
def _fit_state_space(z: np.ndarray, name: str) -> _StateSpaceFit:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    trend = name.removesuffix(_WEEKLY)
    spec = dict(_TRENDS[trend])
    if name.endswith(_WEEKLY):
        spec |= {"seasonal": PERIOD, "stochastic_seasonal": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Starting values of an AR(1) near its bound are fine (the optimiser moves them).
        warnings.filterwarnings("ignore", message="Non-stationary starting autoregressive")
        model = UnobservedComponents(z, use_exact_diffuse=True, **spec)
        params = model.fit(disp=False, cov_type="none", return_params=True)
        filtered = model.filter(params, return_ssm=True)
    burn = int(filtered.nobs_diffuse)
    loglike_obs = np.asarray(filtered.llf_obs, dtype=float)
    if burn >= z.size - 1 or not np.all(np.isfinite(loglike_obs[burn:])):
        raise ValueError("the diffuse states are not identified by the observed values")
    return _StateSpaceFit(model, np.asarray(params), loglike_obs, burn, len(params))


def _conditional_aicc(fit: _StateSpaceFit, burn: int, count: int) -> float:
    """AICc of the one-step log-likelihood after step ``burn`` (see :func:`forecast`, Notes)."""
    k = fit.k
    if count - k - 1 <= 0:
        return math.nan
    loglike = float(np.sum(fit.loglike_obs[burn:]))
    return -2 * loglike + 2 * k + 2 * k * (k + 1) / (count - k - 1)


def _akaike_weights(criteria: dict[str, float]) -> dict[str, float]:
    r""":math:`w_m = e^{-\Delta_m/2} / \sum_j e^{-\Delta_j/2}`, :math:`\Delta_m = c_m - \min c`.

    A NaN criterion (too few values for the model) gets weight 0; if every one is NaN, the
    models are weighted equally.
    """
    values = np.array([criteria[name] for name in criteria], dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return {name: 1 / len(criteria) for name in criteria}
    delta = np.where(finite, values - np.min(values[finite]), np.inf)
    raw = np.exp(-delta / 2)
    return dict(zip(criteria, (raw / raw.sum()).tolist(), strict=True))


def _parameter_draws(fit: _StateSpaceFit, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast means and standard deviations, one row per parameter draw, and the draws'
    importance weights (summing to 1; see :func:`forecast`, Notes)."""
    model = fit.model
    x_hat = np.asarray(model.untransform_params(fit.params), dtype=float)
    hessian = _hessian(lambda x: model.loglike(x, transformed=False), x_hat)
    eigenvalues, eigenvectors = np.linalg.eigh(-(hessian + hessian.T) / 2)
    if not np.all(np.isfinite(eigenvalues)):
        eigenvalues = np.zeros_like(eigenvalues)
    # Floor 1: a direction the likelihood barely bends in (an unidentified parameter, or an
    # optimiser stopped at the saddle that x = 0 is for a variance x^2) gets a standard
    # deviation of one unit of the unit-scaled series; the importance weights then give the
    # draws that the likelihood rules out (a slope variance of the series' variance) no weight.
    root = eigenvectors / np.sqrt(np.maximum(eigenvalues, 1.0))
    means, stds, log_weights = [], [], []
    for z in _standard_normal_points(x_hat.size):
        params = model.transform_params(x_hat + root @ z)
        filtered = model.filter(params, return_ssm=True)
        mean, std = _kalman_forecast(filtered, steps)
        loglike = float(np.sum(filtered.llf_obs))
        if np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and math.isfinite(loglike):
            means.append(mean)
            stds.append(std)
            # Target: the likelihood (flat prior on x); proposal: N(x_hat, root root').
            log_weights.append(loglike + 0.5 * float(z @ z))
    if not means:
        raise ValueError("no parameter draw gives a finite forecast")
    weights = np.exp(np.array(log_weights) - max(log_weights))
    return np.array(means), np.array(stds), weights / weights.sum()


@cache
def _standard_normal_points(k: int) -> np.ndarray:
    """0 (the estimate), then :data:`PARAMETER_DRAWS` fixed standard normal points in ``k``
    dimensions in antithetic pairs (their mean is exactly 0: centred on the estimate)."""
    half = np.random.default_rng(k).standard_normal((PARAMETER_DRAWS // 2, k))
    return np.vstack([np.zeros((1, k)), half, -half])


def _hessian(f: Any, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central finite-difference Hessian of ``f`` at ``x`` (``x`` of order 1: unit-scaled)."""
    k = x.size
    steps = np.eye(k) * h
    f0 = f(x)
    out = np.empty((k, k))
    for i in range(k):
        out[i, i] = (f(x + steps[i]) - 2 * f0 + f(x - steps[i])) / h**2
        for j in range(i):
            out[i, j] = out[j, i] = (
                f(x + steps[i] + steps[j])
                - f(x + steps[i] - steps[j])
                - f(x - steps[i] + steps[j])
                + f(x - steps[i] - steps[j])
            ) / (4 * h * h)
    return out


def _kalman_forecast(filtered: Any, steps: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and standard deviation of :math:`y_{n+1..n+H}` from the filter's last prediction.

    With :math:`a, P` the predicted state and its covariance for step :math:`n + 1` and
    :math:`r_j = Z T^j`:

    .. math:: E\,y_{n+1+j} = r_j a + d, \qquad \mathrm{Var}\,y_{n+1+j} = r_j P r_j^\top
              + \sum_{i<j} r_i R Q R^\top r_i^\top + H
    """
    if np.any(filtered.state_intercept):
        raise ValueError("state intercepts are not supported")
    a = filtered.predicted_state[:, -1]
    p = filtered.predicted_state_cov[:, :, -1]
    design = filtered.design[0, :, 0]
    transition = filtered.transition[:, :, 0]
    selection = filtered.selection[:, :, 0]
    noise = selection @ filtered.state_cov[:, :, 0] @ selection.T
    rows = np.empty((steps, design.size))
    row = design
    for j in range(steps):
        rows[j] = row
        row = row @ transition
    mean = rows @ a + filtered.obs_intercept[0, 0]
    from_state = np.einsum("jk,kl,jl->j", rows, p, rows)
    per_step = np.einsum("jk,kl,jl->j", rows, noise, rows)
    variance = from_state + np.concatenate([[0.0], np.cumsum(per_step)[:-1]])
    variance += filtered.obs_cov[0, 0, 0]
    return mean, np.sqrt(np.maximum(variance, 0.0))


def _aicc(residuals: np.ndarray, k: int) -> float:
    """AICc of i.i.d. normal residuals with ``k`` estimated parameters (NaN if undefined)."""
    n = residuals.size
    sse = float(np.sum(residuals**2))
    if sse <= 0 or n - k - 1 <= 0:
        return math.nan
    return n * math.log(sse / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _linear(positions: np.ndarray, observed: np.ndarray, steps: int, skip: int) -> _Averaged:
    """OLS trend line with the Student t prediction interval of a new observation, for the
    ``steps`` after the last observed value, of which the first ``skip`` are dropped."""
    n = observed.size
    x_mean = positions.mean()
    sxx = float(np.sum((positions - x_mean) ** 2))
    slope = float(np.sum((positions - x_mean) * (observed - observed.mean())) / sxx)
    intercept = observed.mean() - slope * x_mean
    residuals = observed - (intercept + slope * positions)
    s = math.sqrt(float(np.sum(residuals**2)) / (n - 2))
    x_new = positions[-1] + np.arange(1, steps + 1)[skip:]
    mean = intercept + slope * x_new
    std = s * np.sqrt(1 + 1 / n + (x_new - x_mean) ** 2 / sxx)
    aicc = _aicc(residuals, 3)  # intercept, slope, sigma^2
    predictive = _Mixture(np.ones(1), mean[None, :], std[None, :], np.array([n - 2.0]))
    return predictive, {"linear": aicc}, {"linear": 1.0}, {"linear": float(n - 2)}


def _is_exact_line(positions: np.ndarray, observed: np.ndarray) -> bool:
    """True when a straight line leaves no residual (a constant or a perfectly linear series)."""
    fitted = np.polyval(np.polyfit(positions, observed, 1), positions)
    scale = float(np.max(np.abs(observed)))
    return bool(np.max(np.abs(observed - fitted)) <= 1e-9 * scale)


def _first_crossing(start: tuple[float, float], path: np.ndarray, limit: float) -> float | None:
    """First step at which ``start`` followed by ``path`` (steps 1, 2, ...) reaches ``limit``."""
    x = np.concatenate([[start[0]], np.arange(1, path.size + 1, dtype=float)])
    y = np.concatenate([[start[1]], path])
    reached = np.flatnonzero(y >= limit)
    if reached.size == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return 0.0
    fraction = (limit - y[i - 1]) / (y[i] - y[i - 1])
    return max(0.0, float(x[i - 1] + fraction * (x[i] - x[i - 1])))
