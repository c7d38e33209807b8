"""The alert lifecycle with an injected clock: one alert per condition, escalation once,
resolution when the condition clears, acknowledgement."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from metrics_pipeline.alerts import AlertingConfig, Scope, Signal, Signals, evaluate_alerts
from metrics_pipeline.alerts.lifecycle import AlertNotFound, acknowledge, carry_over
from metrics_pipeline.alerts.signals import RUN_KINDS, missing_run_signals, run_signals
from metrics_pipeline.contracts.tables import conform, empty

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
WHERE = {"suite": "checkout", "scenario": "browse", "environment": "staging"}
CONFIG = AlertingConfig.model_validate(
    {
        "channels": {
            "hook": {"type": "webhook", "url": "${HOOK}"},
            "slack": {"type": "slack", "url": "${SLACK}"},
            "pager": {"type": "webhook", "url": "${PAGER}"},
        },
        "routes": [
            {"severities": ["critical", "warning"], "channels": ["hook", "slack"]},
            {"severities": ["info"], "kinds": ["trade_off"], "channels": ["hook"]},
        ],
        "escalation": {"after": "30m", "severities": ["critical"], "channels": ["pager"]},
        "expected_runs": [{"suite": "checkout", "every": "24h", "grace": "6h"}],
    }
)


def verdicts(run_id: str, regressed: bool) -> pl.DataFrame:
    return conform(
        "verdicts",
        pl.DataFrame(
            {
                "run_id": run_id,
                "endpoint": ["/api/orders", "/api/cart"],
                "metric": "latency_p95",
                "baseline": [90.0, 20.0],
                "candidate": [120.0 if regressed else 91.0, 20.0],
                "change": [0.33 if regressed else 0.01, 0.0],
                "regression": [regressed, False],
                "verdict": ["regression" if regressed else "ok", "ok"],
                "baseline_runs": "a,b",
            }
        ),
    )


def started(run_id: str) -> datetime:
    """When run ``run-<n>`` started (``n`` days after run-0): the order runs are judged in."""
    return T0 - timedelta(days=5) + timedelta(days=int(run_id.rsplit("-", 1)[1]))


def evaluate_run(alerts, run_id, regressed, now, started_at=None):
    run = {"run_id": run_id, **WHERE, "started_at": started_at or started(run_id)}
    history = pl.DataFrame(
        schema={"run_id": pl.String, "started_at": pl.Datetime, "item": pl.String}
    )
    signals = run_signals(
        run, verdicts(run_id, regressed), empty("sla_evaluations"), history=history, config=CONFIG
    )
    return evaluate_alerts(alerts, signals, now, CONFIG)


def test_a_regression_seen_twice_is_one_alert_and_one_notification_per_channel():
    alerts, sent = evaluate_run(empty("alerts"), "run-5", True, T0)
    assert alerts.height == 1 and set(sent["event"]) == {"opened"}
    assert sorted(sent["channel"]) == ["hook", "slack"]
    (alert,) = alerts.iter_rows(named=True)
    assert alert["status"] == "open" and alert["severity"] == "warning"
    assert alert["endpoint"] == "/api/orders" and alert["metric"] is None
    assert "latency_p95 +33% (90 -> 120)" in alert["summary"]

    # The same run evaluated again (a re-materialised partition): nothing new at all.
    again, sent_again = evaluate_run(alerts, "run-5", True, T0 + timedelta(minutes=1))
    assert sent_again.height == 0
    assert again.row(0, named=True)["evaluations"] == 1

    # The next run regresses too: same alert, updated, still no notification.
    later, sent_later = evaluate_run(again, "run-6", True, T0 + timedelta(days=1))
    assert sent_later.height == 0 and later.height == 1
    row = later.row(0, named=True)
    assert row["alert_id"] == alert["alert_id"]
    assert (row["evaluations"], row["first_run_id"], row["last_run_id"]) == (2, "run-5", "run-6")

    # A clean run resolves it (one resolved notification per channel) ...
    clean, sent_clean = evaluate_run(later, "run-7", False, T0 + timedelta(days=2))
    assert clean.row(0, named=True)["status"] == "resolved"
    assert sorted(zip(sent_clean["event"], sent_clean["channel"], strict=True)) == [
        ("resolved", "hook"),
        ("resolved", "slack"),
    ]
    # ... and a later regression reopens the same alert as a new incident.
    reopened, sent_reopened = evaluate_run(clean, "run-8", True, T0 + timedelta(days=3))
    assert set(sent_reopened["event"]) == {"opened"}
    row = reopened.row(0, named=True)
    assert row["status"] == "open" and row["first_run_id"] == "run-8"
    assert row["resolved_at"] is None


def test_the_metrics_of_one_endpoint_are_one_alert_at_the_worst_severity():
    def run(run_id: str, changes: dict[str, float]) -> Signals:
        rows = pl.DataFrame(
            {
                "run_id": run_id,
                "endpoint": "/api/orders",
                "metric": list(changes),
                "baseline": 90.0,
                "candidate": [90.0 * (1 + c) for c in changes.values()],
                "change": list(changes.values()),
                "regression": True,
                "verdict": "regression",
                "baseline_runs": "a,b",
            }
        )
        where = {"run_id": run_id, **WHERE, "started_at": started(run_id)}
        history = pl.DataFrame(
            schema={"run_id": pl.String, "started_at": pl.Datetime, "item": pl.String}
        )
        return run_signals(
            where,
            conform("verdicts", rows),
            empty("sla_evaluations"),
            history=history,
            config=CONFIG,
        )

    alerts, sent = evaluate_alerts(
        empty("alerts"), run("run-5", {"latency_p50": 0.3, "latency_p95": 0.6}), T0, CONFIG
    )
    (alert,) = alerts.iter_rows(named=True)
    assert alert["severity"] == "critical"  # the p95's +60 %
    assert alert["summary"].index("latency_p95 +60%") < alert["summary"].index("latency_p50 +30%")
    assert sorted(sent["channel"]) == ["hook", "slack"]
    # The next run regresses on p95 alone: the same alert, no new notification.
    later, sent_later = evaluate_alerts(alerts, run("run-6", {"latency_p95": 0.3}), T0, CONFIG)
    assert later.height == 1 and later["alert_id"][0] == alert["alert_id"]
    assert sent_later.filter(pl.col("event") == "opened").height == 0


def test_an_error_rate_is_judged_and_told_in_percentage_points():
    # 1.04 % -> 11.73 % of errors: +10.69 points. Read as a relative change it was "+11%" and a
    # warning (critical from +50 %, that is from 1 % to 51 %).
    rows = conform(
        "verdicts",
        pl.DataFrame(
            {
                "run_id": "run-5",
                "endpoint": "/api/cart",
                "metric": ["error_rate", "latency_p50"],
                "baseline": [0.0104, 20.0],
                "candidate": [0.1173, 21.0],
                "change": [0.1069, 0.05],
                "regression": True,
                "verdict": "regression",
                "baseline_runs": "a,b",
            }
        ),
    )
    where = {"run_id": "run-5", **WHERE, "started_at": started("run-5")}
    history = pl.DataFrame(
        schema={"run_id": pl.String, "started_at": pl.Datetime, "item": pl.String}
    )
    signals = run_signals(where, rows, empty("sla_evaluations"), history=history, config=CONFIG)
    (signal,) = signals.found
    assert signal.severity == "critical"
    assert "error_rate +10.69 pp (0.0104 -> 0.1173)" in signal.summary
    assert "latency_p50 +5% (20 -> 21)" in signal.summary
    # Under 5 points it is a warning, whatever its ratio (0 -> 2 % is "infinitely" worse).
    milder = rows.with_columns(change=pl.Series([0.02, 0.05]))
    (signal,) = run_signals(
        where, milder, empty("sla_evaluations"), history=history, config=CONFIG
    ).found
    assert signal.severity == "warning"


def test_other_combinations_are_not_resolved_by_a_clean_run():
    alerts, _ = evaluate_run(empty("alerts"), "run-5", True, T0)
    other = Signals([], [Scope(RUN_KINDS, suite="search", scenario="s", environment="e")])
    kept, sent = evaluate_alerts(alerts, other, T0, CONFIG)
    assert kept.row(0, named=True)["status"] == "open" and sent.height == 0


def critical(run_id: str = "run-1") -> Signal:
    return Signal(
        "sla_breach",
        "critical",
        "p95 beyond 500 ms",
        **WHERE,
        endpoint="/a",
        metric="latency_p95",
        run_id=run_id,
    )


def test_escalation_is_sent_once_after_the_delay_and_not_when_acknowledged():
    alerts, opened = evaluate_alerts(empty("alerts"), Signals([critical()]), T0, CONFIG)
    assert set(opened["channel"]) == {"hook", "slack"}
    early, none = evaluate_alerts(alerts, Signals(), T0 + timedelta(minutes=29), CONFIG)
    assert none.height == 0 and early.row(0, named=True)["escalated_at"] is None

    escalated, sent = evaluate_alerts(early, Signals(), T0 + timedelta(minutes=31), CONFIG)
    assert list(zip(sent["event"], sent["channel"], strict=True)) == [("escalated", "pager")]
    assert escalated.row(0, named=True)["escalated_at"] == T0 + timedelta(minutes=31)
    _, again = evaluate_alerts(escalated, Signals(), T0 + timedelta(hours=5), CONFIG)
    assert again.height == 0

    acked, row = acknowledge(alerts, alerts["alert_id"][0][:6], T0 + timedelta(minutes=5))
    assert row["status"] == "acknowledged"
    _, after_ack = evaluate_alerts(acked, Signals(), T0 + timedelta(hours=2), CONFIG)
    assert after_ack.height == 0


def test_a_rebuilt_alert_keeps_its_acknowledgement_and_escalation():
    # Before a rebuild: one alert acknowledged, the other escalated an hour after it opened.
    signals = Signals([critical(), replace(critical(), endpoint="/b")])
    before, _ = evaluate_alerts(empty("alerts"), signals, T0, CONFIG)
    acked = before.filter(pl.col("endpoint") == "/a")["alert_id"].item()
    before, _ = acknowledge(before, acked, T0 + timedelta(minutes=5))
    before, escalated = evaluate_alerts(before, Signals(), T0 + timedelta(hours=1), CONFIG)
    assert escalated.height == 1
    # The same alerts recomputed from the runs a day later, which know nothing of that.
    rebuilt, _ = evaluate_alerts(empty("alerts"), signals, T0 + timedelta(days=1), CONFIG)
    told = ["alert_id", "status", "opened_at", "acknowledged_at", "escalated_at"]
    kept = carry_over(rebuilt, before)
    assert kept.sort("alert_id").select(told).equals(before.sort("alert_id").select(told))
    _, none = evaluate_alerts(kept, Signals(), T0 + timedelta(days=2), CONFIG)
    assert none.height == 0  # neither escalated again
    # Another incident of the same condition (opened by another run) keeps nothing.
    other = rebuilt.with_columns(first_run_id=pl.lit("run-9"))
    assert carry_over(other, before).select(told).equals(other.select(told))
    # An alert the runs do not give again (here /b's) is kept as it was, not dropped.
    only_a = rebuilt.filter(pl.col("endpoint") == "/a")
    assert (
        carry_over(only_a, before)
        .sort("alert_id")
        .select(told)
        .equals(before.sort("alert_id").select(told))
    )


def test_acknowledging_an_unknown_or_resolved_alert_is_an_error():
    alerts, _ = evaluate_alerts(empty("alerts"), Signals([critical()]), T0, CONFIG)
    with pytest.raises(AlertNotFound, match="no alert"):
        acknowledge(alerts, "zzz", T0)
    scope = Signals([], [Scope(frozenset({"sla_breach"}))])
    resolved, _ = evaluate_alerts(alerts, scope, T0, CONFIG)
    with pytest.raises(AlertNotFound, match="already resolved"):
        acknowledge(resolved, resolved["alert_id"][0], T0)


def test_payloads_are_built_per_channel_type():
    _, sent = evaluate_alerts(empty("alerts"), Signals([critical()]), T0, CONFIG)
    bodies = {row["channel"]: json.loads(row["payload"]) for row in sent.iter_rows(named=True)}
    assert bodies["hook"]["event"] == "opened" and bodies["hook"]["kind"] == "sla_breach"
    assert bodies["hook"]["endpoint"] == "/a" and bodies["hook"]["severity"] == "critical"
    slack = bodies["slack"]
    assert set(slack) == {"text", "blocks"} and "p95 beyond 500 ms" in slack["text"]
    assert slack["blocks"][0]["type"] == "section"
    assert slack["blocks"][0]["text"]["type"] == "mrkdwn"


def test_expected_run_that_does_not_arrive_is_an_alert_until_one_does():
    runs = pl.DataFrame(
        {
            "run_id": ["c-1"],
            "started_at": [T0],
            **{k: [v] for k, v in WHERE.items()},
        }
    )
    within = missing_run_signals(runs, CONFIG, T0 + timedelta(hours=29))
    assert within.found == []
    late = missing_run_signals(runs, CONFIG, T0 + timedelta(hours=31))
    (signal,) = late.found
    assert signal.kind == "missing_run" and "since 2026-11-20 03:00" in signal.summary
    alerts, sent = evaluate_alerts(empty("alerts"), late, T0 + timedelta(hours=31), CONFIG)
    assert set(sent["event"]) == {"opened"}
    # Every later check while it is missing: the same alert, no notification.
    same, none = evaluate_alerts(
        alerts,
        missing_run_signals(runs, CONFIG, T0 + timedelta(hours=40)),
        T0 + timedelta(hours=40),
        CONFIG,
    )
    assert none.height == 0 and same.row(0, named=True)["evaluations"] == 1
    arrived = pl.concat(
        [runs, runs.with_columns(run_id=pl.lit("c-2"), started_at=pl.lit(T0 + timedelta(hours=41)))]
    )
    now = T0 + timedelta(hours=42)
    resolved, sent = evaluate_alerts(same, missing_run_signals(arrived, CONFIG, now), now, CONFIG)
    assert resolved.row(0, named=True)["status"] == "resolved" and set(sent["event"]) == {
        "resolved"
    }
    # A suite that never uploaded anything is missing too.
    (never,) = missing_run_signals(runs.clear(), CONFIG, now).found
    assert "has been received" in never.summary


def test_a_marked_absence_stays_quiet_until_a_run_comes():
    # "alerts invalid" on a missing run (the schedule was paused) resolved it, and the next
    # check, a minute later, opened it again.
    from metrics_pipeline.analysis.triage import mark

    runs = pl.DataFrame(
        {"run_id": ["c-1"], "started_at": [T0], **{k: [v] for k, v in WHERE.items()}}
    )
    condition = {"kind": "missing_run", "suite": "checkout", "scenario": None, "environment": None}
    triage = mark(
        empty("triage"),
        condition | {"endpoint": None, "metric": None, "run_id": "c-1"},
        "expected",
        note="paused",
        marked_by="ana",
        now=T0 + timedelta(hours=35),
        started_at=T0,
    )
    assert missing_run_signals(runs, CONFIG, T0 + timedelta(days=5), triage).found == []
    # A run came after the mark, then none again: the suite is missing anew.
    again = pl.concat(
        [runs, runs.with_columns(run_id=pl.lit("c-2"), started_at=pl.lit(T0 + timedelta(days=6)))]
    )
    (signal,) = missing_run_signals(again, CONFIG, T0 + timedelta(days=8), triage).found
    assert "c-2" in signal.summary
    # So does one under way when the mark was made (started before it, uploaded after).
    under_way = runs.with_columns(
        run_id=pl.lit("c-3"),
        started_at=pl.lit(T0 + timedelta(hours=34)),
        ingested_at=pl.lit(T0 + timedelta(hours=36)),
    )
    arrived = pl.concat([runs.with_columns(ingested_at=pl.lit(T0)), under_way])
    (signal,) = missing_run_signals(arrived, CONFIG, T0 + timedelta(days=8), triage).found
    assert "c-3" in signal.summary


def test_an_endpoint_every_previous_run_had_is_missing_data():
    history = pl.DataFrame(
        [
            {"run_id": f"r{i}", "started_at": T0 + timedelta(days=i), "item": item}
            for i in range(1, 6)
            for item in ["endpoint:/a", "endpoint:/b", "resource:cpu_pct"]
            if not (i == 2 and item == "endpoint:/a")
        ]
        + [{"run_id": "r6", "started_at": T0 + timedelta(days=6), "item": "endpoint:/c"}]
    )
    run = {"run_id": "r6", **WHERE, "started_at": T0 + timedelta(days=6)}
    signals = run_signals(
        run, verdicts("r6", False), empty("sla_evaluations"), history=history, config=CONFIG
    )
    found = {(s.kind, s.endpoint, s.metric) for s in signals.found}
    # /b and cpu_pct were in each of the 5 previous runs; /a was not in r2, so it is not expected.
    assert found == {("missing_endpoint", "/b", None), ("missing_metric", None, "cpu_pct")}


def test_a_run_evaluated_after_a_later_one_changes_none_of_its_alerts():
    alerts, opened = evaluate_run(empty("alerts"), "run-6", True, T0)
    assert set(opened["event"]) == {"opened"}
    (row,) = alerts.iter_rows(named=True)
    assert (row["evaluated_run_id"], row["evaluated_run_started_at"]) == ("run-6", started("run-6"))

    # run-5 ran before run-6 and arrives a day later: clean, it does not resolve run-6's alert;
    # regressed, it does not update it either.
    for regressed in (False, True):
        kept, sent = evaluate_run(alerts, "run-5", regressed, T0 + timedelta(days=1))
        assert sent.height == 0
        assert kept.equals(alerts)

    # A later clean run resolves it and is remembered ...
    resolved, sent = evaluate_run(alerts, "run-8", False, T0 + timedelta(days=2))
    assert set(sent["event"]) == {"resolved"}
    row = resolved.row(0, named=True)
    assert (row["status"], row["evaluated_run_id"]) == ("resolved", "run-8")
    # ... so run-7, between the regressed run-6 and the clean run-8, does not reopen it;
    # neither does run-6 judged again (a re-materialised partition).
    for run_id in ("run-7", "run-6"):
        kept, sent = evaluate_run(resolved, run_id, True, T0 + timedelta(days=3))
        assert sent.height == 0 and kept.equals(resolved)
    # A clean run-9 moves the mark on without notifying; run-8.5 (a regressed run that started
    # between 8 and 9) arriving after it stays history too.
    later, sent = evaluate_run(resolved, "run-9", False, T0 + timedelta(days=4))
    assert sent.height == 0 and later.row(0, named=True)["evaluated_run_id"] == "run-9"
    between = started("run-8") + timedelta(hours=12)
    kept, sent = evaluate_run(later, "run-8b", True, T0 + timedelta(days=5), between)
    assert sent.height == 0 and kept.equals(later)
    # A newer regression reopens it.
    reopened, sent = evaluate_run(later, "run-10", True, T0 + timedelta(days=5))
    assert set(sent["event"]) == {"opened"}
    assert reopened.row(0, named=True)["status"] == "open"


def test_runs_that_started_at_the_same_instant_are_ordered_by_run_id():
    same = started("run-6")
    alerts, _ = evaluate_run(empty("alerts"), "run-6b", True, T0, same)
    # "run-6a" < "run-6b": the earlier of the two, whatever the order they arrive in.
    kept, sent = evaluate_run(alerts, "run-6a", False, T0 + timedelta(hours=1), same)
    assert sent.height == 0 and kept.equals(alerts)
    resolved, sent = evaluate_run(alerts, "run-6c", False, T0 + timedelta(hours=1), same)
    assert set(sent["event"]) == {"resolved"}
    assert resolved.row(0, named=True)["evaluated_run_id"] == "run-6c"


def test_each_notification_has_its_own_delivery_id_in_the_webhook_body():
    # A frozen clock (METRICS_NOW): opened, resolved and reopened at the same instant.
    alerts, first = evaluate_run(empty("alerts"), "run-5", True, T0)
    resolved, cleared = evaluate_run(alerts, "run-6", False, T0)
    _, again = evaluate_run(resolved, "run-7", True, T0)
    rows = pl.concat([first, cleared, again])
    assert rows["delivery_id"].n_unique() == rows.height == 6
    for row in rows.filter(pl.col("channel") == "hook").iter_rows(named=True):
        assert json.loads(row["payload"])["delivery_id"] == row["delivery_id"]


def test_a_run_reuploaded_with_its_start_corrected_resolves_its_own_alert():
    # Its own earlier evaluation, started a moment later, passed for a "later run": the
    # clean new version could not resolve the alert the old one opened.
    alerts, _ = evaluate_run(empty("alerts"), "run-6", True, T0)
    earlier = started("run-6") - timedelta(seconds=0.8)
    resolved, sent = evaluate_run(alerts, "run-6", False, T0 + timedelta(hours=1), earlier)
    assert set(sent["event"]) == {"resolved"}
    assert resolved.row(0, named=True)["status"] == "resolved"


def test_an_alert_that_worsens_reaches_the_channels_its_new_severity_routes_to():
    # Warnings go to the chat, criticals to the pager: a warning that became critical was
    # updated without a word, and the pager never heard of it.
    config = AlertingConfig.model_validate(
        {
            "channels": {
                "chat": {"type": "webhook", "url": "${CHAT}"},
                "pager": {"type": "webhook", "url": "${PAGER}"},
            },
            "routes": [
                {"severities": ["warning"], "channels": ["chat"]},
                {
                    "severities": ["critical", "warning"],
                    "kinds": ["sla_breach"],
                    "channels": ["chat"],
                },
                {"severities": ["critical"], "channels": ["pager"]},
            ],
        }
    )

    def evaluate(alerts, run_id: str, severity: str):
        at = started(run_id)
        signal = Signal(
            "regression",
            severity,
            f"/a {severity}",
            endpoint="/a",
            run_id=run_id,
            run_started_at=at,
            **WHERE,
        )
        scope = Scope(frozenset({"regression"}), run_id=run_id, run_started_at=at, **WHERE)
        return evaluate_alerts(alerts, Signals([signal], [scope]), at, config)

    alerts, first = evaluate(empty("alerts"), "run-1", "warning")
    assert first.select("channel", "event").rows() == [("chat", "opened")]
    alerts, worse = evaluate(alerts, "run-2", "critical")
    assert worse.select("channel", "event").rows() == [("pager", "opened")]
    assert alerts.select("severity", "status").rows() == [("critical", "open")]
    # Seen again at the same severity, or milder: no one is told again.
    alerts, again = evaluate(alerts, "run-3", "critical")
    alerts, milder = evaluate(alerts, "run-4", "warning")
    assert again.height == milder.height == 0
    # Critical again: the pager was told already. Then a clean run: every channel told it
    # opened hears it resolved, whatever its severity routes to by then.
    alerts, worse_again = evaluate(alerts, "run-5", "critical")
    alerts, _ = evaluate(alerts, "run-6", "warning")
    assert worse_again.height == 0
    at = started("run-7")
    scope = Scope(frozenset({"regression"}), run_id="run-7", run_started_at=at, **WHERE)
    alerts, resolved = evaluate_alerts(alerts, Signals([], [scope]), at, config)
    assert sorted(resolved.select("channel", "event").rows()) == [
        ("chat", "resolved"),
        ("pager", "resolved"),
    ]


def test_withdrawing_a_run_resolves_only_the_alerts_it_alone_showed():
    from metrics_pipeline.alerts.lifecycle import withdraw

    def regression(endpoint: str, run_id: str) -> Signal:
        at = started(run_id)
        return Signal(
            "regression",
            "critical",
            endpoint,
            endpoint=endpoint,
            run_id=run_id,
            run_started_at=at,
            **WHERE,
        )

    def evaluate(alerts, run_id: str, *endpoints: str):
        at = started(run_id)
        scope = Scope(frozenset({"regression"}), run_id=run_id, run_started_at=at, **WHERE)
        signals = Signals([regression(e, run_id) for e in endpoints], [scope])
        return evaluate_alerts(alerts, signals, at, CONFIG)[0]

    # /a regressed in run-1 and again in run-2; /b only in run-2. run-2 is uploaded again and
    # is invalid: /b's evidence is gone, /a's run-1 still stands.
    alerts = evaluate(empty("alerts"), "run-1", "/a")
    alerts = evaluate(alerts, "run-2", "/a", "/b")
    alerts, told = withdraw(alerts, "run-2", started("run-3"), CONFIG)
    assert dict(alerts.select("endpoint", "status").rows()) == {"/a": "open", "/b": "resolved"}
    assert set(told["event"]) == {"resolved"} and told.height == 2  # hook and slack
    assert withdraw(alerts, "run-2", started("run-3"), CONFIG)[1].height == 0


def test_a_resolved_notification_names_the_run_that_cleared_it():
    def evaluate(alerts, run_id: str, regressed: bool):
        at = started(run_id)
        scope = Scope(frozenset({"regression"}), run_id=run_id, run_started_at=at, **WHERE)
        signal = Signal(
            "regression",
            "critical",
            "/a slower",
            endpoint="/a",
            run_id=run_id,
            run_started_at=at,
            **WHERE,
        )
        return evaluate_alerts(alerts, Signals([signal] if regressed else [], [scope]), at, CONFIG)

    alerts, _ = evaluate(empty("alerts"), "run-1", True)
    _, sent = evaluate(alerts, "run-2", False)
    bodies = {row["channel"]: json.loads(row["payload"]) for row in sent.iter_rows(named=True)}
    assert bodies["hook"]["event"] == "resolved" and bodies["hook"]["evaluated_run_id"] == "run-2"
    context = bodies["slack"]["blocks"][1]["elements"][0]["text"]
    assert "run run-1 · resolved by run run-2" in context
