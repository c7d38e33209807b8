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

The backtest is split by concern: :mod:`~metrics_pipeline.evaluation.scoring` (targets, scores,
the report), :mod:`~metrics_pipeline.evaluation.sampling` (sizes, per-case generators, latency
shapes), :mod:`~metrics_pipeline.evaluation.verdict_cases`,
:mod:`~metrics_pipeline.evaluation.history_cases` and
:mod:`~metrics_pipeline.evaluation.forecast_cases` (the cases of each detector). This module
runs them in order and re-exports their public names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from metrics_pipeline.analysis.verdicts import LATENCY_METRICS, VerdictPolicy
from metrics_pipeline.evaluation.forecast_cases import FORECAST_KINDS, _score_forecasts
from metrics_pipeline.evaluation.history_cases import (
    CHANGE_POINT_POWER,
    CHANGE_POINT_TOLERANCE,
    DRIFT_RANGE,
    SPIKE_SIGMAS,
    STEP_EFFECT_GRID,
    STEP_RANGE,
    _score_anomalies,
    _score_change_points,
    _score_drift,
    _step_mde,
)
from metrics_pipeline.evaluation.sampling import BASELINE_RUNS, SIZES, BacktestSize
from metrics_pipeline.evaluation.scoring import (
    CHANGE_POINT_TARGET,
    FORECAST_TARGET,
    VERDICT_TARGET,
    BacktestReport,
    Breakdown,
    DetectorScore,
    MinimumDetectableEffect,
    Target,
)
from metrics_pipeline.evaluation.verdict_cases import (
    DEFAULT_FIXTURES,
    DEGRADATION_RANGE,
    FIXTURE_FILES,
    MDE_ENDPOINT,
    VERDICT_EFFECT_GRID,
    VERDICT_ENDPOINTS,
    VERDICT_POWER,
    _load_fixtures,
    _score_fixture_verdicts,
    _score_synthetic_verdicts,
    _verdict_mde,
)

__all__ = [
    "BASELINE_RUNS",
    "CHANGE_POINT_POWER",
    "CHANGE_POINT_TARGET",
    "CHANGE_POINT_TOLERANCE",
    "DEFAULT_FIXTURES",
    "DEGRADATION_RANGE",
    "DRIFT_RANGE",
    "FIXTURE_FILES",
    "FORECAST_KINDS",
    "FORECAST_TARGET",
    "MDE_ENDPOINT",
    "SIZES",
    "SPIKE_SIGMAS",
    "STEP_EFFECT_GRID",
    "STEP_RANGE",
    "VERDICT_EFFECT_GRID",
    "VERDICT_ENDPOINTS",
    "VERDICT_POWER",
    "VERDICT_TARGET",
    "BacktestReport",
    "BacktestSize",
    "Breakdown",
    "DetectorScore",
    "MinimumDetectableEffect",
    "Target",
    "run_backtest",
]


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
    runs (with their run ids) and the summaries of 8 earlier runs (the history that measures
    the run-to-run noise, as in the CI stage) by
    :func:`~metrics_pipeline.analysis.verdicts.judge_run`. Degraded cases slow every
    request of one endpoint by :math:`\delta \sim U(0.20, 0.50)`; that endpoint is chosen
    among those where a 20 % slowdown of p95 clears the policy's absolute floor (a slower
    sub-millisecond endpoint is, by design, not a regression). Recall = degraded runs of
    :math:`\delta \ge 0.30` whose endpoint is flagged on p50, p95 or p99 latency (a regression
    is an estimate worse by more than 20 %: the +20-30 % bands are reported, not scored);
    false-positive rate = unchanged runs with any
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
        f"{metric} worse by > {rule.threshold:.0%} and >= {rule.min_effect:g} ms "
        f"(BH-adjusted p < {rule.alpha:g}, run-to-run noise included)"
        for metric, rule in ((m, policy.rule(m)) for m in LATENCY_METRICS)
    ]
    default = " (the production default)" if policy == VerdictPolicy() else ""
    return "; ".join(rules) + default
