"""Per-run verdict cases of the detector backtest: candidate runs with or without one slower
endpoint, synthetic or bootstrapped from the load-test fixtures, judged by
:func:`~metrics_pipeline.analysis.verdicts.judge_run` against baseline runs, and the smallest
slowdown the verdict flags (minimum detectable effect)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from metrics_pipeline.analysis.summary import summarize_requests
from metrics_pipeline.analysis.verdicts import (
    LATENCY_METRICS,
    VerdictPolicy,
    history_noise,
    judge_run,
)
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.evaluation.demo_data import ERROR_RATE, OUTLIER_RATE, RUN_DRIFT
from metrics_pipeline.evaluation.sampling import BASELINE_RUNS, BacktestSize, _rng, _Shape
from metrics_pipeline.evaluation.scoring import (
    VERDICT_TARGET,
    Breakdown,
    DetectorScore,
    MinimumDetectableEffect,
    _critical_effect,
    _mde,
    _ratio,
)
from metrics_pipeline.settings import CHECKOUT

# Real tool files in a checkout (absent from an installed wheel: then no fixture cases).
DEFAULT_FIXTURES = CHECKOUT / "tests" / "fixtures" / "loadtest"
# Fixture files with per-request rows, read through the production parsers.
FIXTURE_FILES = ("locust/requests.ndjson", "jmeter/results.jtl", "k6/k6_out.json.gz")
# Degradations injected into per-run verdict cases, relative (0.2 = 20 % slower).
DEGRADATION_RANGE = (0.20, 0.50)
# Recall is scored on the degradations from +30 %: a regression is an estimate worse by more
# than 20 %, so a true +20-30 % slowdown is flagged about half to most of the time by design
# (its bands are reported; bench/verdict_calibration.py measures the whole power curve).
RECALL_FROM = 0.30
# Earlier runs of a case's combination, its history (the CI stage takes up to 20).
HISTORY_RUNS = 8
VERDICT_POWER = 0.95
# Grid searched for the minimum detectable effect. The per-run verdict cannot flag less than
# its threshold (20 % by default), so its grid starts below that.
VERDICT_EFFECT_GRID = tuple(round(0.10 + 0.025 * k, 4) for k in range(37))  # 10 % .. 100 %

_START = datetime(2026, 11, 1, tzinfo=UTC)
_EPOCH_US = int(_START.timestamp() * 1_000_000)


# --- per-run verdicts -----------------------------------------------------------------------


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
    # The combination's earlier accepted runs, as the CI stage has them once it has run for a
    # while: their spread measures the run noise (see verdicts.history_noise).
    earlier = pl.concat([make_run(rng, f"earlier-{i}", {}) for i in range(HISTORY_RUNS)])
    history = history_noise(summarize_requests(earlier))
    baseline = pl.concat([make_run(rng, run, {}) for run in runs])
    candidate = make_run(rng, "candidate", {endpoint: 1 + effect} if endpoint else {})
    verdicts = judge_run(candidate, baseline, runs, policy, history=history)
    return _VerdictOutcome(endpoint, effect, _flags(verdicts))


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
        f"candidate run vs {BASELINE_RUNS} baseline runs (run ids kept) and a history of "
        f"{HISTORY_RUNS} earlier runs, judged by judge_run; "
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
    scored = [o for o in positives if o.effect >= RECALL_FROM]
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
        recall=_ratio(sum(o.detected for o in scored), len(scored)),
        false_positive_rate=_ratio(sum(bool(o.flags) for o in negatives), len(negatives)),
        target=VERDICT_TARGET,
        unit="run",
        detail=f"{detail}; recall scored from +{RECALL_FROM:.0%}",
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


# --- minimum detectable effect --------------------------------------------------------------


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
        (1 + policy.rule(metric).threshold) * np.quantile(base, q) / np.quantile(cand, q) - 1
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
