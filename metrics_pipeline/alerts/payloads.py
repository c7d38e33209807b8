"""The bodies of notifications, per channel type, built when the notification is queued (the
outbox keeps exactly what is sent).

Alert text comes from the load test (endpoint names, metric names, run ids), so it is quoted
for where it goes: Slack mrkdwn escapes ``&``, ``<`` and ``>`` (``<!channel>`` in an endpoint
name would ping everyone), and a mail header gets one line (a newline would end the header).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable

EVENT_TITLE = {"opened": "ALERT", "escalated": "ESCALATED", "resolved": "RESOLVED"}
SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":information_source:",
}


def _iso(value) -> str | None:
    return None if value is None else value.isoformat()


def one_line(value: str) -> str:
    """``value`` as one line for a mail header: every run of whitespace or control characters
    (CR, LF, tab, NUL, line and paragraph separators) becomes one space."""
    spaced = "".join(
        " " if unicodedata.category(c) in {"Cc", "Zl", "Zp"} else c for c in str(value)
    )
    return " ".join(spaced.split())


def slack_escape(value: object) -> str:
    """``value`` as literal text in Slack mrkdwn: ``&``, ``<``, ``>`` as entities (Slack's
    rules: ``<...>`` is a link or a mention such as ``<!channel>``)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(alert: dict, event: str, delivery_id: str) -> dict:
    """A flat JSON object: the alert's fields, the event, and its details.

    ``delivery_id`` is the notification's idempotency key (also the ``Idempotency-Key``
    header): the same on every retry, so a receiver that got it before can drop it.
    """
    return {
        "delivery_id": delivery_id,
        "event": event,
        "alert_id": alert["alert_id"],
        "kind": alert["kind"],
        "severity": alert["severity"],
        "status": alert["status"],
        "summary": alert["summary"],
        "suite": alert["suite"],
        "scenario": alert["scenario"],
        "environment": alert["environment"],
        "endpoint": alert["endpoint"],
        "metric": alert["metric"],
        "first_run_id": alert["first_run_id"],
        "last_run_id": alert["last_run_id"],
        "evaluations": alert["evaluations"],
        "opened_at": _iso(alert["opened_at"]),
        "resolved_at": _iso(alert["resolved_at"]),
        # The run whose evaluation resolved (or last saw) the condition.
        "evaluated_run_id": alert.get("evaluated_run_id"),
        "details": json.loads(alert["details"] or "{}"),
    }


Quote = Callable[[object], str]


def _headline(alert: dict, event: str, quote: Quote = str) -> str:
    return (
        f"[{EVENT_TITLE[event]}] {quote(alert['severity'])} {quote(alert['kind'])}: "
        f"{quote(alert['summary'])}"
    )


def _where(alert: dict, quote: Quote = str, event: str = "opened") -> str:
    parts = [alert["suite"], alert["scenario"], alert["environment"]]
    where = " / ".join(quote(p) for p in parts if p) or "pipeline"
    if alert["last_run_id"]:
        where += f" · run {quote(alert['last_run_id'])}"
    cleared = alert.get("evaluated_run_id")
    if event == "resolved" and cleared and cleared != alert["last_run_id"]:
        where += f" · resolved by run {quote(cleared)}"
    return where


def slack_payload(alert: dict, event: str, delivery_id: str) -> dict:
    """Slack's incoming-webhook format: ``text`` (the notification fallback) and ``blocks``.

    Every value from the alert is escaped (``slack_escape``): both ``text`` and the blocks are
    mrkdwn. Slack's body has no field for ``delivery_id``; it goes in the header only.
    """
    q = slack_escape
    emoji = ":white_check_mark:" if event == "resolved" else SEVERITY_EMOJI[alert["severity"]]
    return {
        "text": _headline(alert, event, q),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{emoji} *{EVENT_TITLE[event]}* `{q(alert['severity'])}` "
                    f"*{q(alert['kind'])}*\n{q(alert['summary'])}",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{_where(alert, q, event)} · alert `{q(alert['alert_id'])}` · "
                        f"seen in {alert['evaluations']} evaluation(s)",
                    }
                ],
            },
        ],
    }


def email_payload(alert: dict, event: str, delivery_id: str) -> dict:
    """Subject (one line: see ``one_line``) and plain-text body; the channel adds sender,
    recipients and a ``Message-ID`` made of ``delivery_id``."""
    lines = [
        alert["summary"],
        "",
        f"event:       {event}",
        f"severity:    {alert['severity']}",
        f"kind:        {alert['kind']}",
        f"where:       {_where(alert, event=event)}",
        f"alert id:    {alert['alert_id']}  (metrics-pipeline alerts ack {alert['alert_id']})",
        f"opened at:   {_iso(alert['opened_at'])}",
        f"evaluations: {alert['evaluations']}",
    ]
    return {"subject": one_line(_headline(alert, event))[:200], "body": "\n".join(lines) + "\n"}


BUILDERS = {"webhook": webhook_payload, "slack": slack_payload, "email": email_payload}


def payload_for(channel_type: str, alert: dict, event: str, delivery_id: str) -> dict:
    """The body of ``event`` of ``alert`` for a channel of ``channel_type``."""
    return BUILDERS[channel_type](alert, event, delivery_id)
