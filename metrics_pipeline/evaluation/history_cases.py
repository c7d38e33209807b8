"""Series cases of the detector backtest: per-run latency histories with a step (change
points) or a slow rise (drift), hourly monitoring series with spikes (anomalies), and the
smallest step the change-point scan finds (minimum detectable effect)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from metrics_pipeline.evaluation.sampling import BacktestSize, _rng, _Shape
from metrics_pipeline.evaluation.scoring import (
    CHANGE_POINT_TARGET,
    Breakdown,
    DetectorScore,
    MinimumDetectableEffect,
    Target,
    _critical_effect,
    _mde,
    _ratio,
)
from metrics_pipeline.stats.history import detect_anomalies, detect_change_points, detect_drift

# A change point counts as found when it lies within this many runs of the true step.
CHANGE_POINT_TOLERANCE = 3
STEP_RANGE = (0.20, 0.50)
DRIFT_RANGE = (0.005, 0.02)  # per run, relative to the starting level
SPIKE_SIGMAS = (6.0, 12.0)  # anomaly size in standard deviations of the noise
CHANGE_POINT_POWER = 0.90
# Grid searched for the minimum detectable effect of a step.
STEP_EFFECT_GRID = tuple(round(0.005 * 1.1**k, 5) for k in range(63))  # 0.5 % .. ~200 %


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


# --- minimum detectable effect --------------------------------------------------------------


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
