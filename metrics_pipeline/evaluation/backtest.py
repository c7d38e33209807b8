"""Backtest of the detectors on labelled histories: how often they find what was injected.

Every case is generated with a known truth (a degradation of known size on one endpoint, a
step of known size, sign and position, a slow drift, spikes, a trend), passed through the
production code (:func:`~metrics_pipeline.analysis.verdicts.judge_run` on canonical
``requests`` frames,
:func:`~metrics_pipeline.stats.history.detect_change_points`,
:func:`~metrics_pipeline.stats.history.detect_drift`,
:func:`~metrics_pipeline.stats.history.detect_anomalies`,
:func:`~metrics_pipeline.stats.forecast.backtest_forecast`) and scored against the truth.

The noise is meant to look like load tests on shared machines: log-normal and bimodal (cache
hit / miss) latencies, 0.5 % of requests 5-20x slower, about 1 % errors, a few % of run-to-run
drift per endpoint, heavy-tailed run-to-run noise with occasional noisy-neighbour runs, and
missing runs. Real-looking runs are also bootstrapped from the per-request fixtures of Locust,
JMeter and k6 (``tests/fixtures/loadtest``) when they are present.

Every case draws from its own generator seeded by ``(seed, detector, case number)``, so the
small backtest is exactly the first cases of the full one and a result can be replayed alone.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from metrics_pipeline.analysis.verdicts import LATENCY_METRICS, VerdictPolicy, judge_run
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.evaluation.demo_data import ERROR_RATE, OUTLIER_RATE, RUN_DRIFT
from metrics_pipeline.settings import CHECKOUT
from metrics_pipeline.stats.forecast import PERFORMANCE_HORIZON, backtest_forecast
from metrics_pipeline.stats.history import detect_anomalies, detect_change_points, detect_drift

# Real tool files in a checkout (absent from an installed wheel: then no fixture cases).
DEFAULT_FIXTURES = CHECKOUT / "tests" / "fixtures" / "loadtest"
# Fixture files with per-request rows, read through the production parsers.
FIXTURE_FILES = ("locust/requests.ndjson", "jmeter/results.jtl", "k6/k6_out.json.gz")
BASELINE_RUNS = 5
# A change point counts as found when it lies within this many runs of the true step.
CHANGE_POINT_TOLERANCE = 3
# Degradations injected into per-run verdict cases, relative (0.2 = 20 % slower).
DEGRADATION_RANGE = (0.20, 0.50)
STEP_RANGE = (0.20, 0.50)
DRIFT_RANGE = (0.005, 0.02)  # per run, relative to the starting level
SPIKE_SIGMAS = (6.0, 12.0)  # anomaly size in standard deviations of the noise
VERDICT_POWER = 0.95
CHANGE_POINT_POWER = 0.90
# Grids searched for the minimum detectable effect. The per-run verdict cannot flag less than
# its estimate share of the threshold (0.75 x 20 % = 15 % by default), so its grid starts
# below that.
VERDICT_EFFECT_GRID = tuple(round(0.10 + 0.025 * k, 4) for k in range(37))  # 10 % .. 100 %
STEP_EFFECT_GRID = tuple(round(0.005 * 1.1**k, 5) for k in range(63))  # 0.5 % .. ~200 %

_START = datetime(2026, 11, 1, tzinfo=UTC)
_EPOCH_US = int(_START.timestamp() * 1_000_000)


# --- report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the issue asks of a detector on the full-size backtest (``None``: no bound)."""

    min_recall: float | None = None
    max_false_positive_rate: float | None = None
    max_mape: float | None = None

    def describe(self) -> str:
        parts = []
        if self.min_recall is not None:
            parts.append(f"recall >= {self.min_recall:.0%}")
        if self.max_false_positive_rate is not None:
            parts.append(f"FPR <= {self.max_false_positive_rate:.0%}")
        if self.max_mape is not None:
            parts.append(f"MAPE < {self.max_mape:.0%}")
        return ", ".join(parts)

    def met(self, score: DetectorScore) -> bool:
        checks = []
        if self.min_recall is not None:
            checks.append(score.recall is not None and score.recall >= self.min_recall)
        if self.max_false_positive_rate is not None:
            checks.append(
                score.false_positive_rate is not None
                and score.false_positive_rate <= self.max_false_positive_rate
            )
        if self.max_mape is not None:
            checks.append(score.mape is not None and score.mape < self.max_mape)
        return all(checks)


VERDICT_TARGET = Target(min_recall=0.95, max_false_positive_rate=0.05)
CHANGE_POINT_TARGET = Target(min_recall=0.90, max_false_positive_rate=0.05)
FORECAST_TARGET = Target(max_mape=0.10)


@dataclass(frozen=True)
class Breakdown:
    """Recall (or, for forecasts, the share of series under the MAPE target) of one slice."""

    label: str
    hits: int
    cases: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.cases if self.cases else None


@dataclass(frozen=True)
class DetectorScore:
    """One detector's scores on its labelled cases.

    Attributes
    ----------
    name : str
        Detector and data set, e.g. ``"change points (p95)"``.
    cases : int
        Labelled cases (runs, series or points; see ``unit``).
    positives, negatives : int
        Cases with and without an injected change (for anomalies: spikes and other points).
    precision : float or None
        Correct detections / all detections.
    recall : float or None
        Positives detected / positives.
    false_positive_rate : float or None
        Negatives with any detection / negatives.
    delay_mean, delay_median : float or None
        Runs from the change to its first detection when the history is replayed run by run
        (change points and drift; only cases detected on the whole history).
    mape : float or None
        Mean MAPE over the series (forecasts).
    target : Target or None
        What the issue asks; ``None`` when it sets no target for this detector.
    met : bool or None
        Whether the target is met (``None``: no target, or no cases).
    unit : str
        What one case is.
    detail : str
        How the cases were generated.
    breakdown : tuple of Breakdown
        Recall per effect size (per series kind for forecasts).
    """

    name: str
    cases: int
    positives: int
    negatives: int
    precision: float | None
    recall: float | None
    false_positive_rate: float | None
    delay_mean: float | None = None
    delay_median: float | None = None
    mape: float | None = None
    target: Target | None = None
    met: bool | None = None
    unit: str = "run"
    detail: str = ""
    breakdown: tuple[Breakdown, ...] = ()

    def scored(self) -> DetectorScore:
        """This score with ``met`` filled in from ``target``."""
        met = None if self.target is None or self.cases == 0 else self.target.met(self)
        return replace(self, met=met)

    def as_row(self) -> dict[str, object]:
        """Plain JSON-serialisable values (``None`` for not applicable)."""
        return {
            "detector": self.name,
            "unit": self.unit,
            "cases": self.cases,
            "positives": self.positives,
            "negatives": self.negatives,
            "precision": _plain(self.precision),
            "recall": _plain(self.recall),
            "false_positive_rate": _plain(self.false_positive_rate),
            "delay_mean": _plain(self.delay_mean),
            "delay_median": _plain(self.delay_median),
            "mape": _plain(self.mape),
            "target": self.target.describe() if self.target else None,
            "met": self.met,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class MinimumDetectableEffect:
    """Smallest injected effect found with at least ``power`` probability.

    Attributes
    ----------
    detector : str
        ``"change points"`` (relative step in a per-run series) or ``"per-run verdict"``
        (relative latency degradation of one endpoint in one run).
    noise : float
        Change points: coefficient of variation of the per-run value (log-normal). Per-run
        verdict: run-to-run drift of an endpoint's latency (standard deviation, relative).
    runs : int
        Change points: length of the series (step in the middle). Per-run verdict: baseline
        runs.
    requests_per_endpoint : int or None
        Per-run verdict: requests of the endpoint in each run.
    power : float
        Required detection probability.
    effect : float or None
        Smallest effect on the search grid detected in at least ``power`` of the cases;
        ``None`` when even the largest grid value is not.
    cases : int
    """

    detector: str
    noise: float
    runs: int
    requests_per_endpoint: int | None
    power: float
    effect: float | None
    cases: int

    def as_row(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BacktestReport:
    """Scores of every detector and the minimum detectable effects of one backtest.

    ``met`` compares each detector with the issue's full-size targets whatever the size: at the
    small size one unlucky case out of 10 moves a rate by 10 points, so a small report can miss
    a target the full one meets (and the other way round).
    """

    size: str
    seed: int
    detectors: tuple[DetectorScore, ...]
    minimum_detectable_effect: tuple[MinimumDetectableEffect, ...]
    elapsed_s: float
    fixtures: str
    policy: str

    def detector(self, name: str) -> DetectorScore:
        """The row of the detector called ``name`` (e.g. ``"change points (p95)"``)."""
        return next(score for score in self.detectors if score.name == name)

    @property
    def all_targets_met(self) -> bool:
        """No detector with a target misses it (detectors without one, or without cases,
        do not count)."""
        return all(score.met is not False for score in self.detectors)

    def as_rows(self) -> list[dict[str, object]]:
        """One plain dict per detector (for a table, JSON or asset metadata)."""
        return [score.as_row() for score in self.detectors]

    def mde_rows(self) -> list[dict[str, object]]:
        """One plain dict per minimum-detectable-effect cell."""
        return [cell.as_row() for cell in self.minimum_detectable_effect]

    def as_markdown(self) -> str:
        """The detector table, the breakdowns, the minimum detectable effects and how the
        cases were made, as markdown."""
        lines = [
            f"Backtest size `{self.size}`, seed {self.seed}: {self.elapsed_s:.0f} s. "
            f"Verdict policy: {self.policy}. Fixtures: {self.fixtures}.",
            "",
            "| detector | unit | cases (+/-) | precision | recall | FPR "
            "| delay mean / median (runs) | MAPE | target | met |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for s in self.detectors:
            delay = (
                f"{s.delay_mean:.1f} / {s.delay_median:.1f}" if s.delay_mean is not None else "-"
            )
            met = {True: "yes", False: "**no**", None: "-"}[s.met]
            lines.append(
                f"| {s.name} | {s.unit} | {s.cases} ({s.positives}/{s.negatives}) "
                f"| {_percent(s.precision)} | {_percent(s.recall)} "
                f"| {_percent(s.false_positive_rate)} | {delay} | {_percent(s.mape)} "
                f"| {s.target.describe() if s.target else 'none set'} | {met} |"
            )
        lines += [
            "",
            "Breakdown: recall by injected effect and by latency distribution; false alarms "
            "(share of the unchanged cases) by endpoint and metric or by distribution; share of "
            "forecast series with MAPE < 10 %:",
            "",
        ]
        lines += ["| detector | slice | rate | cases |", "|---|---|---:|---:|"]
        for s in self.detectors:
            for part in s.breakdown:
                lines.append(f"| {s.name} | {part.label} | {_percent(part.rate)} | {part.cases} |")
        lines += [
            "",
            "Minimum detectable effect (smallest effect on the grid found with the stated power):",
            "",
            "| detector | noise | runs | requests/endpoint/run | power | effect | cases |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for m in self.minimum_detectable_effect:
            effect = f"+{m.effect:.1%}" if m.effect is not None else "> grid"
            requests = "-" if m.requests_per_endpoint is None else str(m.requests_per_endpoint)
            lines.append(
                f"| {m.detector} | {m.noise:.0%} | {m.runs} | {requests} | {m.power:.0%} "
                f"| {effect} | {m.cases} |"
            )
        lines += ["", "How the cases were made:", ""]
        details: dict[str, list[str]] = {}
        for s in self.detectors:
            details.setdefault(s.detail, []).append(s.name)
        lines += [f"- {', '.join(names)}: {detail}" for detail, names in details.items()]
        return "\n".join(lines)


def _plain(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _percent(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1%}"


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


# --- sizes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestSize:
    """How many cases each part of the backtest draws."""

    verdict_cases: int  # per class: degraded and unchanged candidate runs
    fixture_cases: int  # per class, runs bootstrapped from the fixtures
    fixture_share: float  # requests per bootstrapped run, as a share of the fixture's
    verdict_duration_s: float
    series_cases: int  # per class, change points and drift
    anomaly_series: int  # per noise kind
    forecast_series: int  # per kind of metric
    mde_series_cases: int
    mde_noise: tuple[float, ...]
    mde_runs: tuple[int, ...]
    mde_verdict_cases: int
    # (run-to-run drift, baseline runs, requests per endpoint per run) of each verdict cell
    mde_verdict_cells: tuple[tuple[float, int, int], ...]


SIZES = {
    # CI: well under a minute on two cores; enough cases to catch a broken detector.
    "small": BacktestSize(
        verdict_cases=10,
        fixture_cases=4,
        fixture_share=0.5,
        verdict_duration_s=10.0,
        series_cases=40,
        anomaly_series=6,
        forecast_series=4,
        mde_series_cases=20,
        mde_noise=(0.05,),
        mde_runs=(30, 120),
        mde_verdict_cases=10,
        mde_verdict_cells=((RUN_DRIFT, BASELINE_RUNS, 300),),
    ),
    # The numbers recorded in bench/BACKTEST.md.
    "full": BacktestSize(
        verdict_cases=100,
        fixture_cases=50,
        fixture_share=1.0,
        verdict_duration_s=20.0,
        series_cases=300,
        anomaly_series=50,
        forecast_series=100,
        mde_series_cases=200,
        mde_noise=(0.02, 0.05, 0.10),
        mde_runs=(30, 60, 120),
        mde_verdict_cases=40,
        mde_verdict_cells=(
            (RUN_DRIFT, BASELINE_RUNS, 100),
            (RUN_DRIFT, BASELINE_RUNS, 300),
            (RUN_DRIFT, BASELINE_RUNS, 1000),
            (RUN_DRIFT, 3, 300),
            (RUN_DRIFT, 10, 300),
            (0.01, BASELINE_RUNS, 300),
            (0.06, BASELINE_RUNS, 300),
        ),
    ),
}


def run_backtest(
    size: str = "small",
    seed: int = 0,
    *,
    fixtures: str | Path | None = DEFAULT_FIXTURES,
    policy: VerdictPolicy | None = None,
    progress: Callable[[str], None] | None = None,
) -> BacktestReport:
    r"""Score every detector on labelled synthetic histories and fixture-derived runs.

    Parameters
    ----------
    size : {"small", "full"}
        ``"small"`` runs in CI (well under a minute); ``"full"`` gives the recorded numbers.
    seed : int
        Seed of every case generator; the same seed gives the same report.
    fixtures : path or None
        Folder of the load-test fixtures (``locust/requests.ndjson``, ``jmeter/results.jtl``,
        ``k6/k6_out.json.gz``). Missing files are skipped; ``None`` or a missing folder skips
        the fixture-derived verdict cases (their row then has 0 cases).
    policy : VerdictPolicy, optional
        Verdict rules to judge the per-run cases with (default: the production defaults).
    progress : callable, optional
        Called with a short message as each part starts (for a CLI or a Dagster log).

    Returns
    -------
    BacktestReport

    Notes
    -----
    *Per-run verdicts.* A case is one candidate run judged against the requests of 5 baseline
    runs (with their run ids, so the run-to-run noise is estimated) by
    :func:`~metrics_pipeline.analysis.verdicts.judge_run`. Degraded cases slow every
    request of one endpoint by :math:`\\delta \\sim U(0.20, 0.50)`; that endpoint is chosen
    among those where a 20 % slowdown of p95 clears the policy's absolute floor (a slower
    sub-millisecond endpoint is, by design, not a regression). Recall = degraded runs whose
    endpoint is flagged on p50 or p95 latency; false-positive rate = unchanged runs with any
    row flagged; precision = correct (run, endpoint) flags / all flagged (run, endpoint) pairs.

    *Change points and drift.* Each case simulates the runs of one endpoint and scores its
    per-run p50 and p95 series; ``change points (p50 or p95)`` scores the endpoint as the
    nightly stage sees it, which scans both series (a hit in either counts). Precision counts
    detected points within 3 runs of a true step (at most one per step and series) among all
    detected points; the false-positive rate is the share of unchanged series with any
    detection. The delay replays a detected series run by run: the
    number of runs from the change (the step, or the first run of a drift) up to the first
    prefix on which it is found.

    *Anomalies.* Per point: recall over injected spikes, false-positive rate over the other
    observed points.

    *Forecasts.* :func:`~metrics_pipeline.stats.forecast.backtest_forecast` with the 30-step
    performance horizon held out; ``mape`` is the mean over the series.

    *Minimum detectable effect.* For each case the smallest effect on the grid that is
    detected is found by bisection (detection grows with the effect for fixed noise); the
    minimum detectable effect is the smallest grid effect detected in at least ``power`` of
    the cases.
    """
    if size not in SIZES:
        raise ValueError(f"unknown backtest size {size!r}; expected one of {sorted(SIZES)}")
    config = SIZES[size]
    policy = policy or VerdictPolicy()
    say = progress or (lambda _message: None)
    started = time.perf_counter()

    say("per-run verdicts on synthetic runs")
    scores = [_score_synthetic_verdicts(config, seed, policy)]
    say("per-run verdicts on runs bootstrapped from the fixtures")
    samples, fixture_note = _load_fixtures(fixtures)
    scores.append(_score_fixture_verdicts(config, seed, policy, samples))
    say("change points")
    scores += _score_change_points(config, seed)
    say("drift")
    scores += _score_drift(config, seed)
    say("anomalies")
    scores += _score_anomalies(config, seed)
    say("forecasts")
    scores += _score_forecasts(config, seed)
    say("minimum detectable effects")
    effects = _step_mde(config, seed) + _verdict_mde(config, seed, policy)

    return BacktestReport(
        size=size,
        seed=seed,
        detectors=tuple(score.scored() for score in scores),
        minimum_detectable_effect=tuple(effects),
        elapsed_s=time.perf_counter() - started,
        fixtures=fixture_note,
        policy=_describe(policy),
    )


def _describe(policy: VerdictPolicy) -> str:
    """The latency rules of a verdict policy, in words."""
    rules = [
        f"{metric} worse by > {rule.estimate_share * rule.threshold:.0%} with the 95 % CI "
        f"reaching {rule.threshold:.0%}, and >= {rule.min_effect:g} ms "
        f"(BH-adjusted p < {rule.alpha:g}, run-to-run noise included)"
        for metric, rule in ((m, policy.rule(m)) for m in LATENCY_METRICS)
    ]
    default = " (the production default)" if policy == VerdictPolicy() else ""
    return "; ".join(rules) + default


def _rng(seed: int, part: str, case: int) -> np.random.Generator:
    """A generator of its own for each case of each part."""
    return np.random.default_rng([seed, zlib.crc32(part.encode()), case])


# --- per-run verdicts -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """Latency distribution of an endpoint: log-normal, or a mixture of a fast and a slow
    log-normal mode (cache hit / miss) when ``slow_share`` > 0."""

    median_ms: float
    sigma: float
    slow_share: float = 0.0
    slow_ratio: float = 1.0
    slow_sigma: float = 0.5

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Latencies (ms) of ``size`` requests of one run."""
        latency = rng.lognormal(math.log(self.median_ms), self.sigma, size)
        if self.slow_share > 0:
            # The miss rate itself moves from run to run (+-15 % of itself).
            share = self.slow_share * math.exp(rng.normal(0, 0.15))
            slow = rng.random(size) < share
            latency[slow] = rng.lognormal(
                math.log(self.median_ms * self.slow_ratio), self.slow_sigma, int(slow.sum())
            )
        outliers = rng.random(size) < OUTLIER_RATE
        latency[outliers] *= rng.uniform(5, 20, int(outliers.sum()))
        return latency

    def describe(self) -> str:
        body = f"log-normal {self.median_ms:g} ms, sigma {self.sigma:g}"
        if self.slow_share:
            body += f" + {self.slow_share:.0%} slow mode x{self.slow_ratio:g}"
        return body


@dataclass(frozen=True)
class _Endpoint:
    name: str
    shape: _Shape
    rps: float


# A sub-millisecond health check (never a regression by the floor, but a source of false
# alarms), two log-normal and two bimodal endpoints.
VERDICT_ENDPOINTS = (
    _Endpoint("/health", _Shape(0.6, 0.35), 20),
    _Endpoint("/api/items", _Shape(12.0, 0.45), 30),
    _Endpoint("/api/search", _Shape(20.0, 0.35, slow_share=0.10, slow_ratio=8.0), 15),
    _Endpoint("/api/cart", _Shape(9.0, 0.40, slow_share=0.08, slow_ratio=6.0), 25),
    _Endpoint("/api/orders", _Shape(48.0, 0.40), 10),
)


@dataclass(frozen=True)
class _EndpointSample:
    """One endpoint of a fixture run: its requests' latencies, outcomes and offsets."""

    latency_ms: np.ndarray
    ok: np.ndarray
    offset_s: np.ndarray
    integer_ms: bool  # the tool reports whole milliseconds (JMeter): keep that resolution


def _requests_frame(run_id: str, parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """A canonical ``requests`` frame from ``endpoint -> (latency_ms, ok, offset_s)``."""
    names, latency, ok, offsets = [], [], [], []
    for name, (lat, good, offset) in parts.items():
        names.append(np.full(lat.size, name, dtype=object))
        latency.append(lat)
        ok.append(good)
        offsets.append(offset)
    good = np.concatenate(ok)
    micros = _EPOCH_US + np.rint(np.concatenate(offsets) * 1e6).astype(np.int64)
    frame = pl.DataFrame(
        {
            "run_id": run_id,
            "ts": pl.Series(micros).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "endpoint": pl.Series(np.concatenate(names), dtype=pl.String),
            "method": "GET",
            "status": np.where(good, 200, 500),
            "ok": good,
            "latency_ms": np.concatenate(latency),
        }
    )
    return conform("requests", frame)


def _synthetic_run(
    rng: np.random.Generator,
    run_id: str,
    endpoints: Sequence[_Endpoint],
    duration_s: float,
    slow: dict[str, float],
    drift: float = RUN_DRIFT,
) -> pl.DataFrame:
    """One run's requests: each endpoint at its rate for ``duration_s``, its latency moved by
    the run-to-run drift (log-normal, ``drift`` standard deviation) and multiplied by
    ``slow[name]`` when given."""
    parts = {}
    for endpoint in endpoints:
        n = round(endpoint.rps * duration_s)
        factor = math.exp(rng.normal(0, drift)) * slow.get(endpoint.name, 1.0)
        latency = endpoint.shape.sample(rng, n) * factor
        ok = rng.random(n) >= ERROR_RATE
        parts[endpoint.name] = (latency, ok, rng.uniform(0, duration_s, n))
    return _requests_frame(run_id, parts)


def _fixture_run(
    rng: np.random.Generator,
    run_id: str,
    samples: dict[str, _EndpointSample],
    slow: dict[str, float],
    share: float = 1.0,
) -> pl.DataFrame:
    """A bootstrap resample of every endpoint's requests (``share`` of their number) with a
    run-to-run drift."""
    parts = {}
    for name, sample in samples.items():
        count = max(2, round(share * sample.latency_ms.size))
        pick = rng.integers(0, sample.latency_ms.size, count)
        factor = math.exp(rng.normal(0, RUN_DRIFT)) * slow.get(name, 1.0)
        latency = sample.latency_ms[pick] * factor
        if sample.integer_ms:
            latency = np.rint(latency)
        parts[name] = (latency, sample.ok[pick], sample.offset_s[pick])
    return _requests_frame(run_id, parts)


def _flags(verdicts: pl.DataFrame) -> dict[str, set[str]]:
    """Flagged metrics per endpoint."""
    flagged: dict[str, set[str]] = {}
    regressions = verdicts.filter(pl.col("regression"))
    for endpoint, metric in regressions.select("endpoint", "metric").rows():
        flagged.setdefault(endpoint, set()).add(metric)
    return flagged


@dataclass(frozen=True)
class _VerdictOutcome:
    endpoint: str | None  # the degraded endpoint; None for an unchanged candidate
    effect: float
    flags: dict[str, set[str]]

    @property
    def detected(self) -> bool:
        return bool(self.flags.get(self.endpoint, set()) & set(LATENCY_METRICS))


def _judge_case(
    rng: np.random.Generator,
    make_run: Callable[[np.random.Generator, str, dict[str, float]], pl.DataFrame],
    eligible: Sequence[str],
    degraded: bool,
    policy: VerdictPolicy,
) -> _VerdictOutcome:
    endpoint, effect = None, 0.0
    if degraded:
        endpoint = str(rng.choice(list(eligible)))
        effect = float(rng.uniform(*DEGRADATION_RANGE))
    runs = [f"base-{i}" for i in range(BASELINE_RUNS)]
    baseline = pl.concat([make_run(rng, run, {}) for run in runs])
    candidate = make_run(rng, "candidate", {endpoint: 1 + effect} if endpoint else {})
    return _VerdictOutcome(endpoint, effect, _flags(judge_run(candidate, baseline, runs, policy)))


def _material(p95_ms: float, policy: VerdictPolicy) -> bool:
    """Whether a 20 % slowdown of this p95 clears the policy's absolute floor."""
    return DEGRADATION_RANGE[0] * p95_ms >= policy.rule("latency_p95").min_effect


def _score_synthetic_verdicts(
    config: BacktestSize, seed: int, policy: VerdictPolicy
) -> DetectorScore:
    eligible = [
        e.name
        for e in VERDICT_ENDPOINTS
        if _material(float(np.quantile(e.shape.sample(_rng(seed, "p95", 0), 20_000), 0.95)), policy)
    ]

    def make_run(rng, run_id, slow):
        return _synthetic_run(rng, run_id, VERDICT_ENDPOINTS, config.verdict_duration_s, slow)

    outcomes = [
        _judge_case(_rng(seed, "verdict", 2 * i + degraded), make_run, eligible, degraded, policy)
        for i in range(config.verdict_cases)
        for degraded in (True, False)
    ]
    requests = ", ".join(
        f"{e.name} {e.shape.describe()} ~{e.rps * config.verdict_duration_s:.0f} req"
        for e in VERDICT_ENDPOINTS
    )
    detail = (
        f"candidate run vs {BASELINE_RUNS} baseline runs (run ids kept), judged by judge_run; "
        f"endpoints per run: {requests}; {OUTLIER_RATE:.1%} of requests x5-20, "
        f"{ERROR_RATE:.0%} errors, run-to-run drift {RUN_DRIFT:.0%} per endpoint, bimodal slow "
        f"share +-15 % per run; degradation +{DEGRADATION_RANGE[0]:.0%}..+"
        f"{DEGRADATION_RANGE[1]:.0%} of one of {', '.join(eligible)}"
    )
    return _verdict_score("per-run verdict (synthetic)", outcomes, detail)


def _load_fixtures(fixtures: str | Path | None) -> tuple[list[dict[str, _EndpointSample]], str]:
    if fixtures is None:
        return [], "not used"
    from metrics_pipeline.formats import read_results  # the parsers are needed only here

    root = Path(fixtures)
    samples, used = [], []
    for relative in FIXTURE_FILES:
        path = root / relative
        if not path.is_file():
            continue
        requests = read_results(path).requests.filter(pl.col("latency_ms").is_not_null())
        if requests.height == 0:
            continue
        start = requests["ts"].min()
        runs = {}
        for (endpoint,), rows in requests.group_by(["endpoint"], maintain_order=True):
            latency = rows["latency_ms"].to_numpy()
            runs[str(endpoint)] = _EndpointSample(
                latency_ms=latency,
                ok=rows["ok"].fill_null(False).to_numpy(),
                offset_s=(rows["ts"] - start).dt.total_microseconds().to_numpy() / 1e6,
                integer_ms=bool(np.all(latency == np.rint(latency))),
            )
        samples.append(runs)
        used.append(f"{relative} ({requests.height} requests, {len(runs)} endpoints)")
    if not samples:
        return [], f"none found under {root}: fixture cases skipped"
    return samples, f"{root}: " + "; ".join(used)


def _score_fixture_verdicts(
    config: BacktestSize,
    seed: int,
    policy: VerdictPolicy,
    fixtures: list[dict[str, _EndpointSample]],
) -> DetectorScore:
    name = "per-run verdict (fixtures)"
    if not fixtures:
        return DetectorScore(
            name, 0, 0, 0, None, None, None, target=VERDICT_TARGET, detail="skipped: no fixtures"
        )
    outcomes = []
    for i in range(config.fixture_cases):
        samples = fixtures[i % len(fixtures)]
        eligible = [
            name
            for name, sample in samples.items()
            if _material(float(np.quantile(sample.latency_ms, 0.95)), policy)
        ]

        def make_run(rng, run_id, slow, samples=samples):
            return _fixture_run(rng, run_id, samples, slow, config.fixture_share)

        for degraded in (True, False):
            rng = _rng(seed, "fixture verdict", 2 * i + degraded)
            outcomes.append(_judge_case(rng, make_run, eligible, degraded, policy))
    detail = (
        f"each run a bootstrap resample (rows with replacement, per endpoint, "
        f"{config.fixture_share:.0%} of the count) of one "
        f"fixture's requests ({', '.join(FIXTURE_FILES)} in turn), times a run-to-run drift of "
        f"{RUN_DRIFT:.0%}; JMeter's whole milliseconds kept; degradation "
        f"+{DEGRADATION_RANGE[0]:.0%}..+{DEGRADATION_RANGE[1]:.0%} of one endpoint whose p95 x "
        "20 % clears the 1 ms floor"
    )
    return _verdict_score(name, outcomes, detail)


def _verdict_score(name: str, outcomes: list[_VerdictOutcome], detail: str) -> DetectorScore:
    positives = [o for o in outcomes if o.endpoint is not None]
    negatives = [o for o in outcomes if o.endpoint is None]
    flagged_pairs = sum(len(o.flags) for o in outcomes)
    correct_pairs = sum(o.detected for o in positives)
    bands = ((0.20, 0.25), (0.25, 0.30), (0.30, 0.40), (0.40, 0.50))
    false_alarms: dict[str, int] = {}
    for outcome in negatives:
        for endpoint, metrics in outcome.flags.items():
            for metric in metrics:
                label = f"false alarm: {endpoint} {metric}"
                false_alarms[label] = false_alarms.get(label, 0) + 1
    return DetectorScore(
        name=name,
        cases=len(outcomes),
        positives=len(positives),
        negatives=len(negatives),
        precision=_ratio(correct_pairs, flagged_pairs),
        recall=_ratio(sum(o.detected for o in positives), len(positives)),
        false_positive_rate=_ratio(sum(bool(o.flags) for o in negatives), len(negatives)),
        target=VERDICT_TARGET,
        unit="run",
        detail=detail,
        breakdown=tuple(
            Breakdown(
                f"+{low:.0%}..+{high:.0%}",
                sum(o.detected for o in positives if low <= o.effect < high),
                sum(low <= o.effect < high for o in positives),
            )
            for low, high in bands
        )
        + tuple(
            Breakdown(label, count, len(negatives)) for label, count in sorted(false_alarms.items())
        ),
    )


# --- per-run histories ----------------------------------------------------------------------


def _history(rng: np.random.Generator, multiplier: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-run p50 and p95 (rows) of simulated runs whose latency is scaled by ``multiplier``,
    and the kind of latency distribution.

    Each run has 200-1000 requests from a log-normal or bimodal distribution; run-to-run noise
    is log Student-t (3 degrees of freedom, heavy tails) with a coefficient of variation of
    2-8 %; 3 % of runs are 1.5-3x slower (a noisy neighbour); 5-10 % of runs are missing.
    """
    n = multiplier.size
    bimodal = rng.random() >= 0.5
    if not bimodal:
        shape = _Shape(rng.uniform(5, 100), rng.uniform(0.3, 0.6))
    else:
        shape = _Shape(
            rng.uniform(5, 50),
            rng.uniform(0.3, 0.5),
            slow_share=rng.uniform(0.05, 0.15),
            slow_ratio=rng.uniform(4, 10),
        )
    requests = int(rng.integers(200, 1001))
    cv = rng.uniform(0.02, 0.08)
    noise = np.exp(cv * rng.standard_t(3, n) / math.sqrt(3))
    noisy = rng.random(n) < 0.03
    noise[noisy] *= rng.uniform(1.5, 3.0, int(noisy.sum()))
    latency = np.stack([shape.sample(rng, requests) for _ in range(n)])
    latency *= (multiplier * noise)[:, None]
    quantiles = np.quantile(latency, [0.5, 0.95], axis=1)
    missing = rng.random(n) < rng.uniform(0.05, 0.10)
    quantiles[:, missing] = np.nan
    return quantiles, "bimodal" if bimodal else "log-normal"


def _found(points: Sequence[int], truth: int) -> bool:
    return any(abs(p - truth) <= CHANGE_POINT_TOLERANCE for p in points)


def _replay_delay(series: np.ndarray, start: int, detected: Callable[[np.ndarray], bool]):
    """Runs from ``start`` to the first prefix of ``series`` (the last axis: runs) on which
    ``detected`` holds."""
    for end in range(start + 1, series.shape[-1] + 1):
        if detected(series[..., :end]):
            return end - start
    return None


@dataclass
class _SeriesTally:
    """Counts for one series-level detector."""

    positives: int = 0
    negatives: int = 0
    hits: int = 0
    false_alarms: int = 0  # negatives with any detection
    detections: int = 0
    correct_detections: int = 0
    delays: list[int] = field(default_factory=list)
    bands: dict[str, list[int]] = field(default_factory=dict)  # label -> [hits, cases]

    def band(self, label: str, hit: bool) -> None:
        tally = self.bands.setdefault(label, [0, 0])
        tally[0] += hit
        tally[1] += 1

    def score(self, name: str, target: Target | None, detail: str) -> DetectorScore:
        return DetectorScore(
            name=name,
            cases=self.positives + self.negatives,
            positives=self.positives,
            negatives=self.negatives,
            precision=_ratio(self.correct_detections, self.detections),
            recall=_ratio(self.hits, self.positives),
            false_positive_rate=_ratio(self.false_alarms, self.negatives),
            delay_mean=float(np.mean(self.delays)) if self.delays else None,
            delay_median=float(np.median(self.delays)) if self.delays else None,
            target=target,
            unit="series",
            detail=detail,
            breakdown=tuple(Breakdown(k, h, c) for k, (h, c) in sorted(self.bands.items())),
        )


_HISTORY_DETAIL = (
    "per-run p50/p95 of 30-120 simulated runs of 200-1000 requests each (log-normal or "
    "bimodal latencies with 0.5 % of requests x5-20), run-to-run noise log Student-t(3) with "
    "CV 2-8 %, 3 % of runs x1.5-3, 5-10 % of runs missing"
)


def _score_change_points(config: BacktestSize, seed: int) -> list[DetectorScore]:
    # The nightly stage scans every latency series of an endpoint, so an endpoint's step is
    # found when its p50 or its p95 series shows it: scored as a third row.
    tallies = {"p50": _SeriesTally(), "p95": _SeriesTally(), "p50 or p95": _SeriesTally()}
    for i in range(config.series_cases):
        for changed in (True, False):
            rng = _rng(seed, "change points", 2 * i + changed)
            n = int(rng.integers(30, 121))
            edge = max(5, round(0.1 * n))
            position = int(rng.integers(edge, n - edge + 1))
            step = rng.uniform(*STEP_RANGE) * rng.choice([-1.0, 1.0]) if changed else 0.0
            multiplier = np.where(np.arange(n) >= position, 1 + step, 1.0)
            quantiles, kind = _history(rng, multiplier)
            points = [detect_change_points(series) for series in quantiles]
            hits = [_found(found, position) for found in points]
            scans = {
                "p50": (points[0], hits[:1], _finds(position, rows=(0,))),
                "p95": (points[1], hits[1:], _finds(position, rows=(1,))),
                "p50 or p95": (points[0] + points[1], hits, _finds(position, rows=(0, 1))),
            }
            for metric, (found, series_hits, finds_in) in scans.items():
                tally = tallies[metric]
                tally.detections += len(found)
                if not changed:
                    tally.negatives += 1
                    tally.false_alarms += bool(found)
                    tally.band(f"false alarm: {kind}", bool(found))
                    continue
                hit = any(series_hits)
                tally.positives += 1
                tally.hits += hit
                tally.correct_detections += sum(series_hits)  # at most one point per series
                sign = "+" if step > 0 else "-"
                tally.band(f"{sign}{_band(abs(step), STEP_RANGE)}", hit)
                tally.band(f"{kind} latencies", hit)
                tally.band("missed, with a point > 3 runs away", bool(found) and not hit)
                if hit:
                    tally.delays.append(_replay_delay(quantiles, position, finds_in))
    detail = (
        f"{_HISTORY_DETAIL}; steps +-{STEP_RANGE[0]:.0%}..{STEP_RANGE[1]:.0%} at a uniform "
        f"position >= max(5, n/10) runs from either end; hit = a point within "
        f"{CHANGE_POINT_TOLERANCE} runs (p50 or p95: in either series of the endpoint)"
    )
    return [
        tally.score(f"change points ({metric})", CHANGE_POINT_TARGET, detail)
        for metric, tally in tallies.items()
    ]


def _finds(position: int, rows: tuple[int, ...] | None = None) -> Callable[[np.ndarray], bool]:
    """Whether a series (or any of the ``rows`` of a 2-D array of series) has a change point
    within the tolerance of ``position``."""
    if rows is None:
        return lambda series: _found(detect_change_points(series), position)
    return lambda series: any(_found(detect_change_points(series[r]), position) for r in rows)


def _band(size: float, bounds: tuple[float, float], spec: str = ".1%") -> str:
    """The lower or upper half of ``bounds`` that ``size`` falls in, as text."""
    middle = (bounds[0] + bounds[1]) / 2
    low, high = (bounds[0], middle) if size < middle else (middle, bounds[1])
    return f"{low:{spec}}..{high:{spec}}"


def _score_drift(config: BacktestSize, seed: int) -> list[DetectorScore]:
    tallies = {"p50": _SeriesTally(), "p95": _SeriesTally()}
    for i in range(config.series_cases):
        for drifting in (True, False):
            rng = _rng(seed, "drift", 2 * i + drifting)
            n = int(rng.integers(30, 121))
            slope = rng.uniform(*DRIFT_RANGE) if drifting else 0.0
            multiplier = 1 + slope * np.arange(n)
            quantiles, kind = _history(rng, multiplier)
            for series, tally in zip(quantiles, tallies.values(), strict=True):
                drift = detect_drift(series)
                tally.detections += drift is not None
                if not drifting:
                    tally.negatives += 1
                    tally.false_alarms += drift is not None
                    tally.band(f"false alarm: {kind}", drift is not None)
                    continue
                tally.positives += 1
                hit = drift is not None and drift.direction == "increasing"
                tally.hits += hit
                tally.correct_detections += hit
                tally.band(f"{_band(slope, DRIFT_RANGE)} per run", hit)
                tally.band(f"{kind} latencies", hit)
                if hit:
                    tally.delays.append(_replay_delay(series, 0, _rising))
    detail = (
        f"{_HISTORY_DETAIL}; linear drift +{DRIFT_RANGE[0]:.1%}..+{DRIFT_RANGE[1]:.0%} of the "
        "starting level per run from the first run (so at least +14.5 % in all), detected as "
        "increasing by detect_drift"
    )
    return [tally.score(f"drift ({metric})", None, detail) for metric, tally in tallies.items()]


def _rising(series: np.ndarray) -> bool:
    drift = detect_drift(series)
    return drift is not None and drift.direction == "increasing"


# --- monitoring series ----------------------------------------------------------------------


def _score_anomalies(config: BacktestSize, seed: int) -> list[DetectorScore]:
    scores = []
    for noise_kind in ("gaussian", "student-t(5)"):
        flagged_total = spikes_total = spikes_found = normal_points = false_points = 0
        bands: dict[str, list[int]] = {}
        for i in range(config.anomaly_series):
            rng = _rng(seed, f"anomalies {noise_kind}", i)
            n = 24 * int(rng.integers(14, 29))
            hours = np.arange(n)
            level = rng.uniform(20, 200)
            phase, phase2 = rng.uniform(0, 2 * np.pi, 2)
            amplitude = rng.uniform(0.1, 0.4)
            angle = 2 * np.pi * hours / 24
            daily = amplitude * (np.sin(angle + phase) + 0.3 * np.sin(2 * angle + phase2))
            trend = rng.uniform(-0.1, 0.1) * hours / n
            sd = rng.uniform(0.02, 0.05) * level
            if noise_kind == "gaussian":
                noise = rng.normal(0, 1, n)
            else:
                noise = rng.standard_t(5, n) / math.sqrt(5 / 3)
            values = level * (1 + daily + trend) + sd * noise
            missing = rng.random(n) < 0.01
            values[missing] = np.nan
            count = int(rng.integers(2, 7))
            where = rng.choice(np.flatnonzero(~missing), count, replace=False)
            sizes = rng.uniform(*SPIKE_SIGMAS, count)
            signs = np.where(rng.random(count) < 0.8, 1.0, -1.0)
            values[where] += signs * sizes * sd
            flagged = set(detect_anomalies(values, period=24))
            spikes = set(where.tolist())
            flagged_total += len(flagged)
            spikes_total += count
            spikes_found += len(flagged & spikes)
            normal_points += int((~missing).sum()) - count
            false_points += len(flagged - spikes)
            for size, position in zip(sizes, where, strict=True):
                label = f"{_band(size, SPIKE_SIGMAS, 'g')} sd"
                tally = bands.setdefault(label, [0, 0])
                tally[0] += int(position) in flagged
                tally[1] += 1
        scores.append(
            DetectorScore(
                name=f"anomalies ({noise_kind} noise)",
                cases=spikes_total + normal_points,
                positives=spikes_total,
                negatives=normal_points,
                precision=_ratio(spikes_found, flagged_total),
                recall=_ratio(spikes_found, spikes_total),
                false_positive_rate=_ratio(false_points, normal_points),
                unit="point",
                detail=(
                    f"{config.anomaly_series} hourly series of 14-28 days, daily cycle of "
                    "+-10-40 % (two harmonics), slow trend, noise sd 2-5 % of the level "
                    f"({noise_kind}), 1 % missing; 2-6 spikes of {SPIKE_SIGMAS[0]:g}-"
                    f"{SPIKE_SIGMAS[1]:g} noise sd (80 % up); detect_anomalies(period=24)"
                ),
                breakdown=tuple(Breakdown(k, h, c) for k, (h, c) in sorted(bands.items())),
            )
        )
    return scores


def _daily_series(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A trending daily series: 60-150 days of history plus the held-out horizon."""
    n = int(rng.integers(60, 151)) + PERFORMANCE_HORIZON
    days = np.arange(n)
    weekend = ((days + rng.integers(0, 7)) % 7) >= 5
    if kind == "throughput":
        # Requests per second: growing 0.2-1 %/day, quieter weekends, incident days.
        level = rng.uniform(200, 5000)
        values = level * (1 + rng.uniform(0.002, 0.01) * days)
        values *= 1 - rng.uniform(0, 0.08) * weekend
        values *= np.exp(rng.normal(0, rng.uniform(0.02, 0.05), n))
        incidents = rng.random(n) < 0.01
        values[incidents] *= rng.uniform(0.5, 0.8, int(incidents.sum()))
    elif kind == "latency":
        # Daily p95: creeping up 0.1-0.5 %/day, heavy-tailed noise, bad days 1.3-2x.
        level = rng.uniform(50, 400)
        values = level * (1 + rng.uniform(0.001, 0.005) * days)
        values *= np.exp(rng.uniform(0.03, 0.06) * rng.standard_t(4, n) / math.sqrt(2))
        bad = rng.random(n) < 0.02
        values[bad] *= rng.uniform(1.3, 2.0, int(bad.sum()))
    else:
        # CPU %: +0.05-0.3 points/day, weekly pattern, additive noise of 1-3 points.
        level = rng.uniform(20, 50)
        values = level + rng.uniform(0.05, 0.3) * days
        values *= 1 - rng.uniform(0, 0.10) * weekend
        values += rng.normal(0, rng.uniform(1, 3), n)
    values[rng.random(n) < 0.03] = np.nan
    return values


FORECAST_KINDS = ("throughput", "latency", "cpu")


def _score_forecasts(config: BacktestSize, seed: int) -> list[DetectorScore]:
    details = {
        "throughput": "requests/s growing +0.2..1 %/day, weekends up to 8 % lower, log-normal "
        "noise 2-5 %, 1 % incident days x0.5-0.8",
        "latency": "daily p95 growing +0.1..0.5 %/day, log Student-t(4) noise 3-6 %, 2 % bad "
        "days x1.3-2",
        "cpu": "CPU % growing +0.05..0.3 points/day from 20-50 %, weekends up to 10 % lower, "
        "noise 1-3 points",
    }
    scores = []
    for kind in FORECAST_KINDS:
        errors = np.array(
            [
                backtest_forecast(_daily_series(_rng(seed, f"forecast {kind}", i), kind))
                for i in range(config.forecast_series)
            ]
        )
        under = int(np.sum(errors < FORECAST_TARGET.max_mape))
        scores.append(
            DetectorScore(
                name=f"forecast ({kind})",
                cases=errors.size,
                positives=errors.size,
                negatives=0,
                precision=None,
                recall=None,
                false_positive_rate=None,
                mape=float(np.mean(errors)),
                target=FORECAST_TARGET,
                unit="series",
                detail=(
                    f"{details[kind]}; 60-150 days of history, 3 % missing days, MAPE on the "
                    f"held-out {PERFORMANCE_HORIZON} days (method auto); median MAPE "
                    f"{np.median(errors):.1%}, 90th percentile {np.quantile(errors, 0.9):.1%}"
                ),
                breakdown=(Breakdown("series with MAPE < 10 %", under, errors.size),),
            )
        )
    return scores


# --- minimum detectable effect --------------------------------------------------------------


def _critical_effect(
    grid: Sequence[float], detected: Callable[[float], bool], guess: int | None = None
) -> float:
    """Smallest grid effect that is detected; ``inf`` when none is.

    From ``guess`` (a grid index), walks down while detected or up until detected: two or
    three calls when the guess is good. Without a guess, bisection over the grid.
    """
    if guess is not None:
        index = guess
        if detected(grid[index]):
            while index > 0 and detected(grid[index - 1]):
                index -= 1
            return grid[index]
        while index + 1 < len(grid):
            index += 1
            if detected(grid[index]):
                return grid[index]
        return math.inf
    if not detected(grid[-1]):
        return math.inf
    low, high = -1, len(grid) - 1  # grid[high] is detected; grid[low] is not (or below grid)
    while high - low > 1:
        middle = (low + high) // 2
        if detected(grid[middle]):
            high = middle
        else:
            low = middle
    return grid[high]


def _mde(critical: Sequence[float], grid: Sequence[float], power: float) -> float | None:
    """Smallest grid effect at least ``power`` of the cases detect."""
    critical = np.asarray(critical)
    for effect in grid:
        if np.mean(critical <= effect) >= power:
            return effect
    return None


def _step_mde(config: BacktestSize, seed: int) -> list[MinimumDetectableEffect]:
    """Change points: per-run values with log-normal noise, a step up in the middle."""
    cells = []
    for noise in config.mde_noise:
        for runs in config.mde_runs:
            position = runs // 2
            after = np.arange(runs) >= position
            finds = _finds(position)
            critical = []
            for i in range(config.mde_series_cases):
                z = _rng(seed, f"mde steps {noise} {runs}", i).normal(0, noise, runs)

                def detected(effect: float, z=z, after=after, finds=finds) -> bool:
                    return finds(np.exp(z + np.log1p(effect) * after))

                critical.append(_critical_effect(STEP_EFFECT_GRID, detected))
            cells.append(
                MinimumDetectableEffect(
                    detector="change points",
                    noise=noise,
                    runs=runs,
                    requests_per_endpoint=None,
                    power=CHANGE_POINT_POWER,
                    effect=_mde(critical, STEP_EFFECT_GRID, CHANGE_POINT_POWER),
                    cases=config.mde_series_cases,
                )
            )
    return cells


# One endpoint far above the absolute floor, so that only the relative threshold and the noise
# decide; its run-to-run drift is the demo's.
MDE_ENDPOINT = _Endpoint("/api/endpoint", _Shape(50.0, 0.5), 10)


def _threshold_crossing(
    baseline: pl.DataFrame, candidate: pl.DataFrame, policy: VerdictPolicy
) -> float:
    """The slowdown at which the candidate's p50 or p95 first exceeds the share of its
    relative threshold that the estimate must pass: where the search for the critical effect
    starts (significance and the CI may move it up)."""
    base = baseline.filter(pl.col("ok"))["latency_ms"].to_numpy()
    cand = candidate.filter(pl.col("ok"))["latency_ms"].to_numpy()
    return min(
        (1 + policy.rule(metric).estimate_share * policy.rule(metric).threshold)
        * np.quantile(base, q)
        / np.quantile(cand, q)
        - 1
        for metric, q in (("latency_p50", 0.5), ("latency_p95", 0.95))
    )


def _verdict_mde(
    config: BacktestSize, seed: int, policy: VerdictPolicy
) -> list[MinimumDetectableEffect]:
    """Per-run verdict: the smallest slowdown of one endpoint flagged in 95 % of the runs, per
    run-to-run drift, number of baseline runs and requests per run."""
    cells = []
    for drift, n_runs, requests in config.mde_verdict_cells:
        runs = [f"base-{i}" for i in range(n_runs)]
        duration = requests / MDE_ENDPOINT.rps
        critical = []
        # The default cells keep the case names of earlier versions (same draws).
        part = f"mde verdict {requests}"
        if (drift, n_runs) != (RUN_DRIFT, BASELINE_RUNS):
            part += f" drift {drift} runs {n_runs}"
        for i in range(config.mde_verdict_cases):
            rng = _rng(seed, part, i)
            baseline = pl.concat(
                [_synthetic_run(rng, run, [MDE_ENDPOINT], duration, {}, drift) for run in runs]
            )
            candidate = _synthetic_run(rng, "candidate", [MDE_ENDPOINT], duration, {}, drift)

            def detected(effect, baseline=baseline, candidate=candidate, runs=runs) -> bool:
                slower = candidate.with_columns(pl.col("latency_ms") * (1 + effect))
                flags = _flags(judge_run(slower, baseline, runs, policy))
                return bool(flags.get(MDE_ENDPOINT.name, set()) & set(LATENCY_METRICS))

            guess = _threshold_crossing(baseline, candidate, policy)
            start = int(np.searchsorted(VERDICT_EFFECT_GRID, guess))
            start = min(max(start, 0), len(VERDICT_EFFECT_GRID) - 1)
            critical.append(_critical_effect(VERDICT_EFFECT_GRID, detected, start))
        cells.append(
            MinimumDetectableEffect(
                detector="per-run verdict",
                noise=drift,
                runs=n_runs,
                requests_per_endpoint=requests,
                power=VERDICT_POWER,
                effect=_mde(critical, VERDICT_EFFECT_GRID, VERDICT_POWER),
                cases=config.mde_verdict_cases,
            )
        )
    return cells
