"""Where alerts come from: each function turns warehouse rows into ``Signals`` (what was found
and what was looked at, so that conditions that cleared get resolved)."""

from __future__ import annotations

import math
from datetime import datetime

import polars as pl

from metrics_pipeline.alerts.config import AlertingConfig, ExpectedRun
from metrics_pipeline.alerts.lifecycle import Scope, Signal, Signals
from metrics_pipeline.analysis.findings import FINDING_KINDS
from metrics_pipeline.analysis.triage import marks_of
from metrics_pipeline.common.severity import ABSOLUTE_CHANGE, SEVERITY_ORDER, change_severity

# Kinds an evaluation of one run decides for its combination.
RUN_KINDS = frozenset(
    {"regression", "trade_off", "sla_breach", "missing_endpoint", "missing_metric"}
)
MISSING_RUN = "missing_run"
PIPELINE_FAILURE = "pipeline_failure"
# An upload that failed its validation (the ingest's blocking check): the pipeline worked.
INVALID_RUN = "invalid_run"
# An upload whose run.json was refused (no partition, no run, no row anywhere).
UPLOAD_REJECTED = "upload_rejected"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def run_signals(
    run: dict,
    verdicts: pl.DataFrame,
    evaluations: pl.DataFrame,
    *,
    history: pl.DataFrame,
    config: AlertingConfig,
) -> Signals:
    """Regressions and trade-offs of the run's verdicts, its SLA breaches, and endpoints or
    resource metrics its history always had that it lacks.

    ``run``: its ``runs`` row (run_id, suite, scenario, environment, started_at): the
    signals and the scope carry the run's position, so that a run evaluated after a later one
    changes none of that one's alerts. ``history``: run_id, started_at and ``item``
    (``endpoint:<name>`` / ``resource:<metric>``) for the run and the earlier runs of its
    combination (see ``history_items``).
    """
    where = {k: run[k] for k in ("suite", "scenario", "environment")}
    position = {"run_id": run["run_id"], "run_started_at": run["started_at"]}
    found = []
    found += _verdict_signals(run, verdicts, where, position)
    for row in evaluations.filter(pl.col("status") == "breached").iter_rows(named=True):
        compliance = (
            f", {row['compliance_pct']:.1f} % of intervals met the target"
            if row["compliance_pct"] is not None
            else ""
        )
        found.append(
            Signal(
                kind="sla_breach",
                severity=row["severity"],
                summary=f"SLA {row['kpi']} of {row['endpoint']}: {row['observed']:.4g} "
                f"{row['unit']} is beyond the alert threshold {row['alert_threshold']:.4g} "
                f"{row['unit']} (target {row['target']:.4g} {row['unit']}{compliance}) in run "
                f"{run['run_id']}",
                endpoint=row["endpoint"],
                metric=row["kpi"],
                details={
                    k: row[k]
                    for k in (
                        "observed",
                        "target",
                        "alert_threshold",
                        "compliance_pct",
                        "error_budget_remaining",
                    )
                    if _finite(row[k])
                },
                **where,
                **position,
            )
        )
    found += _missing_items(run, history, config.missing_data.history_runs)
    return Signals(found, [Scope(RUN_KINDS, **where, **position)])


def _signed(change: float, metric: str) -> str:
    """``+62%`` for a relative change, ``+10.69 pp`` for an error rate's (a difference of
    rates: "+11%" read as an eleventh worse)."""
    return f"{change * 100:+.2f} pp" if metric in ABSOLUTE_CHANGE else f"{change:+.0%}"


def _verdict_signals(run: dict, verdicts: pl.DataFrame, where: dict, position: dict) -> list:
    """One signal per endpoint that regressed (or traded latency for resources), its metrics
    grouped: p50 and p95 of one endpoint are one condition, and one alert to read."""
    flagged = verdicts.filter(pl.col("verdict").is_in(["regression", "trade-off"]))
    signals = []
    for (endpoint, verdict), rows in flagged.group_by(["endpoint", "verdict"], maintain_order=True):
        rows = rows.sort("change", descending=True, nulls_last=True)
        trade_off = verdict == "trade-off"
        changes = [c for c in rows["change"] if _finite(c)]
        severities = [
            change_severity(row["change"], row["metric"])
            for row in rows.iter_rows(named=True)
            if _finite(row["change"])
        ]
        severity = (
            "info" if trade_off else min(severities or ["warning"], key=SEVERITY_ORDER.__getitem__)
        )
        parts = [
            f"{row['metric']} {_signed(row['change'], row['metric'])} ({row['baseline']:.4g} -> "
            f"{row['candidate']:.4g})"
            if _finite(row["change"])
            else f"{row['metric']} ({row['baseline']:.4g} -> {row['candidate']:.4g})"
            for row in rows.iter_rows(named=True)
        ]
        metrics = {
            row["metric"]: {
                k: row[k]
                for k in ("baseline", "candidate", "change", "ci_low", "ci_high", "p_adjusted")
                if _finite(row[k])
            }
            for row in rows.iter_rows(named=True)
        }
        signals.append(
            Signal(
                kind="trade_off" if trade_off else "regression",
                severity=severity,
                summary=f"{endpoint} worse than its baseline in run {run['run_id']}: "
                + ", ".join(parts)
                + (" (latency improved: a trade-off)" if trade_off else ""),
                endpoint=endpoint,
                details={
                    "metrics": metrics,
                    "worst_change": max(changes, default=None),
                    "baseline_runs": rows["baseline_runs"][0],
                },
                **where,
                **position,
            )
        )
    return signals


def history_items(
    runs: pl.DataFrame, summaries: pl.DataFrame, resource_metrics: pl.DataFrame, run: dict
) -> pl.DataFrame:
    """What each run of ``run``'s combination (started no later than it) measured:
    ``endpoint:<name>`` per run_summary row, ``resource:<metric>`` per resource metric."""
    same = runs.filter(
        (pl.col("suite") == run["suite"])
        & (pl.col("scenario") == run["scenario"])
        & (pl.col("environment") == run["environment"])
        & (pl.col("started_at") <= run["started_at"])
        & (pl.col("valid").fill_null(False) | (pl.col("run_id") == run["run_id"]))
    ).select("run_id", "started_at")
    items = pl.concat(
        [
            summaries.select("run_id", item=pl.lit("endpoint:") + pl.col("endpoint")),
            resource_metrics.select("run_id", item=pl.lit("resource:") + pl.col("metric")),
        ]
    )
    return same.join(items, on="run_id", how="left")


def _missing_items(run: dict, history: pl.DataFrame, history_runs: int) -> list[Signal]:
    earlier = (
        history.filter(pl.col("run_id") != run["run_id"])
        .select("run_id", "started_at")
        .unique()
        .sort("started_at")
        .tail(history_runs)
    )
    if earlier.height < history_runs:
        return []
    counts = (
        history.filter(pl.col("run_id").is_in(earlier["run_id"].to_list()))
        .drop_nulls("item")
        .group_by("item")
        .agg(pl.col("run_id").n_unique())
    )
    always = set(counts.filter(pl.col("run_id") == history_runs)["item"])
    now_present = set(history.filter(pl.col("run_id") == run["run_id"])["item"].drop_nulls())
    signals = []
    for item in sorted(always - now_present):
        what, name = item.split(":", 1)
        endpoint, metric = (name, None) if what == "endpoint" else (None, name)
        signals.append(
            Signal(
                kind="missing_endpoint" if what == "endpoint" else "missing_metric",
                severity="warning",
                summary=f"run {run['run_id']} has no {what} {name}, which each of the "
                f"{history_runs} previous runs of {run['suite']} / {run['scenario']} / "
                f"{run['environment']} had",
                suite=run["suite"],
                scenario=run["scenario"],
                environment=run["environment"],
                endpoint=endpoint,
                metric=metric,
                run_id=run["run_id"],
                run_started_at=run["started_at"],
                details={"previous_runs": earlier["run_id"].to_list()},
            )
        )
    return signals


def finding_signals(findings: pl.DataFrame, config: AlertingConfig) -> Signals:
    """One signal per finding at or above the configured severity."""
    limit = SEVERITY_ORDER[config.findings.min_severity]
    found = [
        Signal(
            kind=row["kind"],
            severity=row["severity"],
            summary=row["summary"],
            suite=row["suite"],
            scenario=row["scenario"],
            environment=row["environment"],
            endpoint=row["endpoint"],
            metric=row["metric"],
            run_id=row["run_id"],
            details={
                k: row[k]
                for k in ("confidence", "action", "git_sha", "service_version")
                if row[k] is not None
            },
        )
        for row in findings.iter_rows(named=True)
        if SEVERITY_ORDER.get(row["severity"], 99) <= limit
    ]
    return Signals(found, [Scope(FINDING_KINDS | set(findings["kind"].unique()))])


def _expected_matches(expected: ExpectedRun, runs: pl.DataFrame) -> pl.DataFrame:
    condition = pl.col("suite") == expected.suite
    if expected.scenario is not None:
        condition &= pl.col("scenario") == expected.scenario
    if expected.environment is not None:
        condition &= pl.col("environment") == expected.environment
    return runs.filter(condition)


def missing_run_signals(
    runs: pl.DataFrame,
    config: AlertingConfig,
    now: datetime,
    triage: pl.DataFrame | None = None,
) -> Signals:
    """A signal per expected suite whose latest run started longer ago than its cadence plus
    grace (or that never uploaded one), but where a person marked that absence (``triage``:
    ``alerts expected|invalid``, a paused schedule, say) and no run came since the mark."""
    found = []
    for expected in config.expected_runs:
        matching = _expected_matches(expected, runs)
        if _absence_marked(expected, matching, triage):
            continue
        cadence = f"expected every {_human(expected.every)}, grace {_human(expected.grace)}"
        what = " / ".join(p for p in (expected.suite, expected.scenario, expected.environment) if p)
        if matching.height:
            last = matching.sort("started_at").row(-1, named=True)
            if now - last["started_at"] <= expected.every + expected.grace:
                continue
            summary = (
                f"no {what} run since {last['started_at']:%Y-%m-%d %H:%M} UTC "
                f"({last['run_id']}; {cadence})"
            )
            last_run = last["run_id"]
        else:
            summary, last_run = f"no {what} run has been received ({cadence})", None
        found.append(
            Signal(
                kind=MISSING_RUN,
                severity=expected.severity,
                summary=summary,
                suite=expected.suite,
                scenario=expected.scenario,
                environment=expected.environment,
                run_id=last_run,
                details={"every": str(expected.every), "grace": str(expected.grace)},
            )
        )
    return Signals(found, [Scope(frozenset({MISSING_RUN}))])


def _absence_marked(expected: ExpectedRun, matching: pl.DataFrame, triage) -> bool:
    """Whether a mark of the suite's missing runs was made after its latest run arrived (its
    ingest: a run under way when the mark was made, uploaded after it, ends the silence)."""
    if triage is None or triage.height == 0:
        return False
    where = {key: getattr(expected, key) for key in ("suite", "scenario", "environment")}
    marks = marks_of({"kind": MISSING_RUN, **where}, triage)
    if matching.height == 0:
        return marks.height > 0
    arrived = (
        pl.coalesce("ingested_at", "started_at")
        if "ingested_at" in matching.columns
        else pl.col("started_at")
    )
    latest = matching.select(arrived.max()).item()
    return bool(marks.filter(pl.col("marked_at") >= latest).height)


def pipeline_failure_signal(
    job: str,
    partition: str | None,
    suite: str | None,
    message: str,
    dagster_run_id: str,
    *,
    invalid: bool = False,
) -> Signal:
    """A failed Dagster run; one alert per job and partition (run id) until a run succeeds.

    ``invalid``: the run failed only its validation (a blocking check): the upload is
    invalid, not the pipeline broken, and the alert is an ``invalid_run`` warning for whoever
    uploaded it. As a critical pipeline failure, every bad upload paged the on-call channel.
    """
    target = f" for run {partition}" if partition else ""
    kind, severity, summary = (
        (INVALID_RUN, "warning", f"run {partition} is invalid, no verdict: {message[:300]}")
        if invalid
        else (PIPELINE_FAILURE, "critical", f"job {job} failed{target}: {message[:300]}")
    )
    return Signal(
        kind=kind,
        severity=severity,
        summary=summary,
        suite=suite,
        endpoint=partition,
        metric=job,
        run_id=partition,
        details={"dagster_run_id": dagster_run_id, "job": job},
    )


def upload_signals(rejected: list[tuple[str, str]], resolved: list[str]) -> Signals:
    """An ``upload_rejected`` warning per refused run.json (``rejected``: its key and why),
    for whoever uploaded it: the upload gets no partition, no run and no row anywhere, and
    the sensor's log said why once, in a tick among thousands. A run.json of the same key
    accepted since, or gone from the bucket (``resolved``: keys), resolves it."""
    found = [
        Signal(
            kind=UPLOAD_REJECTED,
            severity="warning",
            summary=f"upload {key} rejected: {reason[:300]}",
            suite=key.split("/")[1] if key.count("/") >= 2 else None,
            endpoint=key,
        )
        for key, reason in rejected
    ]
    return Signals(found, [Scope(frozenset({UPLOAD_REJECTED}), endpoint=key) for key in resolved])


def pipeline_success_scope(job: str, partition: str | None) -> Signals:
    """A successful run of ``job`` clears the failure alerts of that job and partition (and
    the run's ``invalid_run``: a valid upload of it came)."""
    kinds = frozenset({PIPELINE_FAILURE, INVALID_RUN})
    scope = Scope(kinds, metric=job)
    if partition is not None:
        scope = Scope(kinds, endpoint=partition, metric=job)
    return Signals([], [scope])


def _human(delta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
