"""Delivery through local receivers: retries with backoff, nothing lost while a receiver is
down, exactly one delivery once it is back; Slack and email bodies."""

from __future__ import annotations

import email
import email.policy
import socket
from datetime import UTC, datetime, timedelta

import pytest
from receivers import http_receiver, smtp_receiver

from metrics_pipeline.alerts import (
    AlertingConfig,
    Signal,
    Signals,
    build_senders,
    deliver,
    evaluate_alerts,
)
from metrics_pipeline.alerts.delivery import pending
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
