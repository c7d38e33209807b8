"""Baseline-versus-candidate comparisons: relative change, bootstrap CI, p-value and verdict.

Every comparison reports a relative change oriented so that a positive value means *worse*
(``+0.25`` = 25 % worse), whichever direction is bad for the metric. A regression must be large
(``change > threshold``; or, with ``estimate_share < 1``, above that share of the threshold with
a CI that reaches the threshold), significant (``p_value < alpha``) and material (absolute
worsening of at least ``min_effect`` in the metric's units): on shared machines fast endpoints
move by 15-30 % between identical runs, and flagging those is a false alarm. With the baseline's
run labels, the run-to-run variation of the statistic is part of the CI and of the test.
"""

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

# Bootstrapping more values than this buys little precision for the cost; larger samples are
# bootstrapped on a random subsample of this size (point estimate and p-value use all values).
BOOTSTRAP_MAX_N = 20_000
# Resampled indices drawn per chunk: 16 MB of int32 (plus 32 MB of gathered floats for "mean"),
# which keeps memory bounded whatever n_resamples is.
_CHUNK_ELEMENTS = 4_000_000
# Cochran's rule: below this expected count the chi-square approximation is not trusted.
_MIN_EXPECTED_COUNT = 5.0

_QUANTILE_STATISTIC = re.compile(r"p(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Comparison:
    r"""Outcome of comparing one statistic between a baseline and a candidate.

    Attributes
    ----------
    statistic : str
        ``"median"``, ``"pNN"`` (e.g. ``"p95"``), ``"mean"`` or ``"rate"``.
    baseline, candidate : float
        The statistic of each sample (for ``"rate"``: events / total).
    change : float
        Relative change, positive when the candidate is worse. With :math:`s = +1` when higher
        is worse and :math:`s = -1` when lower is worse (throughput),
        :math:`\Delta = s\,(c - b) / |b|`; i.e. :math:`c/b - 1` for latencies and
        :math:`(b - c)/b = -(c/b - 1)` for throughput.
    ci_low, ci_high : float
        :math:`1 - \alpha` confidence interval of ``change``, same orientation.
    p_value : float
        Two-sided p-value of the test of no difference, not adjusted for multiple testing.
    n_baseline, n_candidate : int
        Number of values used (after dropping non-finite ones), or request totals for rates.
    regression : bool
        ``p_value < alpha``, absolute worsening ``>= min_effect``, and the change consistent
        with a worsening of ``threshold`` or more: ``change > estimate_share * threshold``
        and ``max(change, ci_high) >= threshold`` (``change > threshold`` with the default
        ``estimate_share = 1``). Callers that adjust p-values (:func:`benjamini_hochberg`)
        recompute it.
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

    def as_dict(self) -> dict[str, object]:
        """Return the fields as a JSON-serialisable dict (plain ``float``/``int``/``bool``)."""
        return dataclasses.asdict(self)


def compare_samples(
    baseline: ArrayLike,
    candidate: ArrayLike,
    *,
    threshold: float = 0.20,
    alpha: float = 0.05,
    statistic: str = "median",
    higher_is_worse: bool = True,
    min_effect: float = 0.0,
    n_resamples: int = 2000,
    seed: int = 0,
    baseline_runs: ArrayLike | None = None,
    estimate_share: float = 1.0,
) -> Comparison:
    r"""Compare a statistic of two samples of a metric (latencies, throughput, ...).

    Parameters
    ----------
    baseline, candidate : array_like
        1-D values (numpy array, list, polars Series). NaN (null) and infinite values are
        dropped. With fewer than 2 values on either side the result has NaN ``change``,
        ``ci_low``, ``ci_high`` and ``p_value`` and ``regression=False``.
    threshold : float
        Smallest relative worsening that counts as a regression.
    alpha : float
        Significance level of the p-value; the CI has coverage :math:`1 - \alpha`.
    statistic : {"median", "pNN", "mean"}
        What is compared and how it is tested:

        - ``"median"``: Mann-Whitney U test (two-sided), which is more powerful than a median
          test for the shift of a whole distribution.
        - ``"pNN"`` (``"p90"``, ``"p95"``, ``"p99"``, ``"p99.9"``, and ``"p50"``): quantile
          :math:`q = NN/100` tested with a generalised Mood median test. With :math:`t` the
          q-quantile of the pooled samples, the 2x2 table counts values :math:`> t` and
          :math:`\le t` in each sample. Fisher's exact test is used when an expected count is
          below 5, else Pearson's chi-square without Yates' correction; for :math:`q = 1/2`
          this is ``scipy.stats.median_test(ties="below", correction=False)``.
        - ``"mean"``: the arithmetic mean, tested with Welch's t-test on the logarithms of the
          positive values (latencies are close to log-normal, so this tests the geometric
          mean robustly to the long right tail).

        Quantiles use linear interpolation (numpy's default, Hyndman-Fan type 7).
    higher_is_worse : bool
        ``True`` for latencies and error counts, ``False`` for throughput.
    min_effect : float
        Smallest absolute worsening :math:`s\,(c - b)`, in the sample's units, that counts.
    n_resamples : int
        Bootstrap resamples for the CI.
    seed : int
        Seed of the numpy Generator used for the bootstrap (results are reproducible).
    baseline_runs : array_like, optional
        Run label of each baseline value (same length as ``baseline``). With values of at
        least 2 runs, the run-to-run variation of the statistic is estimated from the runs and
        added to the CI and to the test (see Notes, *Several baseline runs*): the candidate is
        one more run, whose own run effect no resampling of its requests can show.
    estimate_share : float
        Share of ``threshold`` the point estimate must exceed, in (0, 1]. With 1 (the default)
        a regression needs ``change > threshold``. Below 1, a change above
        ``estimate_share * threshold`` whose CI reaches the threshold (``ci_high >=
        threshold``) also counts: the data are then consistent with a degradation of the
        threshold or more, and a true degradation of exactly the threshold is flagged with
        probability near :math:`1 - \alpha/2` instead of 1/2.

    Returns
    -------
    Comparison

    Notes
    -----
    With :math:`\hat\theta_b, \hat\theta_c` the statistic of each sample and :math:`s = +1`
    if higher is worse else :math:`-1`:

    .. math:: \Delta = s\,\frac{\hat\theta_c - \hat\theta_b}{|\hat\theta_b|}

    The CI is a percentile bootstrap: each sample is resampled independently with replacement,
    :math:`\Delta^*` is computed for each of ``n_resamples`` pairs of resamples and the CI is
    :math:`[\Delta^*_{(\alpha/2)}, \Delta^*_{(1-\alpha/2)}]`. To bound time and memory,
    a sample of :math:`n >` ``BOOTSTRAP_MAX_N`` :math:`= m` values is bootstrapped on a seeded
    random subsample of :math:`m` values (an m-out-of-n bootstrap), whose resampled statistics
    :math:`\theta^*_m` are recentred on the full-sample statistic and rescaled to its
    :math:`\sqrt{n}` sampling error: :math:`\hat\theta_n + \sqrt{m/n}\,(\theta^*_m -
    \hat\theta_m)`. The point estimate and the p-value always use all values. A baseline
    statistic of 0 gives an infinite (or NaN) change.
    """
    quantile = _parse_statistic(statistic)
    if not 0 < estimate_share <= 1:
        raise ValueError(f"estimate_share must lie in (0, 1], got {estimate_share}")
    labels = None
    if baseline_runs is not None:
        labels = np.asarray(baseline_runs).astype(str)
        if labels.shape != np.shape(np.asarray(baseline, dtype=float)):
            raise ValueError("baseline_runs must have one label per baseline value")
        labels = labels[np.isfinite(np.asarray(baseline, dtype=float))]
    base, cand = _clean(baseline), _clean(candidate)
    base_value, cand_value = _statistic(base, quantile), _statistic(cand, quantile)
    if base.size < 2 or cand.size < 2:
        return _untested(statistic, base_value, cand_value, base.size, cand.size)

    sign = 1.0 if higher_is_worse else -1.0
    change = _relative_change(base_value, cand_value, sign)
    rng = np.random.default_rng(seed)
    base_boot = _bootstrap(base, quantile, n_resamples, rng)
    cand_boot = _bootstrap(cand, quantile, n_resamples, rng)
    boot_change = _relative_change(base_boot, cand_boot, sign)
    ci_low, ci_high = np.quantile(boot_change, [alpha / 2, 1 - alpha / 2])
    p_value = _p_value(base, cand, statistic, quantile)
    run_level = (
        None
        if labels is None
        else _run_level(base, labels, quantile, base_value, cand_value, base_boot, cand_boot)
    )
    if run_level is not None:
        d, se = run_level
        half = stats.norm.ppf(1 - alpha / 2) * se
        ci_low, ci_high = np.sort(sign * np.expm1([d - half, d + half]))
        p_run = 2 * stats.norm.sf(abs(d) / se) if se > 0 else float(d == 0)
        p_value = max(p_value, p_run) if np.isfinite(p_value) else p_value
    regression = _is_regression(
        change,
        ci_high,
        p_value,
        sign * (cand_value - base_value),
        threshold=threshold,
        alpha=alpha,
        min_effect=min_effect,
        estimate_share=estimate_share,
    )
    return Comparison(
        statistic=statistic,
        baseline=float(base_value),
        candidate=float(cand_value),
        change=float(change),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_value),
        n_baseline=base.size,
        n_candidate=cand.size,
        regression=bool(regression),
    )


def compare_rates(
    baseline_events: int,
    baseline_total: int,
    candidate_events: int,
    candidate_total: int,
    *,
    threshold: float = 0.20,
    alpha: float = 0.05,
    min_effect: float = 0.005,
    estimate_share: float = 1.0,
) -> Comparison:
    r"""Compare two event rates (error rates: higher is worse).

    Parameters
    ----------
    baseline_events, baseline_total, candidate_events, candidate_total : int
        Event counts and totals, :math:`0 \le e \le n`. A total of 0 gives NaN ``change``,
        CI and ``p_value`` and ``regression=False``.
    threshold : float
        Smallest relative worsening that counts as a regression.
    alpha : float
        Significance level; the CI has coverage :math:`1 - \alpha`.
    min_effect : float
        Smallest absolute increase of the rate :math:`r_c - r_b` that counts (0.005 = 0.5
        percentage points), which also keeps a baseline of zero events from flagging a
        single error.
    estimate_share : float
        Share of ``threshold`` the point estimate must exceed when the CI reaches the
        threshold; as in :func:`compare_samples` (1: ``change > threshold``).

    Returns
    -------
    Comparison
        With ``statistic="rate"``, rates as ``baseline``/``candidate`` and totals as
        ``n_baseline``/``n_candidate``.

    Notes
    -----
    With :math:`r_b = e_b/n_b` and :math:`r_c = e_c/n_c`:

    .. math:: \Delta = \frac{r_c - r_b}{\max(r_b,\ 0.5/n_b)}

    i.e. :math:`RR - 1` with the risk ratio :math:`RR = r_c/r_b`; a zero baseline rate is
    floored at half an event so the change stays finite.

    The p-value is Fisher's exact test (two-sided) on the table
    :math:`[[e_b, n_b - e_b], [e_c, n_c - e_c]]`: exact for small counts and fast for large ones.

    The CI is Katz's log interval on the risk ratio, shifted by -1:

    .. math:: \exp\left(\ln RR \pm z_{1-\alpha/2}
              \sqrt{1/e_c - 1/n_c + 1/e_b - 1/n_b}\right) - 1

    When either count of events is 0, 0.5 is added to every cell of the table for the CI
    (Haldane-Anscombe correction), since the interval is otherwise undefined.
    """
    counts = np.array([baseline_events, baseline_total, candidate_events, candidate_total])
    if np.any(counts < 0) or baseline_events > baseline_total or candidate_events > candidate_total:
        raise ValueError(f"need 0 <= events <= total, got {counts.tolist()}")
    if baseline_total == 0 or candidate_total == 0:
        base_rate = baseline_events / baseline_total if baseline_total else np.nan
        cand_rate = candidate_events / candidate_total if candidate_total else np.nan
        return _untested("rate", base_rate, cand_rate, baseline_total, candidate_total)
    base_rate = baseline_events / baseline_total
    cand_rate = candidate_events / candidate_total
    change = (cand_rate - base_rate) / max(base_rate, 0.5 / baseline_total)

    e_b, n_b, e_c, n_c = counts.astype(float)
    if e_b == 0 or e_c == 0:
        e_b, n_b, e_c, n_c = e_b + 0.5, n_b + 1.0, e_c + 0.5, n_c + 1.0
    log_rr = np.log((e_c / n_c) / (e_b / n_b))
    half_width = stats.norm.ppf(1 - alpha / 2) * np.sqrt(1 / e_c - 1 / n_c + 1 / e_b - 1 / n_b)
    ci_low, ci_high = np.expm1([log_rr - half_width, log_rr + half_width])

    table = [
        [baseline_events, baseline_total - baseline_events],
        [candidate_events, candidate_total - candidate_events],
    ]
    p_value = stats.fisher_exact(table).pvalue
    regression = _is_regression(
        change,
        ci_high,
        p_value,
        cand_rate - base_rate,
        threshold=threshold,
        alpha=alpha,
        min_effect=min_effect,
        estimate_share=estimate_share,
    )
    return Comparison(
        statistic="rate",
        baseline=float(base_rate),
        candidate=float(cand_rate),
        change=float(change),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p_value),
        n_baseline=int(baseline_total),
        n_candidate=int(candidate_total),
        regression=bool(regression),
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


def _is_regression(
    change: float,
    ci_high: float,
    p_value: float,
    worsening: float,
    *,
    threshold: float,
    alpha: float,
    min_effect: float,
    estimate_share: float,
) -> bool:
    """Significant, material, and consistent with a worsening of ``threshold`` or more: the
    estimate above ``estimate_share * threshold`` and the estimate or the CI's upper bound at
    or above ``threshold`` (with ``estimate_share = 1``: ``change > threshold``)."""
    consistent = change > estimate_share * threshold and max(change, ci_high) >= threshold
    return bool(consistent and p_value < alpha and worsening >= min_effect)


def _run_level(
    base: np.ndarray,
    labels: np.ndarray,
    quantile: float | None,
    base_value: float,
    cand_value: float,
    base_boot: np.ndarray,
    cand_boot: np.ndarray,
) -> tuple[float, float] | None:
    """Log ratio ``d`` and its standard error with the run-to-run variance added (see
    :func:`compare_samples`, *Several baseline runs*); ``None`` when it does not apply."""
    runs = [base[labels == run] for run in np.unique(labels)]
    runs = [values for values in runs if values.size >= 2]
    if len(runs) < 2 or base_value <= 0 or cand_value <= 0:
        return None
    per_run = np.array([_statistic(values, quantile) for values in runs])
    if np.any(per_run <= 0) or np.any(base_boot <= 0) or np.any(cand_boot <= 0):
        return None
    k = len(runs)
    log_base, log_cand = np.log(base_boot), np.log(cand_boot)
    sampling = np.var(log_cand - log_base, ddof=1)
    # A single run of n_r values has about N_b / n_r times the pooled sampling variance.
    run_sampling = np.var(log_base, ddof=1) * base.size * np.mean([1 / v.size for v in runs])
    tau2 = max(0.0, float(np.var(np.log(per_run), ddof=1)) - run_sampling)
    se = math.sqrt(sampling + tau2 * (1 + 1 / k))
    return float(np.log(cand_value / base_value)), se


def _untested(statistic: str, baseline, candidate, n_baseline, n_candidate) -> Comparison:
    """A comparison without enough data to test: NaN change, CI and p-value, no regression."""
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


def _parse_statistic(statistic: str) -> float | None:
    """Return the quantile level of ``statistic``, or ``None`` for the mean."""
    if statistic == "mean":
        return None
    if statistic == "median":
        return 0.5
    match = _QUANTILE_STATISTIC.fullmatch(statistic)
    if match and 0 < float(match.group(1)) < 100:
        return float(match.group(1)) / 100
    raise ValueError(f"unknown statistic {statistic!r}: use 'median', 'mean' or 'pNN' (e.g. 'p95')")


def _clean(values: ArrayLike) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {x.shape}")
    return x[np.isfinite(x)]


def _statistic(x: np.ndarray, quantile: float | None) -> np.float64:
    if x.size == 0:
        return np.float64(np.nan)
    return np.mean(x) if quantile is None else np.quantile(x, quantile)


def _relative_change(base, cand, sign: float):
    # numpy division so that a zero baseline gives inf/NaN instead of raising.
    with np.errstate(divide="ignore", invalid="ignore"):
        return sign * (np.asarray(cand) - base) / np.abs(base)


def _bootstrap(
    x: np.ndarray, quantile: float | None, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Statistic of ``n_resamples`` resamples of ``x`` drawn with replacement."""
    if x.size > BOOTSTRAP_MAX_N:
        sub = rng.choice(x, BOOTSTRAP_MAX_N, replace=False)
        # Resamples of the subsample vary sqrt(n/m) times more than resamples of the full
        # sample would, around the subsample's own statistic: recentre and rescale.
        shrink = np.sqrt(sub.size / x.size)
        boot = _bootstrap(sub, quantile, n_resamples, rng)
        return _statistic(x, quantile) + shrink * (boot - _statistic(sub, quantile))
    n = x.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    if quantile is not None:
        # On a sorted sample the order statistics of a resample are the sample at the order
        # statistics of the resampled indices: partitioning the int32 indices gives the
        # type-7 quantile without gathering (and copying) all resampled values.
        x = np.sort(x)
        h = (n - 1) * quantile
        k = int(h)  # k + 1 <= n - 1 because quantile < 1
        frac = h - k
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, n_resamples - start), n), dtype=np.int32)
        if quantile is None:
            out[start : start + len(idx)] = x[idx].mean(axis=1)
        else:
            idx.partition([k, k + 1], axis=1)
            low, high = x[idx[:, k]], x[idx[:, k + 1]]
            out[start : start + len(idx)] = low + frac * (high - low)
    return out


def _p_value(base: np.ndarray, cand: np.ndarray, statistic: str, quantile: float | None) -> float:
    if statistic == "median":
        return stats.mannwhitneyu(base, cand, alternative="two-sided").pvalue
    if quantile is None:
        log_base, log_cand = np.log(base[base > 0]), np.log(cand[cand > 0])
        if log_base.size < 2 or log_cand.size < 2:
            return np.nan
        return stats.ttest_ind(log_base, log_cand, equal_var=False).pvalue
    return _quantile_test(base, cand, quantile)


def _quantile_test(base: np.ndarray, cand: np.ndarray, quantile: float) -> float:
    """Two-sided p-value of the generalised Mood median test at ``quantile``."""
    pooled_quantile = np.quantile(np.concatenate([base, cand]), quantile)
    above = [np.count_nonzero(base > pooled_quantile), np.count_nonzero(cand > pooled_quantile)]
    table = np.array([above, [base.size - above[0], cand.size - above[1]]])
    if stats.contingency.expected_freq(table).min() < _MIN_EXPECTED_COUNT:
        return stats.fisher_exact(table).pvalue
    return stats.chi2_contingency(table, correction=False).pvalue
