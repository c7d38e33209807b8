"""Forecast interval coverage: do the "95 %" prediction intervals of the forecasts cover 95 %?

Generates many daily series with a known future, hands each history to the product's
``metrics_pipeline.stats.forecast.forecast(history, horizon)`` exactly as the weekly job does
(one value per day, missing days as NaN, ``method="auto"``, ``level=0.95``; nothing else of the
product is used), and scores the held-out horizon:

* **coverage**: share of held-out points inside ``[lower, upper]``, pooled over the points of
  all series of a kind (per kind and per variant). Its standard error is the cluster
  (per-series) one: the points of one series share the same fit and are correlated, so they
  are not independent trials.
* **conditional coverage**: the mean over the same points of ``P(lower <= Y <= upper | history)``
  under the true model, which is exact because the future is normal given the truth at the end
  of the history: ``Phi((upper - m_h) / sd_h) - Phi((lower - m_h) / sd_h)``. It estimates the
  same coverage without the noise of the one future draw (standard errors 3-5 times smaller);
  the horizon bands (steps 1-7, 8-14, 15-28) and the weekend-step days of the seasonal series
  are shown with it.
* **width / oracle**: mean over the points of ``(upper - lower) / (2 z sd_h)``, where ``sd_h``
  is the standard deviation of the future value given the true parameters and the true state
  at the end of the history (the generator knows both) and ``z = 1.96``: the width of a perfect
  95 % interval is 1. A calibrated interval from estimated parameters must be a bit wider.

The generators are this file's own, written from the data-generating processes below and not
from the forecast models of the product.

Kinds and variants (``L`` a level drawn log-uniform in [20, 2000], ``t = 0..n-1``)
---------------------------------------------------------------------------------
* ``trend``: ``L + b t + u_t`` with ``b = L * U(-0.003, 0.01)`` per day and ``u`` of standard
  deviation ``s = L * U(0.01, 0.05)``: variant ``white`` (i.i.d. normal) or ``ar1``
  (stationary AR(1), ``phi ~ U(0.3, 0.8)``, innovations ``s sqrt(1 - phi^2)``).
* ``random_walk``: a level ``m_t = m_{t-1} + d + e_t``, ``e ~ N(0, s^2)``, ``s = L * U(0.005,
  0.03)``; variant ``rw`` (``d = 0``, observed exactly), ``rw_drift`` (``d = +-L * U(0.002,
  0.008)``, observed exactly) or ``rw_noisy`` (``d`` 0 or drifting, 1/2 each, observed with
  i.i.d. normal noise of ``s * U(0.5, 2)``).
* ``seasonal`` (period 7, the weekday of ``t = 0`` drawn at random): weekend days (2 of 7)
  shifted by ``-+L * U(0.05, 0.3)`` (lower with probability 3/4), noise ``s = L * U(0.01,
  0.04)``: variant ``weekend`` (+ linear trend as above, white noise), ``weekend_ar1`` (+ trend,
  AR(1) noise) or ``profile_level`` (a full weekday profile, the weekend step plus
  ``N(0, (0.3 step)^2)`` per weekday, on a random-walk level with steps of ``s * U(0.2, 0.6)``,
  plus white noise ``s``).

Each kind draws its variant uniformly. History length ``n`` uniform in 60..180 days, horizon
``h`` uniform in 7..28 days; each history day is missing (NaN) with probability ``U(0, 0.03)``
drawn per series (never the first or last day).

Splits: ``dev`` and ``heldout`` draw from different seed streams (``SeedSequence(split entropy,
spawn_key=(kind, i))``). Choose methods on ``dev``; ``heldout`` is the published, untouched set.

Usage
-----
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/forecast_coverage.py                # both splits
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/forecast_coverage.py --split dev    # experiment
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/forecast_coverage.py --quick        # smoke run

Prints markdown tables (and writes them to ``--out`` when given) with the command, the wall
time, the mean time per forecast and the load average. Single process. ``--module FILE`` scores
the ``forecast`` of another copy of the module (the "before" numbers: ``git show
HEAD:metrics_pipeline/stats/forecast.py > /tmp/forecast_head.py``).
"""

from __future__ import annotations

import os

# One thread: the machine is shared (set before numpy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import NormalDist  # noqa: E402

import numpy as np  # noqa: E402
from provenance import git_state  # noqa: E402
from scipy.special import ndtr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LEVEL = 0.95
Z = NormalDist().inv_cdf((1 + LEVEL) / 2)
TARGET = (0.93, 0.97)
KINDS = ("trend", "random_walk", "seasonal")
VARIANTS = {
    "trend": ("white", "ar1"),
    "random_walk": ("rw", "rw_drift", "rw_noisy"),
    "seasonal": ("weekend", "weekend_ar1", "profile_level"),
}
SPLIT_ENTROPY = {"dev": 0x666F_7265_6361_6465, "heldout": 0x666F_7265_6361_686F}
HORIZON_BANDS = ((1, 7), (8, 14), (15, 28))
DEFAULT_SERIES = 150  # per kind and split
QUICK_SERIES = 20


@dataclass(frozen=True)
class Case:
    """One generated series: the history handed to the forecast and the truth after it."""

    kind: str
    variant: str
    history: np.ndarray  # n values, NaN = missing day
    future: np.ndarray  # h values after the history
    oracle_mean: np.ndarray  # mean of each future value given the true parameters and end state
    oracle_sd: np.ndarray  # its standard deviation (future values are normal given both)
    weekend: np.ndarray  # future steps on a shifted (weekend) day; all False outside seasonal


# ----------------------------------------------------------------------------- generators


def _ar1(rng: np.random.Generator, length: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) path of marginal standard deviation ``sd``."""
    innovation = sd * math.sqrt(1 - phi**2)
    u = np.empty(length)
    u[0] = rng.normal(0, sd)
    shocks = rng.normal(0, innovation, length)
    for t in range(1, length):
        u[t] = phi * u[t - 1] + shocks[t]
    return u


def _ar1_sd(phi: float, sd: float, steps: np.ndarray) -> np.ndarray:
    """Standard deviation of u_{n+j} given u_n: innovation sd * sqrt(sum_{i<j} phi^(2i))."""
    innovation_var = sd**2 * (1 - phi**2)
    return np.sqrt(innovation_var * (1 - phi ** (2 * steps)) / (1 - phi**2))


def generate(kind: str, split: str, i: int) -> Case:
    seq = np.random.SeedSequence(SPLIT_ENTROPY[split], spawn_key=(KINDS.index(kind), i))
    rng = np.random.default_rng(seq)
    variants = VARIANTS[kind]
    variant = variants[int(rng.integers(len(variants)))]
    n = int(rng.integers(60, 181))
    h = int(rng.integers(7, 29))
    total = n + h
    t = np.arange(total, dtype=float)
    steps = np.arange(1, h + 1, dtype=float)
    level = float(np.exp(rng.uniform(np.log(20), np.log(2000))))
    weekend = np.zeros(total, dtype=bool)

    if kind == "trend":
        sd = level * rng.uniform(0.01, 0.05)
        slope = level * rng.uniform(-0.003, 0.01)
        phi = rng.uniform(0.3, 0.8) if variant == "ar1" else 0.0
        noise = _ar1(rng, total, phi, sd) if phi else rng.normal(0, sd, total)
        y = level + slope * t + noise
        mean = level + slope * t[n:] + phi**steps * noise[n - 1]
        oracle = _ar1_sd(phi, sd, steps) if phi else np.full(h, sd)
    elif kind == "random_walk":
        sd = level * rng.uniform(0.005, 0.03)
        drifting = variant == "rw_drift" or (variant == "rw_noisy" and rng.random() < 0.5)
        drift = level * rng.uniform(0.002, 0.008) * rng.choice([-1.0, 1.0]) if drifting else 0.0
        walk = level + np.cumsum(drift + rng.normal(0, sd, total))
        obs_sd = sd * rng.uniform(0.5, 2.0) if variant == "rw_noisy" else 0.0
        y = walk + (rng.normal(0, obs_sd, total) if obs_sd else 0.0)
        # Given the true level at the end of the history: j steps of the walk plus the
        # measurement noise of the new value.
        mean = walk[n - 1] + drift * steps
        oracle = np.sqrt(steps * sd**2 + obs_sd**2)
    else:
        sd = level * rng.uniform(0.01, 0.04)
        weekday = (t.astype(int) + int(rng.integers(7))) % 7
        weekend = weekday >= 5
        step = level * rng.uniform(0.05, 0.3) * (-1.0 if rng.random() < 0.75 else 1.0)
        if variant == "profile_level":
            profile = step * (np.arange(7) >= 5) + rng.normal(0, 0.3 * abs(step), 7)
            level_sd = sd * rng.uniform(0.2, 0.6)
            base = level + np.cumsum(rng.normal(0, level_sd, total))
            y = base + profile[weekday] + rng.normal(0, sd, total)
            mean = base[n - 1] + profile[weekday[n:]]
            oracle = np.sqrt(steps * level_sd**2 + sd**2)
        else:
            slope = level * rng.uniform(-0.003, 0.01)
            phi = rng.uniform(0.3, 0.8) if variant == "weekend_ar1" else 0.0
            noise = _ar1(rng, total, phi, sd) if phi else rng.normal(0, sd, total)
            y = level + slope * t + step * weekend + noise
            mean = level + slope * t[n:] + step * weekend[n:] + phi**steps * noise[n - 1]
            oracle = _ar1_sd(phi, sd, steps) if phi else np.full(h, sd)

    history = y[:n].copy()
    missing = rng.random(n) < rng.uniform(0, 0.03)
    missing[[0, -1]] = False
    history[missing] = np.nan
    return Case(kind, variant, history, y[n:], mean, oracle, weekend[n:])


# ----------------------------------------------------------------------------- scoring


@dataclass
class Scored:
    kind: str
    variant: str
    inside: np.ndarray
    expected: np.ndarray
    width_ratio: np.ndarray
    weekend: np.ndarray
    method: str
    seconds: float


def forecaster(module: Path | None):
    """The product's ``forecast``, or that of another copy of forecast.py (``--module``)."""
    if module is None:
        from metrics_pipeline.stats.forecast import forecast

        return forecast
    spec = importlib.util.spec_from_file_location("forecast_under_test", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded.forecast


def score(case: Case, forecast) -> Scored:
    start = time.perf_counter()
    result = forecast(case.history, case.future.size, level=LEVEL)
    seconds = time.perf_counter() - start
    inside = (case.future >= result.lower) & (case.future <= result.upper)
    # P(lower <= Y <= upper | history): the future is normal given the truth at the end of the
    # history, so the conditional coverage is exact; it is the expectation of ``inside`` given
    # the history (an unbiased estimate of the coverage without the noise of the future draw).
    expected = ndtr((result.upper - case.oracle_mean) / case.oracle_sd) - ndtr(
        (result.lower - case.oracle_mean) / case.oracle_sd
    )
    ratio = (result.upper - result.lower) / (2 * Z * case.oracle_sd)
    return Scored(
        case.kind, case.variant, inside, expected, ratio, case.weekend, result.method, seconds
    )


def coverage(hits: list[float], points: list[int]) -> tuple[float, float, int]:
    """Pooled coverage, its cluster (per-series) standard error, and the point count.

    Ratio estimator p = sum c_i / sum m_i; Var(p) ~ S/(S-1) sum (c_i - p m_i)^2 / (sum m_i)^2.
    """
    c = np.asarray(hits, dtype=float)
    m = np.asarray(points, dtype=float)
    keep = m > 0
    c, m = c[keep], m[keep]
    if m.sum() == 0:
        return math.nan, math.nan, 0
    p = c.sum() / m.sum()
    s = c.size
    se = math.sqrt(s / max(s - 1, 1) * np.sum((c - p * m) ** 2)) / m.sum()
    return float(p), float(se), int(m.sum())


def fmt_cov(hits: list[float], points: list[int]) -> str:
    p, se, count = coverage(hits, points)
    if count == 0:
        return "-"
    return f"{100 * p:.1f} ({100 * se:.1f})"


def cov_of(rows: list[Scored], mask=None, field: str = "inside") -> tuple[list[float], list[int]]:
    hits, points = [], []
    for r in rows:
        sel = np.ones(r.inside.size, dtype=bool) if mask is None else mask(r)
        hits.append(float(getattr(r, field)[sel].sum()))
        points.append(int(sel.sum()))
    return hits, points


def band(lo: int, hi: int):
    """Mask of the forecast steps ``lo..hi`` (1 = the first step after the history)."""

    def mask(r: Scored) -> np.ndarray:
        steps = np.arange(1, r.inside.size + 1)
        return (steps >= lo) & (steps <= hi)

    return mask


def table(rows: list[Scored], split: str) -> list[str]:
    head = (
        "| kind | variant | series | points | coverage % (SE) | conditional (SE) | h 1-7 "
        "| h 8-14 | h 15-28 | weekend-step days | width / oracle (p95) | methods |"
    )
    out = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    groups: list[tuple[str, str, list[Scored]]] = []
    for kind in KINDS:
        of_kind = [r for r in rows if r.kind == kind]
        groups.append((f"**{kind}**", "all", of_kind))
        for variant in VARIANTS[kind]:
            groups.append((kind, variant, [r for r in of_kind if r.variant == variant]))
    for kind, variant, group in groups:
        if not group:
            continue
        weekend = (
            fmt_cov(*cov_of(group, lambda r: r.weekend, "expected"))
            if group[0].kind == "seasonal"
            else "-"
        )
        methods = Counter(r.method for r in group)
        ratio = np.concatenate([r.width_ratio for r in group])
        out.append(
            f"| {kind} | {variant} | {len(group)} | {sum(r.inside.size for r in group)} "
            f"| {fmt_cov(*cov_of(group))} | {fmt_cov(*cov_of(group, field='expected'))} "
            + " ".join(
                f"| {fmt_cov(*cov_of(group, band(lo, hi), 'expected'))}" for lo, hi in HORIZON_BANDS
            )
            + f" | {weekend} | {np.mean(ratio):.2f} ({np.quantile(ratio, 0.95):.2f}) | "
            + ", ".join(f"{m} {c}" for m, c in methods.most_common())
            + " |"
        )
    return out


def checks(rows: list[Scored]) -> list[str]:
    lines = []
    for kind in KINDS:
        of_kind = [r for r in rows if r.kind == kind]
        p, se, _ = coverage(*cov_of(of_kind))
        pc, sec, _ = coverage(*cov_of(of_kind, field="expected"))
        ok = TARGET[0] <= p <= TARGET[1]
        ok_conditional = TARGET[0] <= pc <= TARGET[1]
        target = f"{100 * TARGET[0]:.0f}-{100 * TARGET[1]:.0f} %"
        lines.append(
            f"- {kind}: coverage {100 * p:.1f} % (SE {100 * se:.1f}) "
            f"{'within' if ok else 'OUTSIDE'} {target}: {'PASS' if ok else 'FAIL'}; conditional "
            f"{100 * pc:.1f} % (SE {100 * sec:.1f}) {'within' if ok_conditional else 'OUTSIDE'}"
        )
    return lines


def run_split(split: str, series: int, forecast) -> tuple[list[Scored], float]:
    start = time.perf_counter()
    rows = []
    for kind in KINDS:
        for i in range(series):
            rows.append(score(generate(kind, split, i), forecast))
        print(
            f"  {split} {kind}: {series} series, {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=("dev", "heldout", "both"), default="both")
    ap.add_argument("--series", type=int, help=f"series per kind and split ({DEFAULT_SERIES})")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SERIES} series per kind")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument(
        "--module",
        type=Path,
        help="score the forecast() of this copy of forecast.py instead (e.g. the last commit's: "
        "git show HEAD:metrics_pipeline/stats/forecast.py > /tmp/forecast_head.py)",
    )
    args = ap.parse_args()
    series = args.series or (QUICK_SERIES if args.quick else DEFAULT_SERIES)
    splits = ("dev", "heldout") if args.split == "both" else (args.split,)

    import scipy
    import statsmodels

    # The code measured is named at the start: the tree may change while the series run.
    code = (
        git_state("metrics_pipeline/stats/forecast.py")
        if args.module is None
        else f"forecast() of {args.module}"
    )
    forecast = forecaster(args.module)
    forecast(np.arange(30.0) + np.sin(np.arange(30.0)), 5)  # imports and warm-up, not timed
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    results = {split: run_split(split, series, forecast) for split in splits}
    wall = time.perf_counter() - t0
    load_end = os.getloadavg()

    cmd = "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/forecast_coverage.py " + " ".join(
        sys.argv[1:]
    )
    n_fc = sum(len(rows) for rows, _ in results.values())
    per_fc = sum(r.seconds for rows, _ in results.values() for r in rows) / n_fc
    out = [
        "# Forecast interval coverage" + (" (--quick: smoke run)" if args.quick else ""),
        "",
        f"`{cmd.strip()}`, started {started:%Y-%m-%d %H:%M} UTC, code {code}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"statsmodels {statsmodels.__version__}, {os.cpu_count()} CPUs, 1 process.",
        "",
        f"Wall time {wall:.0f} s for {n_fc} forecasts ({per_fc * 1000:.0f} ms per forecast); "
        f"load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in load_start)}, "
        f"at end {', '.join(f'{x:.2f}' for x in load_end)}.",
        "",
        f"Nominal level {LEVEL:.0%}; target coverage {100 * TARGET[0]:.0f}-"
        f"{100 * TARGET[1]:.0f} % per kind. Coverage in % with its cluster standard error in "
        "parentheses; width / oracle: mean interval width over that of the true model (1 = "
        "perfect 95 % interval knowing the parameters).",
    ]
    for split in splits:
        rows, seconds = results[split]
        out += [
            "",
            f"## Split `{split}`: {series} series per kind, {seconds:.0f} s",
            "",
            *table(rows, split),
            "",
            *checks(rows),
        ]
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
