"""The alert lifecycle: one alert per condition, opened once, updated, escalated, resolved.

``evaluate_alerts`` is pure: it takes the current ``alerts`` table, what an evaluation found
(``Signals``) and the time, and returns the new table plus the notifications it owes (rows for
the ``alert_deliveries`` outbox). An alert's id is a fingerprint of what it is about (kind,
suite, scenario, environment, endpoint, metric), so seeing the same condition again updates
the same row instead of notifying twice.

Runs are applied in the order they ran, not in the order they arrive: each alert keeps the
position (``started_at``, then ``run_id``) of the latest run that evaluated it, and a run
uploaded late, older than that one, neither updates, resolves nor reopens it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from metrics_pipeline.alerts.config import AlertingConfig
from metrics_pipeline.alerts.payloads import payload_for
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.common.severity import SEVERITY_ORDER
from metrics_pipeline.contracts.tables import conform, empty

ACTIVE = ("open", "acknowledged")
# Where a run stands in its combination's history: the manifest's started_at, ties by run_id.
RunPosition = tuple[datetime, str]


def _position(started_at: datetime | None, run_id: str | None) -> RunPosition | None:
    return None if started_at is None or run_id is None else (started_at, run_id)


@dataclass(frozen=True)
class Signal:
    """One condition an evaluation found (a regression, a breach, a missing run, ...)."""

    kind: str
    severity: str
    summary: str
    suite: str | None = None
    scenario: str | None = None
    environment: str | None = None
    endpoint: str | None = None
    metric: str | None = None
    run_id: str | None = None
    details: dict = field(default_factory=dict, compare=False)
    # Set when a run's evaluation found it (``None``: findings, overdue runs, failed jobs).
    run_started_at: datetime | None = None

    @property
    def position(self) -> RunPosition | None:
        """The position of the run that found it, or ``None`` when it is not ordered by run."""
        return _position(self.run_started_at, self.run_id)

    @property
    def fingerprint(self) -> str:
        parts = (self.kind, self.suite, self.scenario, self.environment, self.endpoint, self.metric)
        key = "\x1f".join("" if p is None else p for p in parts)
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Scope:
    """What an evaluation looked at: an active alert inside it that the evaluation did not
    find again has cleared and is resolved. ``None`` fields match anything.

    ``run_id`` and ``run_started_at`` name the run evaluated, when the scope is one run's
    combination: an alert a later run already evaluated is then left alone.
    """

    kinds: frozenset[str]
    suite: str | None = None
    scenario: str | None = None
    environment: str | None = None
    endpoint: str | None = None
    metric: str | None = None
    run_id: str | None = None
    run_started_at: datetime | None = None

    @property
    def position(self) -> RunPosition | None:
        return _position(self.run_started_at, self.run_id)

    def covers(self, alert: dict) -> bool:
        return alert["kind"] in self.kinds and all(
            wanted is None or alert[name] == wanted
            for name, wanted in (
                ("suite", self.suite),
                ("scenario", self.scenario),
                ("environment", self.environment),
                ("endpoint", self.endpoint),
                ("metric", self.metric),
            )
        )


@dataclass
class Signals:
    """The conditions found and the scopes the evaluation covered."""

    found: list[Signal] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)

    def __add__(self, other: Signals) -> Signals:
        return Signals(self.found + other.found, self.scopes + other.scopes)


def evaluate_alerts(
    current: pl.DataFrame, signals: Signals, now: datetime, config: AlertingConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply one evaluation to the alerts; return ``(alerts, new_deliveries)``.

    * a new condition opens an alert and owes an ``opened`` notification to its routes;
    * a condition seen again updates its alert (summary, severity, ``last_run_id``, and
      ``evaluations`` when a different run shows it); when its severity worsens, it notifies
      the channels the new severity routes to and the old one did not (a warning become
      critical reaches the pager), with ``opened``: for them the alert is new;
    * an active alert inside a scope of the evaluation that was not found again is resolved
      (``resolved`` notification); a resolved alert whose condition returns is reopened;
    * none of this happens to an alert that a later run (by ``started_at``, then ``run_id``)
      already evaluated: a late upload of an older run is history, not news;
    * an open alert older than the escalation delay, never acknowledged, is escalated once.
    """
    # conform: a table stored before a column was added has it as nulls.
    alerts = {row["alert_id"]: row for row in conform("alerts", current).iter_rows(named=True)}
    deliveries: list[dict] = []
    seen: dict[str, Signal] = {}
    for signal in signals.found:
        previous = seen.get(signal.fingerprint)
        if previous is None or SEVERITY_ORDER[signal.severity] < SEVERITY_ORDER[previous.severity]:
            seen[signal.fingerprint] = signal

    for alert_id, signal in seen.items():
        alert = alerts.get(alert_id)
        if alert is not None and _superseded(alert, signal.position):
            continue
        if alert is None or alert["status"] == "resolved":
            alerts[alert_id] = _opened(alert_id, signal, now)
            deliveries += _notify(alerts[alert_id], "opened", now, config)
            alerts[alert_id]["notified"] = ",".join(_routes(alerts[alert_id], config))
        else:
            alerts[alert_id] = _updated(alert, signal, now)
            deliveries += _newly_routed(alert, alerts[alert_id], now, config)

    for alert_id, alert in alerts.items():
        if alert_id in seen:
            continue
        covering = [
            scope
            for scope in signals.scopes
            if scope.covers(alert) and not _superseded(alert, scope.position)
        ]
        if not covering:
            continue
        positions = [scope.position for scope in covering if scope.position is not None]
        evaluated = _evaluated_by(max(positions)) if positions else {}
        if alert["status"] in ACTIVE:
            alert |= {"status": "resolved", "resolved_at": now, "updated_at": now} | evaluated
            deliveries += _notify(alert, "resolved", now, config, _told(alert, config))
        else:
            # Already resolved: still remember the run, so that a run between the one that
            # resolved it and this one, uploaded late, does not reopen what this run cleared.
            alert |= evaluated

    if config.escalation is not None:
        for alert in alerts.values():
            if (
                alert["status"] == "open"
                and alert["escalated_at"] is None
                and now - alert["opened_at"] >= config.escalation.after
            ):
                channels = config.escalation_channels(alert["severity"])
                if channels:
                    alert |= {"escalated_at": now, "updated_at": now}
                    deliveries += _notify(alert, "escalated", now, config, channels)

    table = (
        conform("alerts", pl.DataFrame(list(alerts.values()), infer_schema_length=None))
        if alerts
        else empty("alerts")
    )
    outbox = (
        conform("alert_deliveries", pl.DataFrame(deliveries, infer_schema_length=None))
        if deliveries
        else empty("alert_deliveries")
    )
    return table.sort("opened_at", "alert_id"), outbox


def _superseded(alert: dict, position: RunPosition | None) -> bool:
    """Whether a run later than ``position`` already evaluated ``alert`` (alerts from before
    the position was kept, and evaluations not ordered by run, are never superseded). The
    run itself never is its own later run: re-uploaded with its start corrected, its new
    evaluation stands."""
    if position is None or alert["evaluated_run_started_at"] is None:
        return False
    if alert["evaluated_run_id"] == position[1]:
        return False
    return position < (alert["evaluated_run_started_at"], alert["evaluated_run_id"])


def _evaluated_by(position: RunPosition | None) -> dict:
    started_at, run_id = position if position is not None else (None, None)
    return {"evaluated_run_id": run_id, "evaluated_run_started_at": started_at}


def _opened(alert_id: str, signal: Signal, now: datetime) -> dict:
    return {
        "alert_id": alert_id,
        "kind": signal.kind,
        "severity": signal.severity,
        "status": "open",
        "suite": signal.suite,
        "scenario": signal.scenario,
        "environment": signal.environment,
        "endpoint": signal.endpoint,
        "metric": signal.metric,
        "first_run_id": signal.run_id,
        "last_run_id": signal.run_id,
        "summary": signal.summary,
        "details": json.dumps(signal.details, sort_keys=True, default=str),
        "evaluations": 1,
        "opened_at": now,
        "updated_at": now,
        "acknowledged_at": None,
        "escalated_at": None,
        "resolved_at": None,
        **_evaluated_by(signal.position),
    }


def _updated(alert: dict, signal: Signal, now: datetime) -> dict:
    # Re-evaluating the same run (a re-materialised partition) is not a new observation.
    new_run = signal.run_id != alert["last_run_id"]
    changes = {
        "severity": signal.severity,
        "summary": signal.summary,
        "details": json.dumps(signal.details, sort_keys=True, default=str),
        "last_run_id": signal.run_id,
        "evaluations": alert["evaluations"] + (1 if new_run else 0),
    }
    if signal.position is not None:
        changes |= _evaluated_by(signal.position)
    if all(alert[k] == v for k, v in changes.items()):
        return alert
    return alert | changes | {"updated_at": now}


def _newly_routed(before: dict, after: dict, now: datetime, config: AlertingConfig) -> list[dict]:
    """``opened`` to the channels ``after``'s severity routes to and that were not told yet,
    when it is the worse one (a milder one tells no one: the channels it routes to have heard
    of the alert, or need not). ``after`` records them as told."""
    if SEVERITY_ORDER[after["severity"]] >= SEVERITY_ORDER[before["severity"]]:
        return []
    told = _told(before, config)
    new = [name for name in _routes(after, config) if name not in told]
    if not new:
        return []
    after["notified"] = ",".join([*told, *new])
    return _notify(after, "opened", now, config, new)


def _routes(alert: dict, config: AlertingConfig) -> list[str]:
    return config.channels_for(alert["severity"], alert["kind"], alert["suite"])


def _told(alert: dict, config: AlertingConfig) -> list[str]:
    """The channels the alert was opened on (those its severity routes to, for an alert from
    before they were recorded), and those its severity routes to now; configured ones only."""
    told = (alert.get("notified") or "").split(",") if alert.get("notified") else []
    names = [*told, *_routes(alert, config)]
    return [name for name in dict.fromkeys(names) if name in config.channels]


def _notify(
    alert: dict,
    event: str,
    now: datetime,
    config: AlertingConfig,
    channels: list[str] | None = None,
) -> list[dict]:
    names = (
        channels
        if channels is not None
        else config.channels_for(alert["severity"], alert["kind"], alert["suite"])
    )
    rows = []
    for name in names:
        # The delivery id is the notification's idempotency key (receivers dedupe on it), so
        # two notifications must never share one, even under a frozen clock (METRICS_NOW):
        # the runs that opened and last evaluated the alert, and its details (a failed job's
        # Dagster run id), tell a reopened incident from the one before.
        key = "|".join(
            str(part)
            for part in (
                alert["alert_id"],
                name,
                event,
                now.isoformat(),
                alert["first_run_id"],
                alert["evaluated_run_id"],
                alert["details"],
            )
        )
        delivery_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        payload = payload_for(config.channels[name].type, alert, event, delivery_id)
        rows.append(
            {
                "delivery_id": delivery_id,
                "alert_id": alert["alert_id"],
                "channel": name,
                "event": event,
                "payload": json.dumps(payload),
                "attempts": 0,
                "queued_at": now,
                "next_attempt_at": now,
                "delivered_at": None,
                "last_error": None,
            }
        )
    return rows


# What an alert's row says about people and notifications rather than about the runs.
TOLD = ("opened_at", "acknowledged_at", "escalated_at")


def carry_over(rebuilt: pl.DataFrame, before: pl.DataFrame) -> pl.DataFrame:
    """``rebuilt`` (alerts recomputed from the runs, as by a rebuild) with what ``before``
    knew that the runs cannot tell.

    For the same incident (the same alert id, opened by the same run) still active in both,
    the alert keeps when it opened, its acknowledgement and its escalation: an alert a person
    acknowledged, or that was escalated already, is not escalated again by the next pass.

    An alert of ``before`` that the runs did not give again (a pipeline failure, an overdue
    run, a finding of the weekly job, which a rebuild does not run) is kept as it was: its
    notifications may still wait in the outbox and its acknowledgement must not be lost; the
    pipeline's next evaluation of its kind updates or resolves it.
    """
    if before.is_empty():
        return rebuilt
    before = conform("alerts", before)
    kept = before.filter(~pl.col("alert_id").is_in(rebuilt["alert_id"].implode()))
    if rebuilt.is_empty():
        return kept.sort("opened_at", "alert_id")
    earlier = {
        (row["alert_id"], row["first_run_id"]): row
        for row in before.iter_rows(named=True)
        if row["status"] in ACTIVE
    }
    rows = []
    for row in rebuilt.iter_rows(named=True):
        old = earlier.get((row["alert_id"], row["first_run_id"]))
        if old is not None and row["status"] in ACTIVE:
            row |= {name: old[name] for name in TOLD} | {"status": old["status"]}
        rows.append(row)
    carried = conform("alerts", pl.DataFrame(rows, schema=rebuilt.schema))
    return pl.concat([carried, kept]).sort("opened_at", "alert_id")


class AlertNotFound(MetricsPipelineError, LookupError):
    """No alert (or more than one) has the given id or id prefix."""


def find_alert(alerts: pl.DataFrame, alert_id: str) -> dict:
    """The row of the one alert whose id starts with ``alert_id``."""
    matches = alerts.filter(pl.col("alert_id").str.starts_with(alert_id))
    if matches.height != 1 or not alert_id:
        what = "no alert" if matches.height == 0 else f"{matches.height} alerts"
        raise AlertNotFound(f"{what} with an id starting with {alert_id!r}")
    return matches.row(0, named=True)


def with_alert(alerts: pl.DataFrame, row: dict) -> pl.DataFrame:
    """``alerts`` with the alert of ``row`` replaced by it."""
    kept = alerts.filter(pl.col("alert_id") != row["alert_id"])
    return pl.concat([kept, conform("alerts", pl.DataFrame([row]))]).sort("opened_at", "alert_id")


def acknowledge(alerts: pl.DataFrame, alert_id: str, now: datetime) -> tuple[pl.DataFrame, dict]:
    """Mark the alert whose id starts with ``alert_id`` acknowledged (it stops escalating and
    stays until its condition clears); returns the table and the alert's new row."""
    row = find_alert(alerts, alert_id)
    if row["status"] == "resolved":
        raise AlertNotFound(f"alert {row['alert_id']} is already resolved")
    if row["status"] == "open":
        row |= {"status": "acknowledged", "acknowledged_at": now, "updated_at": now}
    return with_alert(alerts, row), row


def withdraw(
    current: pl.DataFrame, run_id: str, now: datetime, config: AlertingConfig
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Resolve the active alerts that only ``run_id`` ever showed (it opened them and no run
    evaluated them since), as when the run was uploaded again and its new version is invalid:
    their evidence is gone. Alerts an earlier run raised too stay as they are: that run's
    verdicts still stand. Returns ``(alerts, new_deliveries)``."""
    alerts = conform("alerts", current)
    only = (
        pl.col("status").is_in(list(ACTIVE))
        & (pl.col("first_run_id") == run_id)
        & (pl.col("evaluated_run_id") == run_id)
    )
    deliveries: list[dict] = []
    rows = []
    for alert in alerts.with_columns(_only=only.fill_null(False)).iter_rows(named=True):
        if alert.pop("_only"):
            alert |= {"status": "resolved", "resolved_at": now, "updated_at": now}
            deliveries += _notify(alert, "resolved", now, config, _told(alert, config))
        rows.append(alert)
    table = conform("alerts", pl.DataFrame(rows, infer_schema_length=None)) if rows else alerts
    outbox = (
        conform("alert_deliveries", pl.DataFrame(deliveries, infer_schema_length=None))
        if deliveries
        else empty("alert_deliveries")
    )
    return table, outbox


def resolved_notifications(alert: dict, now: datetime, config: AlertingConfig) -> pl.DataFrame:
    """The ``resolved`` notifications of ``alert`` (resolved by a person) to every channel
    told it opened: their last word on it was that it is open."""
    rows = _notify(alert, "resolved", now, config, _told(alert, config))
    if not rows:
        return empty("alert_deliveries")
    return conform("alert_deliveries", pl.DataFrame(rows, infer_schema_length=None))


def resolve(alerts: pl.DataFrame, alert_id: str, now: datetime) -> tuple[pl.DataFrame, dict]:
    """Resolve the alert whose id starts with ``alert_id`` (a person closed it; one already
    resolved stays as it is); returns the table and the alert's row."""
    row = find_alert(alerts, alert_id)
    if row["status"] != "resolved":
        row |= {"status": "resolved", "resolved_at": now, "updated_at": now}
    return with_alert(alerts, row), row
