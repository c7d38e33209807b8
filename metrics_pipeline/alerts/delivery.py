"""Delivering the outbox: each notification is sent until a receiver accepted it.

``deliver`` takes the outbox (``alert_deliveries`` rows), the senders by channel name and the
time. A due notification is sent; on success it is marked delivered, on failure it stays with
``attempts`` + 1 and ``next_attempt_at`` pushed back exponentially (``Retry``). Nothing is ever
dropped: a receiver that is down for a day gets everything once it is back.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

import polars as pl

from metrics_pipeline.alerts.config import (
    AlertingConfig,
    EmailChannel,
    Lookup,
    Retry,
    SlackChannel,
    UnresolvedSecret,
    WebhookChannel,
    resolve,
)
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.tables import conform

# Delivered notifications are kept this long for the record, then dropped from the outbox.
DELIVERED_KEPT = timedelta(days=30)
ERROR_CHARS = 500


class DeliveryError(MetricsPipelineError, RuntimeError):
    """The receiver refused the notification or could not be reached."""


class NotConfigured(DeliveryError):
    """The channel cannot be used yet (a secret is unset, or it is not in the config): the
    notification waits without counting an attempt."""


class Sender(Protocol):
    def send(self, payload: dict) -> None:
        """Deliver ``payload`` or raise DeliveryError."""


class HttpJsonSender:
    """POSTs JSON to a URL (generic webhooks and Slack incoming webhooks)."""

    def __init__(self, url: str, timeout: float, headers: Mapping[str, str] | None = None):
        if not url.startswith(("http://", "https://")):
            raise NotConfigured("the URL must start with http:// or https://")
        self.url, self.timeout, self.headers = url, timeout, dict(headers or {})

    def send(self, payload: dict) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **self.headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"unreachable: {getattr(exc, 'reason', exc)}") from None


class SmtpSender:
    """Sends ``{"subject", "body"}`` payloads as plain-text mail."""

    def __init__(self, channel: EmailChannel, lookup: Lookup):
        self.channel = channel
        self.host = resolve(channel.host, lookup)
        self.username = resolve(channel.username, lookup) if channel.username else None
        self.password = resolve(channel.password, lookup) if channel.password else None

    def send(self, payload: dict) -> None:
        message = EmailMessage()
        message["From"] = self.channel.sender
        message["To"] = ", ".join(self.channel.to)
        message["Subject"] = payload["subject"]
        message.set_content(payload["body"])
        try:
            with smtplib.SMTP(
                self.host, self.channel.port, timeout=self.channel.timeout.total_seconds()
            ) as smtp:
                if self.channel.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.channel.port}: {exc}") from None


class Unavailable:
    """Stands in for a channel that cannot be used yet."""

    def __init__(self, reason: str):
        self.reason = reason

    def send(self, payload: dict) -> None:
        raise NotConfigured(self.reason)


def build_senders(config: AlertingConfig, lookup: Lookup) -> dict[str, Sender]:
    """A sender per configured channel; ``Unavailable`` where a secret is not set."""
    senders: dict[str, Sender] = {}
    for name, channel in config.channels.items():
        try:
            if isinstance(channel, WebhookChannel | SlackChannel):
                headers = {
                    k: resolve(v, lookup) for k, v in getattr(channel, "headers", {}).items()
                }
                senders[name] = HttpJsonSender(
                    resolve(channel.url, lookup), channel.timeout.total_seconds(), headers
                )
            else:
                senders[name] = SmtpSender(channel, lookup)
        except (UnresolvedSecret, NotConfigured) as exc:
            senders[name] = Unavailable(f"channel {name} is not configured: {exc}")
    return senders


def deliver(
    outbox: pl.DataFrame,
    channels: Mapping[str, Sender],
    now: datetime,
    retry: Retry = Retry(),
) -> pl.DataFrame:
    """Send every due, undelivered notification; return the updated outbox.

    After a channel fails once in a pass its other notifications wait for the next pass
    (they are not counted as attempts): one timeout per pass, not one per notification.
    """
    failed: set[str] = set()
    rows = []
    for row in outbox.sort("next_attempt_at", "delivery_id").iter_rows(named=True):
        due = row["delivered_at"] is None and row["next_attempt_at"] <= now
        if not due or row["channel"] in failed:
            rows.append(row)
            continue
        sender = channels.get(row["channel"]) or Unavailable(
            f"channel {row['channel']} is not in the alerting config"
        )
        try:
            sender.send(json.loads(row["payload"]))
        except NotConfigured as exc:
            # Nothing was sent and nothing timed out: every notification of the channel gets
            # the reason (shown as "would send"), none counts as an attempt.
            rows.append(row | {"last_error": str(exc)[:ERROR_CHARS]})
            continue
        except DeliveryError as exc:
            failed.add(row["channel"])
            attempts = row["attempts"] + 1
            rows.append(
                row
                | {
                    "attempts": attempts,
                    "next_attempt_at": now + retry.delay(attempts),
                    "last_error": str(exc)[:ERROR_CHARS],
                }
            )
            continue
        rows.append(row | {"attempts": row["attempts"] + 1, "delivered_at": now})
    if not rows:
        return outbox
    return conform("alert_deliveries", pl.DataFrame(rows, infer_schema_length=None))


def prune_delivered(outbox: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """Drop notifications delivered more than ``DELIVERED_KEPT`` ago."""
    return outbox.filter(
        pl.col("delivered_at").is_null() | (pl.col("delivered_at") > now - DELIVERED_KEPT)
    )


def pending(outbox: pl.DataFrame) -> pl.DataFrame:
    return outbox.filter(pl.col("delivered_at").is_null())
