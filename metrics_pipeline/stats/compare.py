r"""Run-level comparisons of a candidate run with baseline runs: change, CI, p-value, verdict.

A verdict compares *runs*, not requests. Two runs of the same build on the same machine differ
by more than their requests' sampling error (warm-up, neighbours, caches, frequency scaling):
on shared CI machines run medians move by 5-15 % and tails by more. So every statistic (a
latency quantile or mean, an error rate, a throughput, a resource level) is computed once per
run with its sampling variance, and compared under a random run effect whose size comes from
the data (:class:`RunNoise`):

1. measured on the baseline runs themselves and the combination's earlier runs in the
   warehouse (``history``), pooled (t reference on their degrees of freedom);
2. but at least a documented prior (``--run-noise``, default 10 %; error rates 30 %, set by
   the verdict rules; taken as known): the
   spread assumed when nothing measured it, and the floor when only runs that may have been
   taken back to back did (they agree more than runs days apart); a history lifts the floor.

A change is oriented so that a positive value means *worse*, whatever the metric's good
direction. On the log scale (latencies, throughput, resources) ``change`` is relative
(``+0.25`` = 25 % worse); for rates (error rates, compared on the arcsine scale: Freeman and
Tukey's double arcsine, whose sampling variance is :math:`1/(4n+2)` whatever the rate) it is
the difference of the rates (``+0.02`` = 2 percentage points worse), as on the identity scale.

Quantiles are mid-quantiles (Parzen's mid-distribution: Hazen's type-5 quantile on continuous
data), which interpolate across tied values, so a percentile of whole milliseconds moves
smoothly instead of jumping a full step when a few requests cross it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from metrics_pipeline.common.noise import DEFAULT_RUN_NOISE
from metrics_pipeline.stats.quantiles import INTERVAL_LEVELS, log_floor, pooled_quantiles

Scale = Literal["log", "identity", "arcsine"]

# Fewer degrees of freedom than this in a measured run noise above the prior and it is taken as
# known (normal reference) instead of on a t with 1 df.
MIN_MEASURED_DF = 2
# Baseline runs this far apart (consecutive start times) are taken on separate occasions, like
# nightly or daily runs: their spread measures the run noise and lifts the prior's floor. Runs
# closer together may share the machine's moment (neighbours, caches, thermal state) and agree
# more than runs on different days.
SEPARATE_OCCASIONS_H = 12.0
# A quantile needs this many values beyond it in a run to be judged (p99 from 1,000 values on):
# from fewer, its sampling error cannot be estimated and a couple of slow requests decide it.
MIN_TAIL_COUNT = 10
# Measured resolutions tried, coarsest first (milliseconds for latencies).
RESOLUTIONS = (1.0, 0.1, 0.01, 0.001)
# Confidence of the order-statistic bound an untestable quantile is held to before its run is
# called suspect (one-sided, the bound a two-sided 95 % interval has on each side).
SUSPECT_CONFIDENCE = 0.975

_QUANTILE_STATISTIC = re.compile(r"p(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class RunStatistic:
    r"""One statistic of one run and the sampling variance of its transform.

    Attributes
    ----------
    value : float
        The statistic (a mid-quantile, a mean, a rate ...), in the metric's units.
    variance : float
        Sampling variance of :math:`g(\text{value})`, with :math:`g = \ln` on the log scale and
        the identity on the identity (and arcsine) scale; 0 when the run gives no way to
        estimate it (one aggregate per run), which leaves the whole spread to the run effect.
        On the arcsine scale :func:`compare_runs` takes :math:`1/(4n+2)` instead.
    n : int
        Values behind it (requests, samples, intervals).
    resolution : float
        Step of the measured values (1.0 for whole milliseconds), 0 for continuous values.
    lower, upper : float
        For a quantile too far out to be tested (NaN ``variance``): distribution-free
        one-sided bounds at :data:`SUSPECT_CONFIDENCE` (see :func:`quantile_statistics`),
        ``-inf`` / ``inf`` when no order statistic reaches that confidence; NaN when not
        computed (the value stands for itself).
    """

    value: float
    variance: float
    n: int
    resolution: float = 0.0
    lower: float = math.nan
    upper: float = math.nan


@dataclass(frozen=True)
class RunNoise:
    r"""The spread of a run's statistic between identical runs, beyond sampling error.

    Either a prior (``relative`` and ``absolute`` parts, taken as known) or a measurement
    (``variance``: the per-run variance of the transformed statistic, sampling included, with
    ``df`` degrees of freedom), e.g. from the combination's history.

    Attributes
    ----------
    relative : float
        Prior relative spread :math:`r` of the run effect (0.10 = 10 %).
    absolute : float
        Prior absolute spread :math:`a` in the metric's units, added in quadrature.
    variance : float or None
        Measured per-run variance :math:`S^2_h` on the comparison's scale.
    df : float
        Degrees of freedom of ``variance``; ``inf`` for a prior.
    source : str
        Where it came from, for the verdict row.
    sizes : tuple of float
        How many values each run's statistic was taken from (successful requests for a
        quantile, requests for a rate), for the sampling variance inside ``variance`` (see
        :meth:`sampling_variance`); empty when unknown. Runs compared that hold more
        sampling variance than that add the difference: a history of large runs says little
        about the sampling error of a small one (see :func:`compare_runs`).
    over_time : bool
        Measured on runs spread over days (a combination's history): it then replaces the
        prior's floor (see :func:`compare_runs`).
    sampling : float or None
        The mean sampling variance inside ``variance`` when it is known directly (a prior
        pooled over endpoints, see :func:`moderated_noise`), instead of from ``sizes``.
    same_runs : bool
        Measured on the baseline runs themselves (other endpoints' spreads over them): it
        weighs ``df`` in the pooled spread but adds no degrees of freedom to the reference,
        the endpoints sharing the runs' effects (see :func:`moderated_noise`).
    """

    relative: float = DEFAULT_RUN_NOISE
    absolute: float = 0.0
    variance: float | None = None
    df: float = math.inf
    source: str = ""
    sizes: tuple[float, ...] = ()
    over_time: bool = False
    sampling: float | None = None
    same_runs: bool = False

    @classmethod
    def prior(cls, relative: float, absolute: float = 0.0) -> RunNoise:
        """A configured prior (``--run-noise``)."""
        if not (math.isfinite(relative) and relative >= 0 and absolute >= 0):
            raise ValueError(f"run noise must be >= 0, got {relative} and {absolute}")
        jitter = f" + {absolute:g} abs." if absolute else ""
        return cls(relative, absolute, source=f"prior {relative:.0%}{jitter}")

    @classmethod
    def measured(
        cls,
        values: ArrayLike,
        *,
        scale: Scale = "log",
        source: str,
        counts: ArrayLike | None = None,
    ) -> RunNoise | None:
        r"""The spread of per-run statistics of earlier identical-setup runs (history).

        Returns :math:`S^2 = \operatorname{var}(g(x_i))` with :math:`n - 1` df, or ``None``
        with fewer than 2 usable values. ``counts`` are the values behind each run's
        statistic (its requests; seconds for a throughput), kept as ``sizes`` for the
        sampling variance inside :math:`S^2`; runs without a positive count are then left
        out. Rates on the arcsine scale need them, for their double arcsine (see
        :func:`compare_runs`).
        """
        x = np.asarray(values, dtype=float)
        keep = _in_domain(x, scale)
        n = np.ones_like(x)
        if counts is not None:
            n = np.asarray(counts, dtype=float)
            keep &= np.isfinite(n) & (n > 0)
        elif scale == "arcsine":
            raise ValueError("rates on the arcsine scale need their runs' counts")
        if scale == "arcsine":
            y = _centred_double_arcsine(x[keep], n[keep])
        else:
            y = _transformed(x[keep], scale)
        if y.size < 2:
            return None
        return cls(
            variance=_spread(y),
            df=y.size - 1,
            source=source,
            sizes=tuple(n[keep].tolist()) if counts is not None else (),
            over_time=True,
        )

    def sampling_variance(self, scale: Scale, per_value: float) -> float:
        r"""The measured runs' mean sampling variance, inside ``variance``: on the arcsine
        scale :math:`\overline{1/(4n_i+2)}` (see :func:`compare_runs`), elsewhere
        :math:`c\,\overline{1/n_i}` with ``per_value`` :math:`c = v\,n` read off the baseline
        runs (a quantile's sampling variance falls as :math:`1/n` for a distribution of
        the same shape; the log scale makes it free of the level); ``sampling`` when set; 0
        without either."""
        if self.sampling is not None:
            return self.sampling
        if not self.sizes:
            return 0.0
        n = np.asarray(self.sizes, dtype=float)
        if scale == "arcsine":
            return float(np.mean(1 / (4 * n + 2)))
        return per_value * float(np.mean(1 / n)) if math.isfinite(per_value) else 0.0

    def run_variance(self, level: float, sampling: float, scale: Scale) -> float:
        r"""Variance of one run's transformed statistic at ``level`` (the runs compared; see
        :func:`compare_runs`): :math:`S^2_h` when measured, else :math:`\tau^2 + v` with the
        prior's :math:`\tau^2 = \ln^2(1 + r) + (a / \text{level})^2` on the log scale,
        :math:`\tau^2 = (r\,\text{level})^2 + a^2` on the identity scale, and on the arcsine
        scale the squared distances of a rate :math:`r` times and :math:`a` above the level,
        :math:`\tau^2 = (h(\text{level}\,(1 + r)) - h(\text{level}))^2 + (h(\text{level}
        + a) - h(\text{level}))^2`, :math:`h(p) = \arcsin\sqrt{\min(p, 1)}` (what the
        double arcsine of a run of many requests tends to; about
        :math:`r^2\,\text{level} / 4` for small rates)."""
        if self.variance is not None:
            return self.variance
        if scale == "log":
            jitter = self.absolute / level if level > 0 else math.inf
            return math.log1p(self.relative) ** 2 + jitter**2 + sampling
        if scale == "arcsine":
            h = _transformed([level, level * (1 + self.relative), level + self.absolute], scale)
            return float(np.sum((h[1:] - h[0]) ** 2)) + sampling
        return (self.relative * level) ** 2 + self.absolute**2 + sampling


@dataclass(frozen=True)
class Comparison:
    r"""Outcome of comparing one statistic of a candidate run with its baseline runs.

    Attributes
    ----------
    statistic : str
        ``"median"``, ``"pNN"`` (e.g. ``"p95"``), ``"mean"``, ``"rate"``, ``"paired"`` ...
    baseline, candidate : float
        The statistic of the baseline (the back-transformed mean over its runs) and of the
        candidate.
    change : float
        Positive when the candidate is worse. Log scale: :math:`s\,(e^{d} - 1)` with
        :math:`d = g(c) - \overline{g(b)}` (relative); identity scale: :math:`s\,d`;
        arcsine scale: :math:`s\,(c - g^{-1}(\overline{g(b)}))`, the difference of the rates.
        :math:`s = +1` when higher is worse, :math:`-1` when lower is worse (throughput).
    ci_low, ci_high : float
        :math:`1 - \alpha` confidence interval of ``change``, same orientation and scale.
    p_value : float
        Two-sided p-value of no systematic difference, not adjusted for multiple testing.
    n_baseline, n_candidate : int
        Values used on each side (all baseline runs together).
    regression, improvement : bool
        Worse (better) by more than the threshold, significant at ``alpha`` and material
        (see :func:`compare_runs`). Callers that adjust p-values recompute them.
    suspect : bool
        The candidate could not be tested (too few values for its statistic's sampling
        variance) where its baseline runs could, and it is worse by more than the threshold
        and material even at its order-statistic bound (:attr:`RunStatistic.lower` when
        higher is worse), by more than the run noise allows (that bound tested against the
        spread of a new run without sampling error, :func:`compare_runs`' variance with
        :math:`v_c = 0`, e.g. :math:`\sqrt{(S^2 - \bar v)_+ + S^2/k}`, on its
        Welch-Satterthwaite df): a change to look at, not a regression.
    noise : str
        Where the run-to-run noise came from (``"3 baseline runs"``, ``"prior 10 %"`` ...).
    df : float
        Degrees of freedom of the reference t distribution (``inf``: normal).
    """

    statistic: str
    baseline: float
    candidate: float
    change: float
    ci_low: float
    ci_high: float
    p_value: float
    n_baseline: int
    n_candidate: int
    regression: bool
    improvement: bool = False
    suspect: bool = False
    noise: str = ""
    df: float = math.inf

    def as_dict(self) -> dict[str, object]:
        """Return the fields as a JSON-serialisable dict (plain ``float``/``int``/``bool``)."""
        return dataclasses.asdict(self)


# A candidate with this many times the baseline runs' values (requests; their harmonic mean)
# is judged with their sampling variance when their spread is measured (see compare_runs).
LARGER_CANDIDATE = 2.0


def compare_runs(
    baseline: Sequence[RunStatistic],
    candidate: RunStatistic,
    *,
    statistic: str,
    scale: Scale = "log",
    higher_is_worse: bool = True,
    threshold: float = 0.20,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    prior: RunNoise | None = None,
    history: RunNoise | None = None,
    baseline_apart: bool = False,
) -> Comparison:
    r"""Compare a candidate run's statistic with its baseline runs under a random run effect.

    Parameters
    ----------
    baseline : sequence of RunStatistic
        One per baseline run (see :func:`quantile_statistics`, :func:`mean_statistic`,
        :func:`rate_statistic`, :func:`series_statistic`). Runs with a non-finite value, or a
        non-positive one on the log scale, are left out.
    candidate : RunStatistic
        The candidate run's statistic.
    statistic : str
        Its name, reported in the result.
    scale : {"log", "identity", "arcsine"}
        ``"log"`` for positive statistics that move by factors (latencies, throughput,
        resources), ``"arcsine"`` for rates of events among ``n`` (an error rate of 0 has no
        logarithm; the double arcsine of :func:`_run_values` makes the binomial sampling
        variance :math:`1/(4n+2)` at any rate, where the rate's own :math:`p(1-p)/n` is 0
        for a run without errors), ``"identity"`` for other differences.
    higher_is_worse : bool
        ``True`` for latencies, error rates and resources, ``False`` for throughput.
    threshold : float
        Smallest worsening that counts: relative on every scale (on the identity and arcsine
        scales, relative to the baseline value).
    alpha : float
        Significance level; the CI has coverage :math:`1 - \alpha`.
    min_effect : float
        Smallest absolute worsening, in the metric's units, that counts.
    prior : RunNoise, optional
        The run noise assumed with one baseline run and no history (default: 10 %; the
        verdicts pass each metric's, 30 % for error rates).
    history : RunNoise, optional
        The measured per-run variance of this statistic in the combination's earlier runs.
    baseline_apart : bool
        The baseline runs were taken on separate occasions (consecutive starts at least
        :data:`SEPARATE_OCCASIONS_H` hours apart, see :func:`taken_apart`): their spread then
        measures the run noise on its own, like a history over days.

    Returns
    -------
    Comparison

    Notes
    -----
    With :math:`y_i = g(\hat\theta_i)` for the :math:`k` baseline runs (sampling variances
    :math:`v_i`), :math:`y_c` for the candidate (:math:`v_c`), and the model
    :math:`y = \mu + \delta\,[\text{candidate}] + u + e`, run effect
    :math:`u \sim N(0, \tau^2)`, sampling error :math:`e \sim N(0, v)`:

    .. math::

        \hat\delta = y_c - \bar y, \qquad
        \widehat{\operatorname{Var}}(\hat\delta) = \frac{S^2}{k} + S^2 + v_c - \bar v,
        \ \text{or } \frac{S^2}{k} + S^2\,\frac{v_c}{\bar v}
        \text{ if } v_c < \bar v \text{ and } S^2 < \bar v

    where :math:`S^2` estimates the per-run variance :math:`\tau^2 + \bar v` (a new run's run
    effect does not depend on its size: a candidate with more sampling variance adds the
    difference; with less, it is subtracted, or the whole of :math:`S^2` scaled down when it
    is below :math:`\bar v`, all sampling):

    - measured: with history (:math:`S^2_h` on :math:`\nu_h` df) and/or :math:`k \ge 2`
      baseline runs (sample variance :math:`S^2_b` on :math:`k - 1` df), the pooled
      :math:`S^2 = (\nu_h S^2_h + (k - 1) S^2_b) / \nu`, :math:`\nu = \nu_h + k - 1`, t
      reference on :math:`\nu` df (normal when :math:`\nu < 2`); a history whose runs'
      sizes :math:`n_i` are known and that holds less sampling variance than the runs
      compared gets the difference, :math:`S^2_h \leftarrow S^2_h + (\bar v - \bar
      v_h)_+`, with its runs' own :math:`\bar v_h = c\,\overline{1/n_i}` and :math:`c`
      the mean :math:`v\,n` of the baseline runs (see :meth:`RunNoise.sampling_variance`;
      for rates :math:`\bar v_h = \overline{1/(4n_i+2)}`, exact, and :math:`S^2_h` no
      less than it, nor :math:`S^2_b` less than :math:`\bar v` unless the runs agree
      exactly: a rate's runs cannot vary less than their sampling);
    - but never less than the prior :math:`\tau_0^2 + \bar v` (see
      :meth:`RunNoise.run_variance`; for rates taken at the mean rate of all the runs
      compared, as under no change), normal reference, unless runs spread over days measured
      it with 2+ df (a history, ``history.over_time``, or baseline runs taken apart,
      ``baseline_apart``): runs taken back to back agree more than runs days apart. With one
      baseline run and no history the prior is all there is.

    Only the :math:`S^2` part of the variance is uncertain; the reference t distribution has
    the Welch-Satterthwaite degrees of freedom
    :math:`\nu\,(\widehat{\operatorname{Var}} / A)^2` with :math:`A` that part
    (:math:`S^2 (1 + 1/k)`, or :math:`S^2 (1/k + v_c/\bar v)`), evaluated at
    :math:`\max(S^2, \bar v)` (a chance low :math:`S^2` would let the known part dominate and
    the reference turn normal just when the spread is understated), so a candidate whose own
    sampling variance dominates (an error rate that went from 0 to 6 %) is not judged on the
    baseline runs' 2 df alone. The :math:`(\bar v - \bar v_h)_+` a history gets is known
    too, not part of :math:`A` (with it the intervals of runs of 200 requests on a history of
    runs of 5,000 covered 97-99 %, 94-98 % without). A candidate of at least
    :data:`LARGER_CANDIDATE` times the baseline runs' values (their harmonic mean) is judged
    as if it had :math:`v_c = \bar v` when the spread is measured (its variance overstated,
    a valid test): subtracted, the known :math:`v_c - \bar v` collapsed those degrees of
    freedom (3 runs of 2,000 requests, a candidate of 50,000: 2 -> 0.16).

    Runs that agree exactly (:math:`S^2 = 0`: no error in any of them and of one size, the
    same whole-millisecond percentile) measured no spread: the sampling variances alone,
    :math:`v_c + \bar v / k`, normal reference.

    On the arcsine scale each run's double arcsine :math:`t_i` is taken less its mean at the
    pooled rate of all the runs compared, :math:`y_i = t_i - m(\hat p, n_i)`,
    :math:`\hat p = \sum x / \sum n`, :math:`m(p, n)` the mean of :math:`t` over a
    binomial count of events (:func:`_expected_double_arcsine`): at one rate, runs of other
    sizes sit at other levels. The interval is read at the candidate's size from the
    baseline's mean rate :math:`\bar b`, :math:`t^{-1}(t(\bar b, n_c) + \phi(\hat\delta
    \pm h), n_c) - \bar b` (Miller's inverse), :math:`\phi` monotone with :math:`\phi(0) =
    0` and :math:`\phi(\hat\delta) = D = t(c, n_c) - t(\bar b, n_c)`, the change shown on
    that scale, where the two have one sign (:func:`_towards`): it holds 0 exactly when
    :math:`p \ge \alpha`, and then the change shown.

    With equal sampling variances and no history this is the t test of a new observation
    against the prediction interval of :math:`k` runs, exact under normality:
    :math:`\hat\delta / (S_b\sqrt{1 + 1/k}) \sim t_{k-1}`. The p-value is
    :math:`2\,P(t_\nu > |\hat\delta| / \widehat{se})`, the CI
    :math:`\hat\delta \pm t_{\nu, 1-\alpha/2}\,\widehat{se}`, back-transformed.

    A **regression** needs all of: the estimated worsening above the threshold
    (:math:`\text{change} > \text{threshold}`; on the identity and arcsine scales
    :math:`s\hat\delta > \text{threshold}\cdot\bar\theta_b`), :math:`p < \alpha`, an
    absolute worsening of at least ``min_effect`` and larger than the resolution of the
    measured values (a whole-millisecond percentile moving one step is not evidence). Like
    the threshold, these bars apply to the estimates: a true shift of exactly one step (every
    request 1 ms slower) is flagged about half the time, as is a true change of exactly the
    threshold; requiring the CI to clear one step instead cost a third of the recall on
    whole-millisecond runs at +50 % (bench/README.md, "Quantized latencies"). An
    **improvement** is the mirror image.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    usable = [r for r in baseline if _usable(r, scale)]
    n_base = sum(r.n for r in usable)
    if not usable or not _valued(candidate, scale):
        # The values shown stand for the runs behind them: n counts those runs' values.
        reported = [r for r in baseline if math.isfinite(r.value)]
        base_value = float(np.mean([r.value for r in reported])) if reported else math.nan
        n_reported = sum(r.n for r in reported)
        return _untested(statistic, base_value, candidate.value, n_reported, candidate.n)
    y = _run_values(usable, scale)
    # The baseline's value: back-transformed on the log scale, the mean rate otherwise.
    base_value = math.exp(y.mean()) if scale == "log" else float(np.mean([r.value for r in usable]))
    y_c = float(_run_values([candidate], scale)[0])
    d = y_c - float(y.mean())
    if scale == "arcsine":
        # A rate's double arcsine depends on n: at one rate, runs of other sizes sit at other
        # levels (0 of 200 against 0 of 50,000 read as a change). Each run is compared less
        # its expected value at the rate of all the runs, as under no change. The baseline's
        # mean rate transformed at the candidate's size instead lost the small runs' offset
        # and leaned to "worse" (3 runs of 100 requests against 50,000 at 0.8 % errors: 8.3 %
        # regressions, where Fisher's test finds 3 % significant; bench/rate_sizes.py).
        centred = _centred_double_arcsine(
            [*(r.value for r in usable), candidate.value], [*(r.n for r in usable), candidate.n]
        )
        y = centred[:-1]
        d = float(centred[-1] - y.mean())
    # What the candidate's transformed value would be under no change.
    y_ref = y_c - d
    sign = 1.0 if higher_is_worse else -1.0
    shift = candidate.value - base_value
    change, bar = _change_and_bar(d, shift, sign, scale, threshold, base_value)
    step = max(candidate.resolution, *(r.resolution for r in usable))
    worse, better = _beyond(change, sign * shift, bar, min_effect, step)
    v = np.array([_sampling_variance(r, scale) for r in usable])
    v_c, k, v_bar = _sampling_variance(candidate, scale), y.size, float(v.mean())
    # A rate's prior spread is a share of its level, taken at the level of all the runs
    # compared, as under no change (the pooled rate of a two-proportion test): at the
    # baseline's alone, a baseline run that came out with few errors would understate the
    # noise just when the candidate looks worse (12 % false alarms at one baseline run of
    # 50,000 requests). On the log scale the prior is relative whatever the level; only the
    # latencies' 0.5 ms of jitter is taken at the baseline's.
    level = base_value
    if scale != "log":
        level = float(np.mean([*(r.value for r in usable), candidate.value]))
    # The baseline runs' sampling variance times the values behind it, for a history of runs
    # of other sizes: the baseline's alone, like v_bar (a whole-millisecond quantile's
    # rounding term does not fall as 1/n, and a large candidate would inflate it).
    per_value = float(np.mean(v * np.array([r.n for r in usable])))
    pooled, df, noise, added = _per_run_variance(
        y, v_bar, level, scale, prior, history, baseline_apart, per_value
    )
    if not _usable(candidate, scale):
        # The baseline runs can be tested and the candidate cannot (a run of 15 requests):
        # no test, but ten times slower must not read as "ok". Its quantile as it stands
        # moves 10-25 % between identical runs of 15 requests: the bound it exceeds with
        # 97.5 % confidence must be worse, and by more than the run noise allows. (A
        # statistic no run can test, the p99 of 250 requests, moves 20-100 % between
        # identical runs: not flagged.)
        bound = candidate.lower if higher_is_worse else candidate.upper
        bound = candidate.value if math.isnan(bound) else bound
        suspect = bool(_in_domain(bound, scale))
        if suspect:
            d_bound = float(_run_values([dataclasses.replace(candidate, value=bound)], scale)[0])
            d_bound -= y_ref
            change_bound, _ = _change_and_bar(
                d_bound, bound - base_value, sign, scale, threshold, base_value
            )
            beyond, _ = _beyond(change_bound, sign * (bound - base_value), bar, min_effect, step)
            # The bound carries the candidate's sampling error; the run effect and the
            # baseline mean's error remain: the spread of a new run without sampling error.
            se_run, df_run = _new_run_spread(pooled, v_bar, 0.0, k, df, added)
            suspect = beyond and (
                se_run == 0 or sign * d_bound / se_run > float(_t_ppf(1 - alpha / 2, df_run))
            )
        untested = _untested(statistic, base_value, candidate.value, n_base, candidate.n)
        return dataclasses.replace(untested, change=change, suspect=suspect)
    # A candidate of at least twice the baseline runs' requests (their harmonic mean, which
    # sets v_bar; the values behind each statistic: seconds for a throughput) is judged with
    # their sampling variance when the spread is measured. Its smaller one, subtracted from
    # S^2, collapsed Welch-Satterthwaite's degrees of freedom (3 runs of 2,000 requests and a
    # candidate of 50,000: 2 -> 0.16 df, and a doubled error rate was found in 0.2 % of
    # runs), and where S^2 fell below v_bar the scaled-down spread took 11-13 % of unchanged
    # runs for regressions (the diff review). Its variance is then overstated: a valid test
    # on the full degrees of freedom. By the requests, not the estimated variances: runs of
    # one size differ in those by chance, and judged so they lost 3-11 points of recall in
    # the calibration. A prior is known, and so are the sampling variances of runs that
    # agree exactly, and a spread on 1 df is taken as known: subtracting is exact there.
    larger = candidate.n >= LARGER_CANDIDATE / np.mean([1 / r.n for r in usable])
    measured_spread = math.isfinite(df) and pooled > added
    v_judged = max(v_c, v_bar) if larger and measured_spread else v_c
    se, df = _new_run_spread(pooled, v_bar, v_judged, k, df, added)
    if se > 0:
        p_value = float(2 * _t_sf(abs(d) / se, df))
        half = float(_t_ppf(1 - alpha / 2, df)) * se
    else:
        p_value, half = float(d == 0), 0.0
    if scale == "log":
        # A t on a fraction of a degree of freedom (a run effect barely told from the
        # sampling variance) has an unbounded interval: infinite, not a warning.
        with np.errstate(over="ignore"):
            ci_low, ci_high = sorted(sign * np.expm1([d - half, d + half]))
    elif scale == "arcsine":
        # The candidate's rate at the ends of its interval less the baseline's, both read at
        # the candidate's size from the baseline's mean rate, the test's difference d taken
        # onto the change shown there, D (see _towards): 0 maps onto 0 and, where d and D
        # have one sign, d onto D, so the interval holds 0 exactly when p >= alpha, holds the
        # change shown, and stays within the rates 0 to 1. Read from the test's own reference
        # y_ref, the change shown fell outside a quarter of the intervals of a candidate of
        # 500 requests against runs of 50,000 at 0.2 % (bench/rate_sizes.py); not taken onto
        # D, out of 61 % of those of +10 points over runs of 100 without an error (the diff
        # review).
        shown = float(_double_arcsine(base_value, candidate.n))
        ends = [
            _freeman_tukey_inverse(shown + _towards(e, d, y_c - shown), candidate.n)
            for e in (d - half, d + half)
        ]
        ci_low, ci_high = sorted(sign * (np.array(ends) - base_value))
    else:
        ci_low, ci_high = sorted(sign * np.array([d - half, d + half]))
    significant = p_value < alpha
    return Comparison(
        statistic=statistic,
        baseline=base_value,
        candidate=float(candidate.value),
        change=float(change),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=p_value,
        n_baseline=int(n_base),
        n_candidate=int(candidate.n),
        regression=bool(worse and significant),
        improvement=bool(better and significant),
        noise=noise,
        df=float(df),
    )


def _towards(e: float, d: float, shown: float) -> float:
    r"""A difference :math:`e` on the test's scale, where the estimate is :math:`d`, taken onto
    the scale of the change shown, :math:`D`: :math:`e\,D/d` between 0 and :math:`d`,
    :math:`e + D - d` beyond :math:`d`, :math:`e` on the other side of 0; :math:`e` itself
    unless :math:`d` and :math:`D` have one sign. Monotone, 0 at 0 and :math:`D` at :math:`d`,
    and the width beyond :math:`d` kept: scaled as a whole, a :math:`d` near 0 made intervals
    of every rate from 0 to 100 % (the diff review)."""
    if d == 0 or d * shown <= 0 or e * d <= 0:
        return e
    return e * shown / d if abs(e) <= abs(d) else e + shown - d


def _new_run_spread(
    pooled: float, v_bar: float, v_c: float, k: int, df: float, added: float = 0.0
) -> tuple[float, float]:
    """Standard error of a new run's transformed statistic (sampling variance ``v_c``) minus
    the mean of ``k`` baseline runs, and its Welch-Satterthwaite degrees of freedom, from the
    pooled per-run variance ``pooled`` on ``df`` df, of which ``added`` is known (the
    sampling variance runs compared have beyond a history's; see :func:`compare_runs`,
    Notes)."""
    # The spread of a new run around the mean of k runs is S^2 (1 + 1/k); the candidate's own
    # sampling variance replaces a typical baseline run's (no floor: S^2 is random and the t
    # reference accounts for that). A larger sampling variance adds to S^2: scaling all of
    # S^2 by v_c / v_bar would scale the run effect too (a candidate of 2,000 requests against
    # runs of 50,000 got an interval 5 times too wide). A smaller one is subtracted, unless
    # S^2 is below v_bar (the runs agree better than their sampling variances say): S^2 is
    # then all sampling and scales down as a whole.
    measured = pooled - added  # the part measured on df degrees of freedom
    estimated, known = measured * (1 + 1 / k), added * (1 + 1 / k) + v_c - v_bar
    if v_c < v_bar and pooled < v_bar:
        estimated, known = pooled * (1 / k + v_c / v_bar), 0.0
    if measured == 0:
        # Runs that agree exactly (no error in any of them, the same whole-millisecond
        # percentile) measured no spread at all: the sampling variances stand, the candidate's
        # and the baseline mean's (scaled by S^2 / v_bar the candidate's was 0, and any
        # difference had p = 0).
        estimated, known = 0.0, v_c + v_bar / k
    se = math.sqrt(estimated + known)
    # Welch-Satterthwaite: only the S^2 part is uncertain on df degrees of freedom; the
    # candidate's surplus of sampling variance is known (from its requests), and so is the
    # baseline runs' surplus over a history's. The df are taken at S^2 no less than the
    # sampling variance of the runs it was measured on (a per-run variance is never below
    # it): a small S^2 by chance would otherwise make the known part dominate and the
    # reference normal exactly when S^2 understates the spread.
    if math.isfinite(df) and estimated > 0:
        at_least = estimated * max(1.0, (v_bar - added) / (pooled - added))
        df = df * ((at_least + known) / at_least) ** 2
    elif math.isfinite(df):
        df = math.inf
    return se, df


def _per_run_variance(
    y: np.ndarray,
    v_bar: float,
    level: float,
    scale: Scale,
    prior: RunNoise | None,
    history: RunNoise | None,
    baseline_apart: bool = False,
    per_value: float = math.nan,
) -> tuple[float, float, str, float]:
    r"""Pooled per-run variance :math:`S^2`, its degrees of freedom, the words for its source
    and the part of it that is known, not measured (see :func:`compare_runs`, Notes);
    ``per_value`` is :math:`v\,n` of the baseline runs (see
    :meth:`RunNoise.sampling_variance`)."""
    k = y.size
    sources, df, ss, added = [], 0.0, 0.0, 0.0
    if history is not None and history.variance is not None and history.df >= 1:
        sources.append(history.source)
        # Runs compared with more sampling variance than the history's add the difference.
        # With less, the history's spread is kept whole: its run effect alone, S^2_h less its
        # sampling, is known to fewer degrees of freedom than S^2_h (runs of 200 requests
        # hardly tell a 3 % run effect), and taken on S^2_h's its intervals covered 80-88 %.
        spread = history.variance
        if history.sizes or history.sampling is not None:
            own = history.sampling_variance(scale, per_value)
            added = history.df * max(v_bar - own, 0.0)
            if scale == "arcsine":
                # A rate's sampling variance is known exactly: its runs cannot vary less (a
                # history of 5 runs with one or two errors each often measures less). Still
                # a measured spread: taken as known, a chance low one turned the reference
                # normal just when it understated the run effect.
                spread = max(spread, own)
        df, ss = history.df, history.df * spread + added
    if k >= 2:
        sources.append(f"{k} baseline runs")
        spread = _spread(y)
        if scale == "arcsine" and spread > 0:
            # The same for baseline runs: three without an error, of 199, 200 and 201
            # requests, spread by 1e-8 on the double arcsine, and one error in the candidate
            # was p = 4e-6 (0 of 600 against 1 of 200: Fisher's p = 0.25).
            spread = max(spread, v_bar)
        df, ss = df + k - 1, ss + spread * (k - 1)
    prior = prior or RunNoise.prior(DEFAULT_RUN_NOISE)
    assumed = prior.run_variance(level, v_bar, scale)
    if df == 0:
        return assumed, math.inf, prior.source, 0.0
    measured, known = ss / df, added / df
    if history is not None and history.same_runs and k >= 2:
        # Other endpoints' spreads over these runs steady this one's, but know the runs'
        # shared effects no better than the runs do (see moderated_noise).
        df = k - 1.0
    words = " + ".join(sources) + f" ({df:.3g} df)"
    over_time = (history is not None and history.over_time and history.df >= MIN_MEASURED_DF) or (
        baseline_apart and k >= 2 and df >= MIN_MEASURED_DF
    )
    if measured <= assumed and not over_time:
        # Runs taken back to back agree more than runs days apart: the prior is a floor.
        return assumed, math.inf, f"{prior.source} (at least; {words} measured less)", 0.0
    if df >= MIN_MEASURED_DF:
        return measured, df, words, known
    # One degree of freedom says little about a spread (a t test on 1 df needs a change 12.7
    # standard errors away): the larger measured spread, taken as known.
    return measured, math.inf, words, known


def taken_apart(starts: Sequence[datetime], hours: float = SEPARATE_OCCASIONS_H) -> bool:
    r"""Whether runs started on separate occasions: every two consecutive starts at least
    ``hours`` apart, :math:`\min_i (t_{(i+1)} - t_{(i)}) \ge` ``hours`` (``False`` with
    fewer than 2 runs)."""
    ordered = sorted(starts)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    return bool(gaps) and min(gaps) >= timedelta(hours=hours)


def run_spread(baseline: Sequence[RunStatistic], scale: Scale = "log") -> tuple[float, int, float]:
    r"""The sample variance :math:`S^2_b` of the transformed statistic over the usable baseline
    runs (NaN with fewer than 2), how many runs that is, and their mean sampling variance
    :math:`\bar v` (see :func:`compare_runs`; rates centred at the baseline runs' own pooled
    rate, where :func:`compare_runs` takes the candidate's errors in too)."""
    usable = [r for r in baseline if _usable(r, scale)]
    if len(usable) < 2:
        return math.nan, len(usable), math.nan
    sampling = float(np.mean([_sampling_variance(r, scale) for r in usable]))
    if scale == "arcsine":
        y = _centred_double_arcsine([r.value for r in usable], [r.n for r in usable])
    else:
        y = _run_values(usable, scale)
    return _spread(y), len(usable), sampling


def _spread(y: np.ndarray) -> float:
    """The sample variance of ``y``, exactly 0 when its values are equal to 12 digits (the
    mean of equal floats can miss them by a rounding error, and runs that agree exactly are
    judged on their sampling variances alone, see :func:`compare_runs`)."""
    # Equal up to rounding (an interval mixture's quantile found by root-finding differs in
    # its last digits from run to run): no spread either.
    return 0.0 if np.ptp(y) <= 1e-12 * np.max(np.abs(y)) else float(np.var(y, ddof=1))


def moderated_noise(
    spreads: ArrayLike, df: float, *, source: str, sampling: ArrayLike | None = None
) -> RunNoise | None:
    r"""An empirical-Bayes prior for the run noise of one statistic, from its spread over the
    same baseline runs on many endpoints (limma's ``fitFDist``, Smyth 2004).

    A run's noise is mostly the machine's (neighbours, caches, frequency scaling), shared by
    its endpoints, but 3 baseline runs say little about it for one endpoint (2 df). Pooled
    with the spreads of the other endpoints, each endpoint's variance becomes
    :math:`\tilde S^2_j = (d_0 s_0^2 + (k-1) S^2_j) / (d_0 + k - 1)` on :math:`d_0 + k - 1` df
    (pass the result as ``history`` to :func:`compare_runs`); the more the endpoints' spreads
    disagree, the smaller :math:`d_0` and the less they are pooled.

    Parameters
    ----------
    spreads : array_like
        :math:`S^2_j`, each on ``df`` degrees of freedom; non-finite and non-positive ones are
        left out.
    df : float
        :math:`k - 1`.
    source : str
        Words for the verdict row.
    sampling : array_like, optional
        :math:`\bar v_j`, the mean sampling variance of each spread's runs.

    Returns
    -------
    RunNoise or None
        ``variance`` :math:`s_0^2` on ``df`` :math:`d_0`, ``sampling`` the median
        :math:`\bar v_j` of the spreads pooled; ``None`` with fewer than 3 spreads.

    Notes
    -----
    With :math:`e_j = \ln S^2_j - \psi(d/2) + \ln(d/2)` (:math:`\psi` the digamma function),
    the moments of :math:`\ln S^2_j` under :math:`S^2_j \sim s_0^2 F_{d, d_0}` give

    .. math:: \psi'(d_0/2) = \operatorname{var}(e) - \psi'(d/2), \qquad
              s_0^2 = \exp\left(\bar e + \psi(d_0/2) - \ln(d_0/2)\right)

    :math:`d_0` is capped at the :math:`G (k - 1)` degrees of freedom the :math:`G` spreads
    hold together (and set to that when the right-hand side of the first is not positive): a
    prior estimated from a handful of endpoints is worth no more than their runs.

    limma's genes are independent; a run's endpoints are not: they share the run effects of
    the same :math:`k` runs, and when the run effect is all they share, together they know it
    to :math:`k - 1` degrees of freedom, not :math:`d_0 + k - 1`. The prior is therefore
    ``same_runs``: it steadies each endpoint's spread (weight :math:`d_0`) and the reference
    keeps the baseline runs' :math:`k - 1` df (see :func:`compare_runs`; with 2 baseline
    runs, 1 df, the pooled spread is taken as known, as any spread measured on one degree
    of freedom, and runs taken apart do not lift the prior's floor). Taken at
    :math:`d_0 + k - 1` (22 df for 10 endpoints of 3 nightly runs), unchanged runs were
    significant at 0.05 on 12 % of their endpoints (``bench/pooled_noise.py``, 3 % now).

    The spreads hold their runs' sampling variance: an endpoint with few requests, pooled
    with busy ones, was taken at their lower spread (26 % of its unchanged runs significant
    at 30 requests among 50,000). With ``sampling``, the prior says how much sampling it
    holds (the median :math:`\bar v_j`), and an endpoint whose runs hold more adds the
    difference (see ``history`` in :func:`compare_runs`).
    """
    s2 = np.asarray(spreads, dtype=float)
    keep = np.isfinite(s2) & (s2 > 0)
    s2 = s2[keep]
    if s2.size < 3 or df < 1:
        return None
    e = np.log(s2) - special.digamma(df / 2) + math.log(df / 2)
    excess = float(np.var(e, ddof=1)) - float(special.polygamma(1, df / 2))
    cap = s2.size * df
    d0 = min(2 * _trigamma_inverse(excess), cap) if excess > 0 else cap
    s0 = math.exp(float(e.mean()) + special.digamma(d0 / 2) - math.log(d0 / 2))
    held = None if sampling is None else float(np.median(np.asarray(sampling, float)[keep]))
    return RunNoise(variance=s0, df=d0, source=source, sampling=held, same_runs=True)


def _trigamma_inverse(x: float) -> float:
    """The y with trigamma(y) = x, by Newton's method as in limma's ``trigammaInverse``."""
    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(special.polygamma(1, y))
        step = tri * (1 - tri / x) / float(special.polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def _transformed(values: Sequence[float] | np.ndarray, scale: Scale) -> np.ndarray:
    r""":math:`g(x)`: the logarithm on the log scale, :math:`\arcsin\sqrt x` on the arcsine
    scale (:math:`x` capped at 1), the values themselves on the identity."""
    x = np.asarray(values, dtype=float)
    if scale == "log":
        return np.log(x)
    if scale == "arcsine":
        return np.arcsin(np.sqrt(np.minimum(x, 1.0)))
    return x


def _run_values(runs: Sequence[RunStatistic], scale: Scale) -> np.ndarray:
    r""":math:`g` of each run's statistic; a rate of :math:`x` events in :math:`n` on the
    arcsine scale is Freeman and Tukey's double arcsine
    :math:`\tfrac12[\arcsin\sqrt{x/(n+1)} + \arcsin\sqrt{(x+1)/(n+1)}]`, whose sampling
    variance is :math:`1/(4n+2)` down to a few events (the plain :math:`\arcsin\sqrt{x/n}`
    gave p < 0.05 in 17 % of identical runs of 1,000 requests at 0.2 % errors)."""
    values = np.array([r.value for r in runs], dtype=float)
    if scale != "arcsine":
        return _transformed(values, scale)
    return _double_arcsine(values, np.array([r.n for r in runs], dtype=float))


def _double_arcsine(rate: ArrayLike, n: ArrayLike) -> np.ndarray:
    """The double arcsine of :func:`_run_values` of rates among ``n``."""
    n = np.asarray(n, dtype=float)
    x = np.asarray(rate, dtype=float) * n
    return (np.arcsin(np.sqrt(x / (n + 1))) + np.arcsin(np.sqrt((x + 1) / (n + 1)))) / 2


def _centred_double_arcsine(rates: ArrayLike, n: ArrayLike) -> np.ndarray:
    r"""Each run's double arcsine (see :func:`_run_values`) less its expected value at the
    runs' pooled rate, :math:`t_i - m(\hat p, n_i)` with :math:`\hat p = \sum_i x_i /
    \sum_i n_i` (see :func:`_expected_double_arcsine`): runs of different sizes at one rate
    centre on 0."""
    rates, n = np.asarray(rates, dtype=float), np.asarray(n, dtype=float)
    pooled = float(np.sum(rates * n) / np.sum(n))
    return _double_arcsine(rates, n) - _expected_double_arcsine(pooled, n)


def _expected_double_arcsine(p: float, n: ArrayLike) -> np.ndarray:
    r"""The mean double arcsine (see :func:`_run_values`) of runs of :math:`n` requests at
    the rate :math:`p`,

    .. math::

        m(p, n) = \sum_x \binom{n}{x} p^x (1 - p)^{n - x}\, t(x, n),

    the sum over the counts within 12 standard deviations plus 12 of :math:`np` (the rest
    weighs less than 1e-26), :math:`t(x, n)` the double arcsine of :math:`x` events;
    :math:`n` rounded, at least 1."""
    out = []
    for size in np.atleast_1d(np.asarray(n, dtype=float)):
        size = float(max(round(size), 1))
        if not 0 < p < 1:
            out.append(float(_double_arcsine(min(max(p, 0.0), 1.0), size)))
            continue
        mean, sd = size * p, math.sqrt(size * p * (1 - p))
        x = np.arange(max(0, math.floor(mean - 12 * sd - 12)), min(size, mean + 12 * sd + 12) + 1)
        log_pmf = (
            special.gammaln(size + 1)
            - special.gammaln(x + 1)
            - special.gammaln(size - x + 1)
            + special.xlogy(x, p)
            + special.xlog1py(size - x, -p)
        )
        w = np.exp(log_pmf - log_pmf.max())
        out.append(float(np.sum(w * _double_arcsine(x / size, size)) / np.sum(w)))
    return np.array(out)


def _freeman_tukey_inverse(t: float, n: int) -> float:
    r"""The rate whose double arcsine (see :func:`_run_values`) with :math:`n` is :math:`t`:
    Miller's (1978) inverse, :math:`\tfrac12\{1 - \operatorname{sgn}(\cos 2t)
    [1 - (\sin 2t + (\sin 2t - 1/\sin 2t)/n)^2]^{1/2}\}`, 0 and 1 beyond the values of
    0 and :math:`n` events."""
    ends = _double_arcsine([0.0, 1.0], n)
    if t <= ends[0]:
        return 0.0
    if t >= ends[1]:
        return 1.0
    s = math.sin(2 * t)
    inner = max(1 - (s + (s - 1 / s) / n) ** 2, 0.0)
    return 0.5 * (1 - math.copysign(math.sqrt(inner), math.cos(2 * t)))


def _in_domain(x: ArrayLike, scale: Scale) -> np.ndarray:
    """Which values ``scale`` transforms: positive ones on the log scale, rates in [0, 1] on
    the arcsine scale, every finite value on the identity."""
    x = np.asarray(x, dtype=float)
    finite = np.isfinite(x)
    if scale == "log":
        return finite & (x > 0)
    if scale == "arcsine":
        return finite & (x >= 0) & (x <= 1)
    return finite


def _sampling_variance(run: RunStatistic, scale: Scale) -> float:
    """The run's sampling variance on ``scale``: :math:`1/(4n+2)` for a rate on the arcsine
    scale (Freeman and Tukey 1950, see :func:`_run_values`), its own elsewhere."""
    return 1 / (4 * run.n + 2) if scale == "arcsine" else run.variance


def _valued(run: RunStatistic, scale: Scale) -> bool:
    """The run has a value on ``scale`` (see :func:`_in_domain`)."""
    return bool(_in_domain(run.value, scale))


def _usable(run: RunStatistic, scale: Scale) -> bool:
    """The run has a value and its sampling variance: it can be tested."""
    return _valued(run, scale) and math.isfinite(run.variance) and run.n > 0


def _change_and_bar(
    d: float, shift: float, sign: float, scale: Scale, threshold: float, base_value: float
) -> tuple[float, float]:
    """The change (+ = worse) of a difference ``d`` of transformed statistics (``shift`` of
    the values), and the size it must exceed: relative on the log scale; on the others the
    difference of the values and a share of the baseline value."""
    if scale == "log":
        return sign * math.expm1(d), threshold
    return sign * shift, threshold * abs(base_value)


def _beyond(
    change: float, shift: float, bar: float, min_effect: float, step: float
) -> tuple[bool, bool]:
    """Whether a change is large enough to be a regression (worse) or an improvement
    (better), before any test: beyond ``bar``, at least ``min_effect`` in the metric's units
    and more than the resolution ``step`` of the values (``shift``: the oriented difference
    of the values, + = worse)."""
    # Each bar with a relative tolerance: the baseline's value comes back from the mean of
    # logarithms, so 5 ms in every baseline run reads 4.999999999999999 and a candidate at
    # 6 ms was "more than 20 %" and "more than one step" by a rounding error.
    slack = 1 + 1e-9
    material = abs(shift) * slack >= min_effect and abs(shift) > step * slack
    worse = change > bar * slack and shift > 0 and material
    return worse, change < -bar * slack and shift < 0 and material


def quantile_statistics(
    values: ArrayLike, statistics: Sequence[str], *, resolution: float | None = None
) -> list[RunStatistic]:
    r"""Mid-quantiles of one run's values and the sampling variance of their logarithms.

    Parameters
    ----------
    values : array_like
        The run's values (latencies in ms, resource samples ...); non-finite ones are dropped.
    statistics : sequence of str
        ``"median"`` or ``"pNN"`` (``"p50"``, ``"p95"``, ``"p99"``, ``"p99.9"``).
    resolution : float, optional
        Step of the values; detected with :func:`resolution_of` when not given.

    Returns
    -------
    list of RunStatistic
        In the order of ``statistics``; NaN values when fewer than 2 values remain, a NaN
        variance (not judged) when fewer than :data:`MIN_TAIL_COUNT` values lie beyond the
        quantile.

    Notes
    -----
    The mid-quantile at level :math:`q` interpolates linearly between the distinct values
    :math:`x_j` placed at their mid-distribution
    :math:`F_{mid}(x_j) = (\#\{x_i < x_j\} + \tfrac12\#\{x_i = x_j\}) / n` (Ma, Genton &
    Parzen 2011); without ties this is Hazen's :math:`(i - \tfrac12)/n` quantile.

    Its sampling variance on the log scale is the asymptotic
    :math:`q(1-q)/n \cdot (d \ln Q / dq)^2`, with the slope (the sparsity of the log values)
    estimated by a difference quotient over :math:`q \pm h` and Hall & Sheather's (1988)
    bandwidth, as in quantile regression (statsmodels' ``hall_sheather``), plus Sheppard's
    correction for values rounded to a step :math:`h_r`:

    .. math::

        h = n^{-1/3} z_{0.975}^{2/3}
            \left(\frac{1.5\,\phi(z_q)^2}{2 z_q^2 + 1}\right)^{1/3}, \qquad
        v = \frac{q(1-q)}{n}
            \left(\frac{\ln Q(q + h) - \ln Q(q - h)}{2h}\right)^2
            + \frac{h_r^2 / 12}{Q(q)^2}

    (levels clipped to [0, 1], the quotient taken over the clipped width).

    Values of 0 (a sub-step latency) are taken as :math:`h/2` on the log scale.

    A quantile with too few values beyond it to be tested gets distribution-free one-sided
    bounds (``lower``, ``upper``) at confidence :math:`\gamma` =
    :data:`SUSPECT_CONFIDENCE` from the order statistics :math:`x_{(1)} \le \dots \le
    x_{(n)}`: since :math:`P(x_{(j)} \le \xi_q) = P(B \ge j)` with
    :math:`B \sim \text{Binomial}(n, q)`,

    .. math::

        \text{lower} = x_{(j)},\ j = \max\{j : P(B \ge j) \ge \gamma\}, \qquad
        \text{upper} = x_{(u)},\ u = \min\{u : P(B \le u - 1) \ge \gamma\}

    (``-inf`` / ``inf`` when no order statistic reaches :math:`\gamma`: the median of 5 values
    has no lower bound at 97.5 %).
    """
    x = np.asarray(values, dtype=float)
    x = np.sort(x[np.isfinite(x)])
    levels = [_quantile_level(s) for s in statistics]
    if x.size < 2:
        return [RunStatistic(math.nan, math.nan, int(x.size)) for _ in levels]
    h = resolution_of(x) if resolution is None else resolution
    distinct, mid = _mid_distribution(x)
    out = _quantile_run_statistics(lambda qs: np.interp(qs, mid, distinct), x.size, levels, h)
    return _with_bounds(out, levels, lambda j: x[j - 1])


def _with_bounds(statistics: list[RunStatistic], levels: list[float], order) -> list[RunStatistic]:
    """``statistics`` with order-statistic bounds on the untestable ones (NaN variance, a
    value): ``order(j)`` is the :math:`j`-th smallest of the run's values (1-based)."""
    out = []
    for statistic, q in zip(statistics, levels, strict=True):
        if math.isnan(statistic.variance) and math.isfinite(statistic.value):
            low, high = _order_indices(statistic.n, q)
            statistic = dataclasses.replace(
                statistic,
                lower=float(order(low)) if low >= 1 else -math.inf,
                upper=float(order(high)) if high <= statistic.n else math.inf,
            )
        out.append(statistic)
    return out


def _order_indices(n: int, q: float) -> tuple[int, int]:
    """1-based ranks of the order statistics that bound the ``q``-quantile of ``n`` values
    from below and above at :data:`SUSPECT_CONFIDENCE` (see :func:`quantile_statistics`,
    Notes): 0 and ``n + 1`` when none does."""
    j = np.arange(1, n + 1)
    below = j[special.bdtrc(j - 1, n, q) >= SUSPECT_CONFIDENCE]  # P(B >= j)
    above = j[special.bdtr(j - 1, n, q) >= SUSPECT_CONFIDENCE]  # P(B <= j - 1)
    return int(below[-1]) if below.size else 0, int(above[0]) if above.size else n + 1


def interval_quantile_statistics(
    knots: ArrayLike,
    counts: ArrayLike,
    statistics: Sequence[str],
    *,
    sizes: ArrayLike | None = None,
    resolution: float | None = None,
) -> list[RunStatistic]:
    r"""Quantiles of one run known only by its intervals' quantiles (Artillery's 10 s
    summaries, Locust's stats history, a k6 summary), with the sampling variance of their
    logarithms.

    The run's distribution is the count-weighted mixture of the intervals' distributions
    (:func:`~metrics_pipeline.stats.quantiles.pooled_quantiles`: locally log-normal between
    the levels each interval reports); its quantile gets the variance
    :func:`quantile_statistics` gives per-request data, with :math:`n = \sum_i c_i` requests
    and the slope read off the mixture's quantile function. So an interval-only run is judged
    by the same model as a per-request one, rather than by the spread of its intervals'
    percentiles, which a few intervals of uneven size (2-4 per run for Artillery) cannot
    measure.

    Parameters
    ----------
    knots : array_like, shape (m, 6)
        Per interval min, p50, p90, p95, p99, max (``INTERVAL_LEVELS``), NaN where unknown.
    counts : array_like, shape (m,)
        Requests per interval.
    statistics : sequence of str
        As for :func:`quantile_statistics`.
    sizes : array_like, shape (m,), optional
        Requests each interval's percentiles describe, where more than its count (see
        :func:`~metrics_pipeline.stats.quantiles.pooled_quantiles`).
    resolution : float, optional
        Step of the measured values; detected from the intervals' min and max (the values the
        tool saw; its percentiles are interpolated) when not given. Values of 0 are taken as
        half of it.

    Returns
    -------
    list of RunStatistic
        In the order of ``statistics``: NaN when fewer than 2 requests have a value or when
        no interval reports the percentile asked for (a p99 the tool was not configured to
        write is not made up from p95 and max); a NaN variance (not judged) when fewer than
        :data:`MIN_TAIL_COUNT` requests lie beyond it, with the bounds of
        :func:`quantile_statistics` read off the mixture (the :math:`j`-th smallest request
        at the mixture's own level for it, Hazen's :math:`(j - \tfrac12) / n`).
    """
    levels = [_quantile_level(s) for s in statistics]
    mixture = _IntervalMixture(knots, counts, sizes, resolution)
    if mixture.n < 2:
        return [RunStatistic(math.nan, math.nan, mixture.n) for _ in levels]
    out = _quantile_run_statistics(mixture.quantiles, mixture.n, levels, mixture.resolution)
    out = [
        statistic if mixture.reports(q) else RunStatistic(math.nan, math.nan, mixture.n)
        for q, statistic in zip(levels, out, strict=True)
    ]
    # The mixture places the j-th smallest of n requests at Hazen's level (j - 1/2) / n (an
    # exact interval gives back its values).
    n = mixture.n
    return _with_bounds(out, levels, lambda j: mixture.quantiles([(j - 0.5) / n])[0])


def interval_percentiles(
    knots: ArrayLike,
    counts: ArrayLike,
    statistics: Sequence[str],
    *,
    sizes: ArrayLike | None = None,
) -> list[float]:
    r"""The percentiles a tool would have reported for all the requests of a run it only
    summarised per interval: what run summaries show for Artillery, Locust's stats history
    and k6 summaries.

    The run's requests are the mixture of :func:`interval_quantile_statistics`; of its
    :math:`N = \sum_i c_i` requests the percentile :math:`p` is taken as per-request
    summaries take it (numpy's default, type 7: rank :math:`(N - 1)p + 1`), i.e. the
    mixture's quantile at Hazen's level

    .. math:: l(p) = \frac{(N - 1)\,p + \tfrac12}{N}.

    A run of one interval (a k6 summary, Locust's ``_stats.csv``) gets the tool's own values
    back. Percentiles do not average: a count-weighted mean of the intervals' p95 lies below
    the run's when a slow tail fell unevenly over the intervals.

    Parameters
    ----------
    knots, counts, sizes : array_like
        As for :func:`interval_quantile_statistics`.
    statistics : sequence of str
        ``"median"`` or ``"pNN"``.

    Returns
    -------
    list of float
        In the order of ``statistics``; NaN when no request has a value or no interval
        reports the percentile.
    """
    levels = [_quantile_level(s) for s in statistics]
    mixture = _IntervalMixture(knots, counts, sizes, None)
    if mixture.n < 1:
        return [math.nan for _ in levels]
    n = mixture.n
    values = mixture.quantiles([((n - 1) * p + 0.5) / n for p in levels])
    # A percentile inside the requests a tool reported as 0 is 0, not the floor they were put
    # at for the logarithms.
    values = np.where(values <= mixture.floor * (1 + 1e-9), 0.0, values)
    return [
        float(value) if mixture.reports(p) else math.nan
        for p, value in zip(levels, values, strict=True)
    ]


class _IntervalMixture:
    """A run's requests known by its intervals' quantiles (see :func:`pooled_quantiles`), with
    the step of the values the tool saw (from the intervals' min and max: its percentiles are
    interpolated) when no ``resolution`` is given; values of 0 count as half of it."""

    def __init__(self, knots, counts, sizes, resolution: float | None) -> None:
        self.values = np.array(knots, dtype=float, ndmin=2)
        self.weights = np.asarray(counts, dtype=float)
        self.sizes = sizes
        self.used = used = (self.weights > 0) & np.isfinite(self.values).any(axis=1)
        self.n = int(self.weights[used].sum())
        if resolution is None:
            seen = self.values[:, [0, -1]]
            resolution = resolution_of(seen if np.isfinite(seen).any() else self.values)
        self.resolution = resolution
        self.reported = dict(
            zip(INTERVAL_LEVELS.values(), np.isfinite(self.values[used]).any(axis=0), strict=True)
        )

    @property
    def floor(self) -> float:
        """Where values of 0 are put for the logarithms: half the step, or half the smallest
        positive value for continuous ones."""
        if self.resolution > 0:
            return self.resolution / 2
        return log_floor(self.values[self.used])

    def quantiles(self, qs) -> np.ndarray:
        return pooled_quantiles(self.values, self.weights, qs, sizes=self.sizes, floor=self.floor)

    def reports(self, q: float) -> bool:
        """Whether some interval states the quantile ``q`` (other levels are not made up)."""
        return bool(self.reported.get(q, True))


def _quantile_run_statistics(quantile, n: int, levels: list[float], h: float) -> list[RunStatistic]:
    """The statistics of :func:`quantile_statistics` from a run's quantile function, called
    once for every level and its neighbours (a mixture's are found together)."""
    # Per level, the levels its value and slope are read at: itself alone when too few values
    # lie beyond it to say how far it may be off (reported, not judged), else low, q, high.
    asked = []
    for q in levels:
        if n * min(q, 1 - q) < MIN_TAIL_COUNT:
            asked.append((q,))
        else:
            width = _hall_sheather(n, q)
            asked.append((max(q - width, 0.0), q, min(q + width, 1.0)))
    values = iter(quantile([level for levels_of in asked for level in levels_of]))
    out = []
    for q, levels_of in zip(levels, asked, strict=True):
        if len(levels_of) == 1:
            out.append(RunStatistic(max(float(next(values)), h / 2), math.nan, n, h))
            continue
        low_q, _, high_q = levels_of
        low, value, high = next(values), next(values), next(values)
        floor = h / 2 if h > 0 else 0.0
        value_log = max(value, floor)
        if value_log <= 0:
            out.append(RunStatistic(float(value), math.nan, n, h))
            continue
        low, high = max(low, floor, value_log * 1e-9), max(high, floor, value_log * 1e-9)
        slope = (math.log(high) - math.log(low)) / (high_q - low_q)
        variance = q * (1 - q) / n * slope**2 + h**2 / 12 / value_log**2
        out.append(RunStatistic(float(value_log), variance, n, h))
    return out


def mean_statistic(values: ArrayLike) -> RunStatistic:
    r"""The arithmetic mean of one run's values, with the delta-method variance of its log,
    :math:`v = s^2 / (n\,\bar x^2)`."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return RunStatistic(math.nan, math.nan, int(x.size))
    mean = float(x.mean())
    variance = float(np.var(x, ddof=1)) / (x.size * mean**2) if mean > 0 else math.nan
    return RunStatistic(mean, variance, int(x.size))


def rate_statistic(events: int, total: int) -> RunStatistic:
    r"""An event rate :math:`e/n` of one run with the binomial variance of the rate at the
    Jeffreys-like :math:`\tilde r = (e + 1/2)/(n + 1)`, which stays positive at 0 events:
    :math:`v = \tilde r(1 - \tilde r)/n`."""
    if events < 0 or total < 0 or events > total:
        raise ValueError(f"need 0 <= events <= total, got {events} of {total}")
    if total == 0:
        return RunStatistic(math.nan, math.nan, 0)
    smoothed = (events + 0.5) / (total + 1)
    return RunStatistic(events / total, smoothed * (1 - smoothed) / total, int(total))


def count_rate_statistic(events: int, seconds: float) -> RunStatistic:
    r"""Events per second :math:`e/t` of one run known only by its count over a span (a tool's
    per-interval request counts), with the Poisson variance of its log, :math:`v = 1/e`: the
    variance :func:`mean_statistic` gives per-second counts of a Poisson stream,
    :math:`\bar x / (n \bar x^2) = 1/e`. Its size ``n`` is the span's seconds (at least 1),
    as for :func:`mean_statistic` of per-second counts: the unit a history of throughputs
    measures its runs' sampling error in (:meth:`RunNoise.sampling_variance`)."""
    if events <= 0 or not seconds > 0:
        return RunStatistic(math.nan, math.nan, 0)
    return RunStatistic(events / seconds, 1.0 / events, max(1, round(seconds)))


def series_statistic(values: ArrayLike) -> RunStatistic:
    r"""A run known only by a series of per-interval values (e.g. each 10 s's p95): their
    geometric mean :math:`e^{\bar\ell}` with :math:`\ell_i = \ln x_i`, and sampling variance
    :math:`\operatorname{var}(\ell)/m` from the :math:`m` intervals (0 for a single one:
    the run effect then carries all the spread)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0:
        return RunStatistic(math.nan, math.nan, 0)
    step = resolution_of(x)  # a change of one whole millisecond is no evidence here either
    if np.ptp(x) == 0:  # equal values: the value itself, not exp(log x) a rounding error off
        return RunStatistic(float(x[0]), 0.0, int(x.size), step)
    logs = np.log(x)
    variance = _spread(logs) / x.size if x.size >= 2 else 0.0
    return RunStatistic(float(np.exp(logs.mean())), variance, int(x.size), step)


def resolution_of(values: ArrayLike) -> float:
    """The coarsest of :data:`RESOLUTIONS` that every value is a whole multiple of (1.0 for
    JMeter's whole milliseconds), or 0 for continuous values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0
    for step in RESOLUTIONS:
        scaled = x / step
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return step
    return 0.0


# The t and normal distribution functions compare_runs needs, as scipy.stats computes them
# (``t.sf`` is ``special.stdtr(df, -x)``, ``t.ppf`` is ``special.stdtrit``, ``norm.ppf`` is
# ``special.ndtri``, with the same results outside the support and for invalid parameters)
# without importing scipy.stats, which takes half a second: the CI gate's ``compare`` pays it.


def _t_sf(x: float, df: float) -> float:
    """``scipy.stats.t.sf(x, df)``."""
    if not df > 0 or math.isnan(x):
        return math.nan
    if math.isinf(x):
        return 0.0 if x > 0 else 1.0
    return float(special.stdtr(df, -x))


def _t_ppf(q: float, df: float) -> float:
    """``scipy.stats.t.ppf(q, df)``."""
    if not (df > 0 and 0 <= q <= 1):
        return math.nan
    if q in (0, 1):
        return -math.inf if q == 0 else math.inf
    return float(special.stdtrit(df, q))


def _norm_ppf(q: float) -> float:
    """``scipy.stats.norm.ppf(q)``."""
    if not 0 <= q <= 1:
        return math.nan
    if q in (0, 1):
        return -math.inf if q == 0 else math.inf
    return float(special.ndtri(q))


def _norm_pdf(x: float) -> float:
    """``scipy.stats.norm.pdf(x)``: on a one-element array, as scipy computes it (numpy's
    ``exp`` of an array may differ from that of a scalar in the last bit)."""
    values = np.atleast_1d(np.asarray(x, dtype=np.float64))
    return float((np.exp(-(values**2) / 2.0) / np.sqrt(2 * np.pi))[0])


def _hall_sheather(n: int, q: float, alpha: float = 0.05) -> float:
    """Hall & Sheather's bandwidth for the sparsity at level ``q`` (see
    :func:`quantile_statistics`)."""
    z = _norm_ppf(q)
    ratio = 1.5 * _norm_pdf(z) ** 2 / (2 * z**2 + 1)
    return float(n ** (-1 / 3) * _norm_ppf(1 - alpha / 2) ** (2 / 3) * ratio ** (1 / 3))


def _mid_distribution(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their mid-distribution function (see :func:`quantile_statistics`)."""
    n = sorted_values.size
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    counts = np.diff(np.r_[starts, n])
    return sorted_values[starts], (starts + counts / 2) / n


def _quantile_level(statistic: str) -> float:
    if statistic == "median":
        return 0.5
    match = _QUANTILE_STATISTIC.fullmatch(statistic)
    if match and 0 < float(match.group(1)) < 100:
        return float(match.group(1)) / 100
    raise ValueError(f"unknown statistic {statistic!r}: use 'median' or 'pNN' (e.g. 'p95')")


def _untested(statistic: str, baseline, candidate, n_baseline, n_candidate) -> Comparison:
    """A comparison without enough data to test: NaN change, CI and p-value, no verdict."""
    nan = float("nan")
    return Comparison(
        statistic=statistic,
        baseline=float(baseline),
        candidate=float(candidate),
        change=nan,
        ci_low=nan,
        ci_high=nan,
        p_value=nan,
        n_baseline=int(n_baseline),
        n_candidate=int(n_candidate),
        regression=False,
    )


def compare_paired(
    baseline: ArrayLike,
    candidate: ArrayLike,
    *,
    threshold: float = 0.20,
    alpha: float = 0.05,
    higher_is_worse: bool = True,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    r"""Compare two versions measured on the same units (scenarios, endpoints): paired values.

    Parameters
    ----------
    baseline, candidate : array_like
        Equal-length 1-D arrays; element :math:`i` of both measures the same unit (e.g. the
        p95 latency of one scenario x endpoint under the old and the new version). Pairs with
        a non-finite or non-positive value are dropped.

    Returns
    -------
    Comparison
        ``statistic="paired"``; ``baseline`` and ``candidate`` are the geometric means of
        each side; ``change`` is :math:`s\,(e^{\tilde d} - 1)` with :math:`\tilde d` the
        median of the log ratios :math:`d_i = \ln(c_i / b_i)` (the typical relative change of
        a unit), CI from a percentile bootstrap over pairs, ``p_value`` from the Wilcoxon
        signed-rank test of :math:`d` (two-sided). ``n_baseline = n_candidate`` = pairs used.

    Notes
    -----
    Pairing removes the differences between units (a slow endpoint stays slow under both
    versions), so a consistent 10 % change shows up with far fewer runs than pooled samples
    would need. Fewer than 5 pairs cannot reach p < 0.05 in the signed-rank test.
    """
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.shape != c.shape:
        raise ValueError(f"paired samples differ in length: {b.size} vs {c.size}")
    keep = np.isfinite(b) & np.isfinite(c) & (b > 0) & (c > 0)
    b, c = b[keep], c[keep]
    sign = 1.0 if higher_is_worse else -1.0
    if b.size < 2:
        return _untested("paired", np.nan, np.nan, b.size, c.size)
    d = np.log(c / b)
    change = sign * np.expm1(np.median(d))
    rng = np.random.default_rng(seed)
    resampled = np.median(d[rng.integers(0, d.size, (n_resamples, d.size))], axis=1)
    low, high = np.sort(
        sign * np.expm1(np.percentile(resampled, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    )
    from scipy import stats  # scipy.stats takes half a second to import; only this needs it

    p_value = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return Comparison(
        statistic="paired",
        baseline=float(np.exp(np.mean(np.log(b)))),
        candidate=float(np.exp(np.mean(np.log(c)))),
        change=float(change),
        ci_low=float(low),
        ci_high=float(high),
        p_value=p_value,
        n_baseline=int(b.size),
        n_candidate=int(c.size),
        regression=bool(change > threshold and p_value < alpha),
    )


def benjamini_hochberg(p_values: ArrayLike) -> np.ndarray:
    r"""Benjamini-Hochberg adjusted p-values (false discovery rate control).

    Parameters
    ----------
    p_values : array_like
        1-D raw p-values in [0, 1]. NaN entries (comparisons that could not be tested) stay
        NaN and do not count towards the number of tests :math:`m`.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order; equal to
        ``scipy.stats.false_discovery_control(p, method="bh")`` when there are no NaNs.

    Notes
    -----
    With :math:`p_{(1)} \le \dots \le p_{(m)}` the sorted p-values, the adjusted p-value of
    rank :math:`i` is

    .. math:: \tilde p_{(i)} = \min\left(1,\ \min_{j \ge i} \frac{m\, p_{(j)}}{j}\right)

    and rejecting :math:`\tilde p < \alpha` controls the false discovery rate at
    :math:`\alpha` for independent (or positively dependent) tests.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    tested = ~np.isnan(p)
    if np.any((p[tested] < 0) | (p[tested] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    ps = p[tested]
    order = np.argsort(ps)
    scaled = ps[order] * ps.size / np.arange(1, ps.size + 1)
    # Step-up: the running minimum from the largest p-value down enforces min over j >= i.
    monotone = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adjusted = np.full(p.shape, np.nan)
    adjusted[np.flatnonzero(tested)[order]] = monotone
    return adjusted
