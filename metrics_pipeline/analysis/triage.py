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
from metrics_pipeline.contracts.tables import conform

MARKS = ("expected", "invalid")
# Kinds whose ``expected`` mark rebaselines the combination: a step in the history, a run's
# regression (an alert).
REBASELINING = ("change_point", "regression")
KEY = ("kind", "suite", "scenario", "environment", "endpoint", "metric", "run_id")


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
        "finding_id": identifier,
        "mark": verdict,
        "note": note,
        "marked_by": marked_by,
        "marked_at": now,
        "started_at": started_at,
    }
    kept = triage.filter(pl.col("finding_id") != identifier)
    return pl.concat([conform("triage", kept), conform("triage", pl.DataFrame([row]))])


def unmarked(findings: pl.DataFrame, triage: pl.DataFrame) -> pl.DataFrame:
    """The findings nobody has marked: the ones that still alert."""
    marked = set(triage["finding_id"])
    return with_ids(findings).filter(~pl.col("finding_id").is_in(sorted(marked))).drop("finding_id")


def rebaselined_since(
    triage: pl.DataFrame,
    suite: str,
    scenario: str,
    environment: str,
    before: datetime | None = None,
):
    """When the combination's latest ``expected`` step or regression started (None: never
    rebaselined); with ``before``, the latest that started no later than it (a run before
    the step, uploaded late or again, keeps the baseline runs before the step)."""
    steps = _expected(triage, REBASELINING).filter(
        (pl.col("suite") == suite)
        & (pl.col("scenario") == scenario)
        & (pl.col("environment") == environment)
    )
    if before is not None:
        steps = steps.filter(pl.col("started_at") <= before)
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


def is_marked(condition: dict, started_at: datetime | None, triage: pl.DataFrame) -> bool:
    """Whether a person marked ``condition`` (kind, suite, scenario, environment, endpoint,
    metric) for a run that started at ``started_at``: a mark covers the runs from the marked
    one to the mark itself."""
    if started_at is None:
        return False
    same = pl.lit(True)
    for key in KEY[:-1]:
        value = condition.get(key)
        same &= pl.col(key).is_null() if value is None else pl.col(key) == value
    marks = triage.filter(same & pl.col("started_at").is_not_null())
    return bool(
        marks.filter(
            (pl.col("started_at") <= started_at) & (pl.col("marked_at") >= started_at)
        ).height
    )


def _expected(triage: pl.DataFrame, kinds: tuple[str, ...]) -> pl.DataFrame:
    return triage.filter(
        (pl.col("mark") == "expected")
        & pl.col("kind").is_in(list(kinds))
        & pl.col("started_at").is_not_null()
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
