"""Scores of the detector backtest: the issue's targets, one score per detector, the minimum
detectable effects and the report that renders them (rows for JSON, markdown tables)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

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
