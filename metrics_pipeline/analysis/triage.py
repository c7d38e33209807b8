r"""Triage of the history's findings and of alerts: a person marks a change point, finding or
alert ``expected`` (a real change, intended: a new feature, a bigger instance) or ``invalid``
(not a real change).

Marked findings stop alerting. An ``expected`` step of latency or throughput rebaselines its
combination: later runs are compared only with runs from the step on. An ``expected``
regression of a run (an alert) does the same from the run where it started, and the runs
judged a regression from then until the mark become baseline runs. A marked alert's condition
no longer alerts for the runs it covered. The marks also measure the detector: its precision
over the marked findings of a month is

.. math:: P = \frac{\#\text{expected}}{\#\text{expected} + \#\text{invalid}}.

A finding is named by a short stable id: the first 10 hex digits of the SHA-256 of its kind,
suite, scenario, environment, endpoint, metric and run, so the id stays the same from one
nightly run to the next while the finding does.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import polars as pl

from metrics_pipeline.analysis.findings import FINDING_KINDS
from metrics_pipeline.common.severity import SEVERITY_ORDER
from metrics_pipeline.contracts.tables import conform

MARKS = ("expected", "invalid")
# Kinds whose ``expected`` mark rebaselines the combination: a step in the history, a run's
# regression (an alert).
REBASELINING = ("change_point", "regression")
KEY = ("kind", "suite", "scenario", "environment", "endpoint", "metric", "run_id")
COMBINATION = ("suite", "scenario", "environment")
SERIES = (*COMBINATION, "endpoint", "metric")
# How far (in runs) a step located again may be from the marked one and still be that step.
STEP_RUNS = 2
# Findings whose run is the history's last one: a new run moves them while they stand.
STANDING = ("drift", "capacity", "headroom", "correlation")


def finding_id(row: dict) -> str:
    """The stable id of a finding (or change point: ``kind`` defaults to ``change_point``)."""
    parts = [str(row.get(k) if k != "kind" else row.get(k, "change_point")) for k in KEY]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]


def with_ids(findings: pl.DataFrame) -> pl.DataFrame:
    """``findings`` with a ``finding_id`` column."""
    ids = [
        finding_id(row)
        for row in findings.select(*(k for k in KEY if k in findings.columns)).iter_rows(named=True)
    ]
    return findings.with_columns(finding_id=pl.Series(ids, dtype=pl.String))


def mark(
    triage: pl.DataFrame,
    finding: dict,
    verdict: str,
    *,
    note: str | None,
    marked_by: str,
    now: datetime,
    started_at: datetime | None,
) -> pl.DataFrame:
    """``triage`` with ``finding`` marked ``verdict`` (a later mark replaces an earlier one)."""
    if verdict not in MARKS:
        raise ValueError(f"a mark is one of {', '.join(MARKS)}, not {verdict!r}")
    identifier = finding_id(finding)
    row = {k: finding.get(k) for k in KEY} | {
        "severity": finding.get("severity"),
        "finding_id": identifier,
        "mark": verdict,
        "note": note,
        "marked_by": marked_by,
        "marked_at": now,
        "started_at": started_at,
    }
    kept = triage.filter(pl.col("finding_id") != identifier)
    return pl.concat([conform("triage", kept), conform("triage", pl.DataFrame([row]))])


def with_marks(
    findings: pl.DataFrame,
    triage: pl.DataFrame,
    runs: pl.DataFrame | None = None,
    steps: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``findings`` with their ``finding_id`` and the mark that covers each (``mark``,
    ``note``, ``marked_by``; null: none).

    A mark covers the finding it was made on, and that finding while it stands though its run
    moves (``runs``, the catalog, orders each combination's runs; ``steps``, the
    ``change_points`` table): a step of the same series located again within ``STEP_RUNS``
    runs of the marked one (as runs arrive, the same step can move by a run); a drift,
    capacity, headroom or correlation finding (``STANDING``: its run is the history's last,
    new with every run) of the same series from the marked run on, until a step of the
    series after it (then the history has started over: a new condition). Without those, a
    marked finding alerted again at the next run.
    """
    found = with_ids(findings)
    marks = sorted(triage.iter_rows(named=True), key=lambda m: m["marked_at"], reverse=True)
    by_id = {m["finding_id"]: m for m in reversed(marks)}
    position, started = _run_order(runs)
    step_starts: dict[tuple, list] = {}
    if steps is not None:
        for row in steps.select(*SERIES, "started_at").iter_rows():
            step_starts.setdefault(row[:-1], []).append(row[-1])
    covering = []
    for row in found.iter_rows(named=True):
        cover = by_id.get(row["finding_id"])
        if cover is None or _news(cover.get("severity"), row.get("severity")):
            cover = next(
                (m for m in marks if _covers(m, row, position, started, step_starts)), None
            )
        covering.append({k: cover[k] if cover else None for k in ("mark", "note", "marked_by")})
    return pl.concat(
        [
            found,
            pl.DataFrame(covering, schema=dict.fromkeys(("mark", "note", "marked_by"), pl.String)),
        ],
        how="horizontal",
    )


def standing_steps(
    steps: pl.DataFrame, triage: pl.DataFrame, runs: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The change points (``change_points`` rows) that no ``invalid`` mark covers
    (:func:`with_marks`, at any severity: the mark says the step is not real).

    A step a person called false (a night on a broken runner, a load generator that changed)
    must not start its series' history over: drifts, forecasts and capacity are computed on
    the runs since the last step, and a drift's mark lasts until the next step; cut at a false
    step, each read only its last few runs.
    """
    if steps.height == 0 or triage.height == 0:
        return steps
    marks = with_marks(steps.with_columns(kind=pl.lit("change_point")), triage, runs)["mark"]
    return steps.filter(marks.ne_missing("invalid"))


def _news(marked: str | None, now: str | None) -> bool:
    """Whether a finding of severity ``now`` is news against one marked at ``marked``: worse
    (a warning marked, a critical now), or the other way (an improvement, ``info``, marked and
    a degradation now, or the reverse). Unknown severities (marks made before they were
    recorded) are no news."""
    if marked is None or now is None:
        return False
    if (marked == "info") != (now == "info"):
        return True
    return SEVERITY_ORDER.get(now, 99) < SEVERITY_ORDER.get(marked, 99)


def unmarked(
    findings: pl.DataFrame,
    triage: pl.DataFrame,
    runs: pl.DataFrame | None = None,
    steps: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The findings no mark covers (:func:`with_marks`): the ones that still alert."""
    return (
        with_marks(findings, triage, runs, steps)
        .filter(pl.col("mark").is_null())
        .drop("finding_id", "mark", "note", "marked_by")
    )


def _run_order(runs: pl.DataFrame | None) -> tuple[dict[str, int], dict[str, datetime]]:
    """Each run's position in its combination (by start) and its start."""
    if runs is None:
        return {}, {}
    position, started = {}, {}
    ordered = runs.sort("started_at", "run_id")
    for _, frame in ordered.group_by(list(COMBINATION), maintain_order=True):
        for i, (run, at) in enumerate(frame.select("run_id", "started_at").iter_rows()):
            position[run], started[run] = i, at
    return position, started


def _covers(mark: dict, finding: dict, position: dict, started: dict, step_starts: dict) -> bool:
    if any(mark[k] != finding.get(k) for k in KEY[:-1]):
        return False
    if _news(mark.get("severity"), finding.get("severity")):
        return False
    if finding["kind"] == "change_point":
        here, marked = position.get(finding["run_id"]), position.get(mark["run_id"])
        return here is not None and marked is not None and abs(here - marked) <= STEP_RUNS
    if finding["kind"] not in STANDING:
        return False
    at, since = started.get(finding["run_id"]), mark["started_at"]
    if at is None or since is None or at < since:
        return False
    series = tuple(finding.get(k) for k in SERIES)
    return not any(since < step <= at for step in step_starts.get(series, []))


def rebaselined_since(
    triage: pl.DataFrame,
    suite: str,
    scenario: str,
    environment: str,
    before: datetime | None = None,
):
    """When the combination's latest ``expected`` step or regression started (None: never
    rebaselined); with ``before``, the latest that started before it (a run before the step,
    uploaded late or again, keeps the baseline runs before the step, and so does the step's
    own run, judged again after a baseline run's re-upload: with its own start as the cut,
    no run was left to compare it with, and its regression turned "no baseline")."""
    steps = _expected(triage, REBASELINING).filter(
        (pl.col("suite") == suite)
        & (pl.col("scenario") == scenario)
        & (pl.col("environment") == environment)
    )
    if before is not None:
        steps = steps.filter(pl.col("started_at") < before)
    return steps["started_at"].max() if steps.height else None


def accepted_regressions(triage: pl.DataFrame, runs: pl.DataFrame) -> set[str]:
    """Runs that a person accepted although they were judged a regression: for each
    ``expected`` regression or step (``REBASELINING``), the runs of its combination that
    started from the marked run on and no later than the mark. (Without the steps' runs, a
    step accepted in the history left the runs after it rejected: the next run had no
    baseline run at all.)"""
    accepted: set[str] = set()
    for row in _expected(triage, REBASELINING).iter_rows(named=True):
        accepted |= set(
            runs.filter(
                (pl.col("suite") == row["suite"])
                & (pl.col("scenario") == row["scenario"])
                & (pl.col("environment") == row["environment"])
                & pl.col("started_at").is_between(row["started_at"], row["marked_at"])
            )["run_id"]
        )
    return accepted


def rejected_runs(
    verdicts: pl.DataFrame | pl.LazyFrame, triage: pl.DataFrame, runs: pl.DataFrame
) -> set[str]:
    """Runs that are no baseline run and no part of a noise history: judged a regression, or
    suspect (worse beyond the threshold, too small to test), but those a person accepted
    (:func:`accepted_regressions`)."""
    judged = (
        verdicts.lazy()
        .filter(pl.col("regression") | (pl.col("verdict") == "suspect"))
        .select("run_id")
        .collect()
    )
    return set(judged["run_id"]) - accepted_regressions(triage, runs)


def marks_of(condition: dict, triage: pl.DataFrame) -> pl.DataFrame:
    """The marks whose every field of ``condition`` equals its value (None: a null field)."""
    same = pl.lit(True)
    for key, value in condition.items():
        same &= pl.col(key).is_null() if value is None else pl.col(key) == value
    return triage.filter(same)


def is_marked(condition: dict, started_at: datetime | None, triage: pl.DataFrame) -> bool:
    """Whether a person marked ``condition`` (kind, suite, scenario, environment, endpoint,
    metric) for a run that started at ``started_at``: a mark covers the runs from the marked
    one to the mark itself."""
    if started_at is None:
        return False
    marks = marks_of({key: condition.get(key) for key in KEY[:-1]}, triage)
    marks = marks.filter(pl.col("started_at").is_not_null())
    return bool(
        marks.filter(
            (pl.col("started_at") <= started_at) & (pl.col("marked_at") >= started_at)
        ).height
    )


def _expected(triage: pl.DataFrame, kinds: tuple[str, ...]) -> pl.DataFrame:
    """The ``expected`` marks of ``kinds`` with a start; a step's only when it is a step of
    latency or throughput (a CPU or error-rate step accepted says nothing of the runs'
    latencies, and accepted every regressed run of the combination)."""
    metric = pl.col("metric")
    judged = metric.str.starts_with("latency_") | (metric == "throughput_rps")
    return triage.filter(
        (pl.col("mark") == "expected")
        & pl.col("kind").is_in(list(kinds))
        & pl.col("started_at").is_not_null()
        & ((pl.col("kind") != "change_point") | judged.fill_null(False))
    )


def precision_by_month(triage: pl.DataFrame) -> pl.DataFrame:
    """Per month of marking: the history's findings (``FINDING_KINDS``) marked expected and
    invalid, and the precision. Marks of per-run alerts (a regression, an SLA breach, a run
    that did not come) are about other rules, not the history's detectors."""
    return (
        triage.filter(pl.col("kind").is_in(sorted(FINDING_KINDS)))
        .group_by(month=pl.col("marked_at").dt.strftime("%Y-%m"))
        .agg(
            expected=(pl.col("mark") == "expected").sum(),
            invalid=(pl.col("mark") == "invalid").sum(),
        )
        .with_columns(precision=pl.col("expected") / (pl.col("expected") + pl.col("invalid")))
        .sort("month")
    )
