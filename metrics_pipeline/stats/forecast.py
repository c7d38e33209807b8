"""Forecasts of daily (or per-run) metric series with prediction intervals, and time to a limit.

The weekly stage forecasts throughput, latency and resource usage 30 steps ahead (the
performance horizon) and 90 steps ahead (the capacity horizon), and reports when a metric is
expected to cross its capacity limit (CPU 80 %, p95 at its SLA, ...).

A series is one value per step: a daily aggregate (pass ``timestamps`` so that missing days are
placed correctly) or one value per run (omit ``timestamps``: a step is then one run). Weekly
seasonality is not modelled: the models are level + trend models, which is what a capacity
trend needs and what the usual 30-120 points of history can support.
"""

import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

PERFORMANCE_HORIZON = 30
CAPACITY_HORIZON = 90
# ETS/ARIMA estimate 3-5 parameters from the one-step errors; below this many points the
# estimates (and the AICc that picks between them) are noise, and a straight line is safer.
MIN_MODEL_POINTS = 10
# A straight line needs two points and one more for the residual variance of its interval.
MIN_POINTS = 3

# Models tried by method="auto", chosen by the AICc of their one-step-ahead errors.
MODELS = {
    "ets": "ETS(A,A,N): additive errors, additive trend (Holt's linear method)",
    "ets_damped": "ETS(A,Ad,N): additive errors, additive damped trend",
    "arima": "ARIMA(0,1,1) with drift",
}
METHODS = ("auto", *MODELS, "linear")


@dataclass(frozen=True, eq=False)
class Forecast:
    """Point forecasts and prediction intervals for the steps after the end of a series.

    Attributes
    ----------
    mean, lower, upper : numpy.ndarray
        Point forecast and prediction interval bounds, one value per step ``1..horizon``
        after the end of the input series (``mean[0]`` is the next step).
    std : numpy.ndarray
        Standard deviation of each step's forecast error.
    df : float
        Degrees of freedom of the predictive distribution: ``inf`` (normal) for ETS/ARIMA,
        :math:`n - 2` (Student t) for the linear trend.
    method : str
        The model used: ``"ets"``, ``"ets_damped"``, ``"arima"`` or ``"linear"`` (see
        :data:`MODELS`).
    aicc : float
        Selection criterion of the model used (see :func:`forecast`, Notes); lower is better.
        For ``"linear"`` the AICc of its OLS residuals, which is not comparable with the
        others (NaN below 5 points).
    candidates : dict[str, float]
        ``aicc`` of every model tried (one entry unless ``method="auto"``).
    level : float
        Coverage of the prediction interval.
    n_obs : int
        Observed (non-missing) values the model was fitted on.
    timestamps : numpy.ndarray or None
        ``datetime64[us]`` of each forecast step when ``timestamps`` were given.
    notes : tuple[str, ...]
        What was done to the input (missing values, fallbacks), for reports.
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

    values: np.ndarray  # observed values with interior gaps interpolated, leading/trailing cut
    positions: np.ndarray  # grid positions of the observed (not interpolated) values
    observed: np.ndarray  # the observed values at those positions
    offset: int  # trailing missing steps: the fit ends this many steps before the input does
    end: np.datetime64 | None  # timestamp of the input's last grid step, when timestamps given
    step: np.timedelta64 | None  # grid spacing, when timestamps given
    notes: tuple[str, ...]


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
    method : {"auto", "ets", "ets_damped", "arima", "linear"}
        ``"auto"``: every model of :data:`MODELS`, keeping the lowest AICc; series shorter
        than :data:`MIN_MODEL_POINTS` observed values, and series a straight line fits exactly
        (constant or perfectly linear), get ``"linear"``. Naming a model fits only that one.
    level : float
        Coverage of the prediction intervals.

    Returns
    -------
    Forecast

    Raises
    ------
    ValueError
        Fewer than :data:`MIN_POINTS` observed values, fewer than :data:`MIN_MODEL_POINTS`
        for an explicitly named ETS/ARIMA model, or an unknown ``method``.

    Notes
    -----
    Models (:math:`e_t \sim N(0, \sigma^2)` i.i.d.), fitted by maximum likelihood:

    - ``"ets"``, ETS(A,A,N): :math:`y_t = \ell_{t-1} + b_{t-1} + e_t`,
      :math:`\ell_t = \ell_{t-1} + b_{t-1} + \alpha e_t`, :math:`b_t = b_{t-1} + \beta e_t`.
    - ``"ets_damped"``, ETS(A,Ad,N): the same with :math:`\phi b_{t-1}` in place of
      :math:`b_{t-1}`, :math:`0.8 \le \phi \le 0.98`: trends that level off.
    - ``"arima"``, ARIMA(0,1,1) with drift: :math:`y_t - y_{t-1} = \mu + e_t + \theta e_{t-1}`.
    - ``"linear"``: OLS :math:`y = a + b t + e` on the observed values, with the Student t
      prediction interval :math:`\hat y_0 \pm t_{n-2,\,(1+level)/2}\, s
      \sqrt{1 + 1/n + (t_0 - \bar t)^2 / \sum (t_i - \bar t)^2}`.

    ETS/ARIMA intervals are statsmodels' exact Gaussian ones (they ignore the uncertainty of
    the estimated parameters, so they run slightly narrow). Interior missing values are
    interpolated linearly for ETS/ARIMA (the linear trend uses only observed points), which
    narrows the intervals a little when many values are missing; leading missing values are
    dropped, and trailing ones are forecast over so that ``mean[0]`` stays the step after
    the input.

    Selection. statsmodels' own AIC cannot compare ETS with ARIMA: the ETS likelihood covers
    all :math:`n` values and estimates the initial states, the ARIMA likelihood conditions on
    the first value (diffuse initialisation), so equivalent models (ETS(A,N,N) and
    ARIMA(0,1,1)) differ by about 5 points. All models are therefore scored on the same
    :math:`m = n - 1` one-step-ahead errors :math:`e_2..e_n`, with :math:`k` counting every
    estimated quantity (smoothing/ARMA parameters, drift, initial or diffuse states,
    :math:`\sigma^2`):

    .. math:: \mathrm{AICc} = m \ln(\mathrm{SSE}/m) + 2k + \frac{2k(k+1)}{m - k - 1}
    """
    return _forecast_series(_prepare(values, timestamps), horizon, method, level)


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
    the point before it. The same is done with each interval bound. With :math:`F` the
    predictive CDF of step :math:`h` (normal, or Student t for the linear trend) and
    :math:`\hat y_h, s_h` its mean and standard deviation, the crossing probability is
    :math:`\max_h 1 - F((L - \hat y_h)/s_h)` when higher is worse, :math:`\max_h
    F((L - \hat y_h)/s_h)` otherwise.
    """
    series = _prepare(values, timestamps)
    result = _forecast_series(series, horizon, method, level)
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
        distribution = stats.norm if math.isinf(result.df) else stats.t(result.df)
        # A zero standard deviation (exact fit) gives z = +inf (never), -inf (certain) or,
        # exactly at the limit, NaN (reached: certain).
        with np.errstate(divide="ignore", invalid="ignore"):
            z = sign * (limit - result.mean) / result.std
        z = np.where(np.isnan(z), -np.inf, z)
        probability = float(np.max(distribution.sf(z)))
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
    """Place the values on a regular grid, then cut and interpolate the missing ones."""
    y = np.asarray(values, dtype=float).ravel()
    notes: list[str] = []
    end = step = None
    if timestamps is not None:
        y, end, step, grid_notes = _to_grid(y, timestamps)
        notes += grid_notes
    observed = np.flatnonzero(np.isfinite(y))
    if observed.size < MIN_POINTS:
        raise ValueError(
            f"need at least {MIN_POINTS} observed values to forecast, got {observed.size}"
        )
    first, last = observed[0], observed[-1]
    offset = y.size - 1 - last
    positions = observed - first
    observed_values = y[observed]
    interpolated = np.interp(np.arange(last - first + 1), positions, observed_values)
    gaps = interpolated.size - observed.size
    if first:
        notes.append(f"{first} leading missing values dropped")
    if gaps:
        notes.append(f"{gaps} missing values interpolated linearly")
    if offset:
        notes.append(f"{offset} trailing missing values: forecast starts after the last value")
    return _Series(interpolated, positions, observed_values, int(offset), end, step, tuple(notes))


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


def _forecast_series(series: _Series, horizon: int, method: str, level: float) -> Forecast:
    if method not in METHODS:
        raise ValueError(f"unknown forecast method {method!r}; expected one of {METHODS}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    notes = list(series.notes)
    steps = horizon + series.offset
    n = series.observed.size
    if method == "auto":
        if n < MIN_MODEL_POINTS:
            method = "linear"
            notes.append(f"{n} values (< {MIN_MODEL_POINTS}): linear trend instead of ETS/ARIMA")
        elif _is_exact_line(series.positions, series.observed):
            method = "linear"
            notes.append("a straight line fits exactly: linear trend (no noise to model)")
    elif method != "linear" and n < MIN_MODEL_POINTS:
        raise ValueError(f"{method} needs at least {MIN_MODEL_POINTS} observed values, got {n}")

    if method == "linear":
        fits = {"linear": _linear(series.positions, series.observed, steps, level)}
    else:
        names = list(MODELS) if method == "auto" else [method]
        fits = {}
        for name in names:
            try:
                fits[name] = _FITTERS[name](series.values, steps, level)
            except (np.linalg.LinAlgError, ValueError) as error:
                if method != "auto":
                    raise
                notes.append(f"{name} could not be fitted: {error}")
        if not fits:
            fits = {"linear": _linear(series.positions, series.observed, steps, level)}
            notes.append("no ETS/ARIMA model could be fitted: linear trend")

    # A NaN criterion (degenerate fit) must never win.
    chosen = min(fits, key=lambda name: _or_inf(fits[name][4]))
    mean, lower, upper, std, aicc, df = fits[chosen]
    keep = slice(series.offset, None)  # drop the steps that cover trailing missing values
    timestamps = None
    if series.end is not None:
        timestamps = series.end + series.step * np.arange(1, horizon + 1)
    return Forecast(
        mean=mean[keep],
        lower=lower[keep],
        upper=upper[keep],
        std=std[keep],
        df=df,
        method=chosen,
        aicc=aicc,
        candidates={name: fit[4] for name, fit in fits.items()},
        level=level,
        n_obs=n,
        timestamps=timestamps,
        notes=tuple(notes),
    )


# A fit returns (mean, lower, upper, std, aicc, df) for steps 1..steps after the series.
_Fit = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]


# statsmodels (and the pandas it needs) are imported where used: together they take seconds
# to import, a cost every process that loads the Dagster definitions would otherwise pay.
def _ets(y: np.ndarray, steps: int, level: float, *, damped: bool) -> _Fit:
    import pandas as pd
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # statsmodels 0.15's ETS prediction needs a pandas index (it fails on a bare array).
        model = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=damped)
        result = model.fit(disp=False)
        prediction = result.get_prediction(start=y.size, end=y.size + steps - 1)
        bounds = prediction.pred_int(alpha=1 - level).to_numpy()
    # k: smoothing parameters and initial states (result.params) plus sigma^2.
    aicc = _aicc(np.asarray(result.resid), len(result.params) + 1)
    return (
        prediction.predicted_mean.to_numpy(),
        bounds[:, 0],
        bounds[:, 1],
        np.sqrt(np.asarray(prediction.var_pred_mean, dtype=float)),
        aicc,
        math.inf,
    )


def _arima(y: np.ndarray, steps: int, level: float) -> _Fit:
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", EstimationWarning)
        # Starting values of a near-non-invertible MA (a trend plus white noise) are fine.
        warnings.filterwarnings("ignore", message="Non-invertible starting MA parameters")
        result = ARIMA(y, order=(0, 1, 1), trend="t").fit()
        prediction = result.get_forecast(steps)
        bounds = prediction.conf_int(alpha=1 - level)
    # k: theta, drift and sigma^2 (result.params) plus the diffuse initial level.
    aicc = _aicc(np.asarray(result.resid), len(result.params) + 1)
    return (
        np.asarray(prediction.predicted_mean),
        bounds[:, 0],
        bounds[:, 1],
        np.asarray(prediction.se_mean),
        aicc,
        math.inf,
    )


_FITTERS = {
    "ets": lambda y, steps, level: _ets(y, steps, level, damped=False),
    "ets_damped": lambda y, steps, level: _ets(y, steps, level, damped=True),
    "arima": _arima,
}


def _or_inf(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _aicc(one_step_errors: np.ndarray, k: int) -> float:
    """AICc of the one-step-ahead errors after the first (see :func:`forecast`, Notes)."""
    errors = one_step_errors[1:]
    m = errors.size
    sse = float(np.sum(errors**2))
    if sse <= 0 or m - k - 1 <= 0:
        return math.nan
    return m * math.log(sse / m) + 2 * k + 2 * k * (k + 1) / (m - k - 1)


def _linear(positions: np.ndarray, observed: np.ndarray, steps: int, level: float) -> _Fit:
    """OLS trend line with the Student t prediction interval of a new observation."""
    n = observed.size
    x_mean = positions.mean()
    sxx = float(np.sum((positions - x_mean) ** 2))
    slope = float(np.sum((positions - x_mean) * (observed - observed.mean())) / sxx)
    intercept = observed.mean() - slope * x_mean
    residuals = observed - (intercept + slope * positions)
    sse = float(np.sum(residuals**2))
    s = math.sqrt(sse / (n - 2))
    x_new = positions[-1] + np.arange(1, steps + 1)
    mean = intercept + slope * x_new
    std = s * np.sqrt(1 + 1 / n + (x_new - x_mean) ** 2 / sxx)
    q = stats.t.ppf((1 + level) / 2, n - 2)
    k = 3  # intercept, slope, sigma^2
    aicc = (
        n * math.log(sse / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
        if sse > 0 and n - k - 1 > 0
        else math.nan
    )
    return mean, mean - q * std, mean + q * std, std, aicc, float(n - 2)


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
