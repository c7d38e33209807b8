"""Alerts follow the order runs ran in, not the order they were uploaded: the CI stage's alert
step on a warehouse, delivering to a local receiver, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from receivers import http_receiver

from metrics_pipeline.alerts import AlertingConfig, build_senders
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.stages.ci import raise_alerts

NOW = datetime(2031, 3, 15, 12, 0, tzinfo=UTC)
WHERE = {"suite": "checkout", "scenario": "browse", "environment": "staging"}
# When each run started (the manifest's time): "old" ran first, "newer" last.
STARTED = {
    "old": NOW - timedelta(days=3),
    "new": NOW - timedelta(days=2),
    "newer": NOW - timedelta(days=1),
}


@pytest.fixture
def hook():
    with http_receiver() as recorder:
        yield recorder


def store_run(warehouse, run_id: str, regressed: bool) -> None:
    """The run's catalog row and its verdicts (/api/orders regressed or not)."""
    started = STARTED[run_id]
    warehouse.write_partition(
        "runs",
        run_id,
        conform(
            "runs",
            pl.DataFrame(
                [
                    {
                        "run_id": run_id,
                        **WHERE,
                        "started_at": started,
                        "finished_at": started + timedelta(minutes=10),
                        "valid": True,
                    }
                ]
            ),
        ),
    )
    warehouse.write_partition(
        "verdicts",
        run_id,
        conform(
            "verdicts",
            pl.DataFrame(
                {
                    "run_id": run_id,
                    "endpoint": ["/api/orders"],
                    "metric": "latency_p95",
                    "baseline": [90.0],
                    "candidate": [150.0 if regressed else 91.0],
                    "change": [0.66 if regressed else 0.01],
                    "regression": [regressed],
                    "verdict": ["regression" if regressed else "ok"],
                    "baseline_runs": "a,b",
                }
            ),
        ),
    )


def test_an_older_run_uploaded_late_leaves_the_newer_runs_alert_alone(warehouse, hook):
    config = AlertingConfig.model_validate(
        {
            "channels": {"hook": {"type": "webhook", "url": hook.url}},
            "routes": [{"severities": ["critical", "warning"], "channels": ["hook"]}],
        }
    )
    senders = build_senders(config, {}.get)
    for run_id, regressed in (("old", False), ("new", True), ("newer", False)):
        store_run(warehouse, run_id, regressed)

    # "new" is evaluated first (uploaded first) and regressed.
    opened = raise_alerts(warehouse, "new", config, senders, now=NOW)
    (alert,) = opened.alerts.iter_rows(named=True)
    assert alert["status"] == "open" and alert["last_run_id"] == "new"
    assert [body["event"] for body in hook.bodies] == ["opened"]

    # "old" ran before it but is evaluated after it, and is clean: the alert stays open.
    late = raise_alerts(warehouse, "old", config, senders, now=NOW + timedelta(hours=1))
    assert late.new_deliveries.height == 0
    (kept,) = late.alerts.iter_rows(named=True)
    assert kept["status"] == "open" and kept["resolved_at"] is None
    assert (kept["last_run_id"], kept["evaluated_run_id"]) == ("new", "new")
    assert [body["event"] for body in hook.bodies] == ["opened"]
    assert warehouse.read("alerts").row(0, named=True)["status"] == "open"

    # A clean run that started after "new" resolves it.
    clean = raise_alerts(warehouse, "newer", config, senders, now=NOW + timedelta(hours=2))
    (resolved,) = clean.alerts.iter_rows(named=True)
    assert resolved["status"] == "resolved" and resolved["evaluated_run_id"] == "newer"
    assert [body["event"] for body in hook.bodies] == ["opened", "resolved"]
    assert hook.bodies[1]["alert_id"] == alert["alert_id"]

    # "new" judged again (a re-materialised partition) does not reopen what "newer" cleared.
    again = raise_alerts(warehouse, "new", config, senders, now=NOW + timedelta(hours=3))
    assert again.new_deliveries.height == 0
    assert again.alerts.row(0, named=True)["status"] == "resolved"
    assert len(hook.bodies) == 2
