"""Delivery through local receivers: retries with backoff, nothing lost while a receiver is
down, exactly one delivery once it is back; Slack and email bodies; one notification's failure
kept to itself; a total deadline per send; an idempotency key on every notification."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import socket
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from receivers import http_receiver, silent_receiver, smtp_receiver

from metrics_pipeline.alerts import (
    AlertingConfig,
    Scope,
    Signal,
    Signals,
    build_senders,
    deliver,
    evaluate_alerts,
)
from metrics_pipeline.alerts.delivery import pending
from metrics_pipeline.alerts.service import process
from metrics_pipeline.contracts.tables import empty

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SIGNAL = Signal(
    "regression",
    "critical",
    "latency_p95 of /api/orders +60% vs baseline",
    suite="checkout",
    scenario="browse",
    environment="staging",
    endpoint="/api/orders",
    metric="latency_p95",
    run_id="run-9",
)


@pytest.fixture
def hook():
    with http_receiver() as recorder:
        yield recorder


@pytest.fixture
def mail():
    with smtp_receiver() as receiver:
        yield receiver


def about(endpoint: str) -> Signal:
    """``SIGNAL`` for another endpoint (the name is in the summary, as run_signals puts it)."""
    return dataclasses.replace(
        SIGNAL, endpoint=endpoint, summary=f"latency_p95 of {endpoint} +60% vs baseline"
    )


def config(**channels) -> AlertingConfig:
    return AlertingConfig.model_validate(
        {
            "channels": channels,
            "routes": [{"severities": ["critical"], "channels": list(channels)}],
            "retry": {"initial": "30s", "maximum": "10m"},
        }
    )


def opened(cfg: AlertingConfig):
    _, outbox = evaluate_alerts(empty("alerts"), Signals([SIGNAL]), T0, cfg)
    return outbox


def test_a_failing_receiver_keeps_the_alert_in_the_outbox_until_it_accepts(hook):
    cfg = config(hook={"type": "webhook", "url": "${HOOK_URL}"})
    senders = build_senders(cfg, {"HOOK_URL": hook.url}.get)
    hook.failures_left = 2

    outbox = deliver(opened(cfg), senders, T0, cfg.retry)
    (row,) = outbox.iter_rows(named=True)
    assert row["delivered_at"] is None and row["attempts"] == 1
    assert row["next_attempt_at"] == T0 + timedelta(seconds=30)
    assert "HTTP 500" in row["last_error"]

    # Not due yet: no attempt.
    outbox = deliver(outbox, senders, T0 + timedelta(seconds=10), cfg.retry)
    assert hook.refused == 1 and outbox["attempts"][0] == 1

    # Second failure doubles the wait.
    at = T0 + timedelta(seconds=30)
    outbox = deliver(outbox, senders, at, cfg.retry)
    assert outbox["attempts"][0] == 2 and outbox["next_attempt_at"][0] == at + timedelta(minutes=1)

    # Back up: delivered exactly once, and later passes send nothing more.
    at += timedelta(minutes=1)
    outbox = deliver(outbox, senders, at, cfg.retry)
    assert outbox["delivered_at"][0] == at and pending(outbox).height == 0
    outbox = deliver(outbox, senders, at + timedelta(hours=1), cfg.retry)
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["event"] == "opened" and body["kind"] == "regression"
    assert body["alert_id"] == SIGNAL.fingerprint and body["endpoint"] == "/api/orders"
    assert body["summary"] == SIGNAL.summary and body["last_run_id"] == "run-9"


def test_an_alerts_notifications_arrive_in_the_order_they_were_queued(hook):
    # The receiver fails the "opened"; a clean run resolves the alert before its retry is due.
    # The "resolved" waits behind it: sent first, the receiver's last word on a resolved alert
    # was that it is open. Another alert's notification is not held back.
    cfg = config(hook={"type": "webhook", "url": "${HOOK_URL}"})
    senders = build_senders(cfg, {"HOOK_URL": hook.url}.get)
    hook.failures_left = 1
    alerts, outbox = evaluate_alerts(empty("alerts"), Signals([SIGNAL]), T0, cfg)
    outbox = deliver(outbox, senders, T0, cfg.retry)
    later = T0 + timedelta(seconds=10)
    scope = Scope(frozenset({"regression"}), "checkout", "browse", "staging", run_id="run-10")
    other = dataclasses.replace(about("/api/cart"), run_id="run-10")
    alerts, queued = evaluate_alerts(alerts, Signals([other], [scope]), later, cfg)
    assert sorted(queued["event"]) == ["opened", "resolved"]
    outbox = deliver(pl.concat([outbox, queued]), senders, later, cfg.retry)
    assert [(b["event"], b["endpoint"]) for b in hook.bodies] == [("opened", "/api/cart")]
    outbox = deliver(outbox, senders, T0 + timedelta(seconds=30), cfg.retry)
    assert [(b["event"], b["endpoint"]) for b in hook.bodies[1:]] == [
        ("opened", "/api/orders"),
        ("resolved", "/api/orders"),
    ]
    assert pending(outbox).height == 0


def test_a_notification_the_receiver_refuses_holds_back_none_of_its_alert(hook):
    # The receiver refuses the "opened" body (HTTP 400): it is retried, and may never pass; the
    # alert's "resolved" waited behind it for ever.
    cfg = config(hook={"type": "webhook", "url": "${HOOK_URL}"})
    senders = build_senders(cfg, {"HOOK_URL": hook.url}.get)
    hook.reject = lambda body: body["event"] == "opened"
    alerts, outbox = evaluate_alerts(empty("alerts"), Signals([SIGNAL]), T0, cfg)
    outbox = deliver(outbox, senders, T0, cfg.retry)
    assert outbox["last_error"][0].startswith("refused: HTTP 400")
    later = T0 + timedelta(seconds=10)
    scope = Scope(frozenset({"regression"}), "checkout", "browse", "staging", run_id="run-10")
    _, queued = evaluate_alerts(alerts, Signals([], [scope]), later, cfg)
    outbox = deliver(pl.concat([outbox, queued]), senders, later, cfg.retry)
    assert [b["event"] for b in hook.bodies] == ["resolved"]


def test_a_receiver_that_is_down_is_retried_later_with_backoff(hook):
    down = f"http://127.0.0.1:{_closed_port()}/hook"
    cfg = config(hook={"type": "webhook", "url": "${HOOK_URL}"})
    outbox = deliver(opened(cfg), build_senders(cfg, {"HOOK_URL": down}.get), T0, cfg.retry)
    assert outbox["attempts"][0] == 1 and "unreachable" in outbox["last_error"][0]
    at = T0 + timedelta(seconds=30)
    senders = build_senders(cfg, {"HOOK_URL": hook.url}.get)
    outbox = deliver(outbox, senders, at, cfg.retry)
    assert outbox["delivered_at"][0] == at and len(hook.bodies) == 1


def test_slack_receives_text_and_blocks(hook):
    cfg = config(slack={"type": "slack", "url": hook.url})
    deliver(opened(cfg), build_senders(cfg, {}.get), T0, cfg.retry)
    (body,) = hook.bodies
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("[ALERT] critical regression: latency_p95 of /api/orders")
    section, context = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*regression*" in section["text"]["text"]
    assert context["type"] == "context" and SIGNAL.fingerprint in context["elements"][0]["text"]


def test_an_unset_secret_leaves_the_notification_waiting_without_counting_attempts():
    cfg = config(hook={"type": "webhook", "url": "${UNSET_HOOK_URL}"})
    outbox = deliver(opened(cfg), build_senders(cfg, {}.get), T0, cfg.retry)
    (row,) = outbox.iter_rows(named=True)
    assert row["delivered_at"] is None and row["attempts"] == 0
    assert row["last_error"] == "channel hook is not configured: UNSET_HOOK_URL is not set"


def test_email_goes_out_over_smtp(mail):
    port, messages = mail
    cfg = config(
        mail={
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "sender": "alerts@example.com",
            "to": ["oncall@example.com"],
        }
    )
    outbox = deliver(opened(cfg), build_senders(cfg, {}.get), T0, cfg.retry)
    assert outbox["delivered_at"][0] == T0
    (raw,) = messages
    message = email.message_from_string(raw, policy=email.policy.default)
    assert message["To"] == "oncall@example.com"
    assert (
        message["Subject"].strip().startswith("[ALERT] critical regression: latency_p95 of /api/o")
    )
    assert f"metrics-pipeline alerts ack {SIGNAL.fingerprint}" in message.get_content()


def _closed_port() -> int:
    """A port nothing listens on: connections are refused, as with a receiver that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def email_channel(port: int) -> dict:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "sender": "alerts@example.com",
        "to": ["oncall@example.com"],
    }


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_a_receiver_that_answers_too_late_gets_each_notification_once_per_key(
    mode, hook, warehouse
):
    # The receiver takes each request, then never answers (hang) or answers a byte at a time,
    # each byte well within the timeout (drip): only a deadline on the whole send stops it.
    cfg = config(
        hook={"type": "webhook", "url": hook.url, "timeout": "1s"},
        slack={"type": "slack", "url": hook.url, "timeout": "1s"},
    )
    senders = build_senders(cfg, {}.get)
    hook.mode, hook.drip_every = mode, 0.2
    first = process(warehouse, cfg, Signals([SIGNAL, about("/api/cart")]), T0, senders)

    # The pass returned; per channel one attempt failed on the deadline, the other waits.
    tried = first.outbox.filter(pl.col("attempts") == 1)
    assert sorted(tried["channel"]) == ["hook", "slack"]
    assert all("deadline of 1 s passed" in error for error in tried["last_error"])
    assert first.pending.height == 4 and len(hook.bodies) == 2

    # Healthy again: everything is delivered; what the receiver got twice has one key.
    hook.mode = "ok"
    second = process(warehouse, cfg, Signals(), T0 + timedelta(minutes=1), senders)
    assert second.pending.height == 0
    received = hook.by_key()
    assert set(received) == set(second.outbox["delivery_id"])
    assert sorted(len(bodies) for bodies in received.values()) == [1, 1, 2, 2]
    for key, bodies in received.items():
        assert all(body == bodies[0] for body in bodies)
        if "blocks" not in bodies[0]:  # the webhook's body carries the key too
            assert bodies[0]["delivery_id"] == key
    # Later passes send nothing more.
    process(warehouse, cfg, Signals(), T0 + timedelta(hours=1), senders)
    assert len(hook.bodies) == 6


def test_hostile_endpoint_names_reach_every_channel_once_and_inert(hook, mail, warehouse):
    port, messages = mail
    cfg = config(
        hook={"type": "webhook", "url": hook.url},
        slack={"type": "slack", "url": hook.url},
        mail=email_channel(port),
    )
    senders = build_senders(cfg, {}.get)
    injected, mention = "/api/orders\r\nBcc: victim@example.com", "/api/<!channel> & <@U1>"
    signals = Signals([about(injected), about(mention)])
    process(warehouse, cfg, signals, T0, senders)
    outcome = process(warehouse, cfg, Signals(), T0 + timedelta(hours=1), senders)
    assert outcome.pending.height == 0 and outcome.outbox["last_error"].is_null().all()

    # Each receiver got each alert once.
    webhooks = [body for body in hook.bodies if "blocks" not in body]
    assert sorted(body["endpoint"] for body in webhooks) == sorted([injected, mention])
    assert len(hook.bodies) == 4 and len(set(hook.keys)) == 4

    # The mail subject is one line; nothing became a header of its own.
    assert len(messages) == 2
    for raw in messages:
        message = email.message_from_string(raw, policy=email.policy.default)
        assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
        assert message["Bcc"] is None and message["Message-ID"]
    subjects = [
        email.message_from_string(raw, policy=email.policy.default)["Subject"] for raw in messages
    ]
    assert any("of /api/orders Bcc: victim@example.com +60%" in subject for subject in subjects)

    # Slack shows the text and pings nobody; the formatting the payload builds is kept.
    (slack,) = [body for body in hook.bodies if "blocks" in body and "channel" in body["text"]]
    escaped = "/api/&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert escaped in slack["text"] and escaped in slack["blocks"][0]["text"]["text"]
    assert "<!channel>" not in json.dumps(slack) and "<@U1>" not in json.dumps(slack)
    assert "*regression*" in slack["blocks"][0]["text"]["text"]


def test_a_notification_that_cannot_be_sent_fails_alone(hook, mail):
    port, _ = mail
    cfg = config(hook={"type": "webhook", "url": hook.url}, mail=email_channel(port))
    senders = build_senders(cfg, {}.get)
    _, outbox = evaluate_alerts(empty("alerts"), Signals([SIGNAL, about("/api/cart")]), T0, cfg)
    # A mail row the sender cannot write (as a row from an older version might be) ...
    broken = outbox.filter(pl.col("channel") == "mail")["delivery_id"][0]
    outbox = outbox.with_columns(
        payload=pl.when(pl.col("delivery_id") == broken)
        .then(pl.lit(json.dumps({"subject": "no body"})))
        .otherwise("payload")
    )
    # ... and a webhook that refuses one body (HTTP 400).
    hook.reject = lambda body: body["endpoint"] == "/api/cart"

    outbox = deliver(outbox, senders, T0, cfg.retry)
    failed = outbox.filter(pl.col("delivered_at").is_null())
    assert failed.height == 2 and set(failed["attempts"]) == {1}
    errors = dict(zip(failed["channel"], failed["last_error"], strict=True))
    assert "KeyError" in errors["mail"] and errors["hook"] == "refused: HTTP 400 Bad Request"
    # The channel's other notification went out in the same pass, and only once.
    outbox = deliver(outbox, senders, T0 + timedelta(hours=1), cfg.retry)
    assert outbox.filter(pl.col("delivered_at").is_not_null()).height == 2
    assert [body["endpoint"] for body in hook.bodies] == ["/api/orders"]
    assert outbox.filter(pl.col("delivered_at").is_null())["attempts"].to_list() == [2, 2]


def test_a_mail_server_that_never_answers_costs_one_timeout_and_blocks_nobody(hook):
    with silent_receiver() as port:
        cfg = config(
            mail=email_channel(port) | {"timeout": "1s"},
            hook={"type": "webhook", "url": hook.url},
        )
        outbox = deliver(opened(cfg), build_senders(cfg, {}.get), T0, cfg.retry)
    mail = outbox.filter(pl.col("channel") == "mail").row(0, named=True)
    assert mail["delivered_at"] is None and mail["attempts"] == 1
    assert mail["last_error"].endswith("deadline of 1 s passed before the receiver answered")
    assert outbox.filter(pl.col("channel") == "hook")["delivered_at"].to_list() == [T0]
    assert len(hook.bodies) == 1
