"""The bodies of notifications, per channel type, built when the notification is queued (the
outbox keeps exactly what is sent)."""

from __future__ import annotations

import json

EVENT_TITLE = {"opened": "ALERT", "escalated": "ESCALATED", "resolved": "RESOLVED"}
SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":information_source:",
}


def _iso(value) -> str | None:
    return None if value is None else value.isoformat()


def webhook_payload(alert: dict, event: str) -> dict:
    """A flat JSON object: the alert's fields, the event, and its details."""
    return {
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
        "details": json.loads(alert["details"] or "{}"),
    }


def _headline(alert: dict, event: str) -> str:
    return f"[{EVENT_TITLE[event]}] {alert['severity']} {alert['kind']}: {alert['summary']}"


def _where(alert: dict) -> str:
    parts = [alert["suite"], alert["scenario"], alert["environment"]]
    where = " / ".join(p for p in parts if p) or "pipeline"
    return f"{where} · run {alert['last_run_id']}" if alert["last_run_id"] else where


def slack_payload(alert: dict, event: str) -> dict:
    """Slack's incoming-webhook format: ``text`` (the notification fallback) and ``blocks``."""
    emoji = ":white_check_mark:" if event == "resolved" else SEVERITY_EMOJI[alert["severity"]]
    return {
        "text": _headline(alert, event),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{emoji} *{EVENT_TITLE[event]}* `{alert['severity']}` "
                    f"*{alert['kind']}*\n{alert['summary']}",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{_where(alert)} · alert `{alert['alert_id']}` · "
                        f"seen in {alert['evaluations']} evaluation(s)",
                    }
                ],
            },
        ],
    }


def email_payload(alert: dict, event: str) -> dict:
    """Subject and plain-text body; the channel adds sender and recipients."""
    lines = [
        alert["summary"],
        "",
        f"event:       {event}",
        f"severity:    {alert['severity']}",
        f"kind:        {alert['kind']}",
        f"where:       {_where(alert)}",
        f"alert id:    {alert['alert_id']}  (metrics-pipeline alerts ack {alert['alert_id']})",
        f"opened at:   {_iso(alert['opened_at'])}",
        f"evaluations: {alert['evaluations']}",
    ]
    return {"subject": _headline(alert, event)[:200], "body": "\n".join(lines) + "\n"}


BUILDERS = {"webhook": webhook_payload, "slack": slack_payload, "email": email_payload}


def payload_for(channel_type: str, alert: dict, event: str) -> dict:
    return BUILDERS[channel_type](alert, event)
