"""Delivering the outbox: each notification is sent until a receiver accepted it.

``deliver`` takes the outbox (``alert_deliveries`` rows), the senders by channel name and the
time. A due notification is sent; on success it is marked delivered, on failure it stays with
``attempts`` + 1 and ``next_attempt_at`` pushed back exponentially (``Retry``). Nothing is ever
dropped: a receiver that is down for a day gets everything once it is back.

Each notification is sent on its own: whatever goes wrong with one (a receiver's refusal, a
payload the channel cannot express) is recorded on its row and the pass goes on. Each send has
a total deadline, the channel's ``timeout``. Every notification carries its outbox
``delivery_id`` as an idempotency key (the ``Idempotency-Key`` HTTP header, the webhook body's
``delivery_id``, the mail's ``Message-ID``): a receiver that got it but answered too late gets
it again on the retry, and can tell.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from functools import partial
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
from metrics_pipeline.alerts.payloads import one_line
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.tables import conform

# Delivered notifications are kept this long for the record, then dropped from the outbox.
DELIVERED_KEPT = timedelta(days=30)
ERROR_CHARS = 500
IDEMPOTENCY_HEADER = "Idempotency-Key"
# HTTP answers that refuse this one notification rather than say the receiver is unwell:
# the channel's other notifications are still sent in the same pass.
_RETRY_LATER = {408, 425, 429}
# How the error of a notification the receiver refused (or the channel cannot express) starts.
REFUSED = "refused: "


class DeliveryError(MetricsPipelineError, RuntimeError):
    """The receiver could not be reached, answered too late or failed: the channel's other
    notifications wait for the next pass (one failure per channel and pass, not one each)."""


class Rejected(DeliveryError):
    """This notification could not be sent (the receiver refused it, or the channel cannot
    express it); the channel's other notifications are still tried."""


class DeadlineExceeded(DeliveryError):
    """The receiver did not finish answering within the channel's timeout."""


class NotConfigured(DeliveryError):
    """The channel cannot be used yet (a secret is unset, or it is not in the config): the
    notification waits without counting an attempt."""


class Sender(Protocol):
    def send(self, payload: dict, key: str) -> None:
        """Deliver ``payload`` or raise DeliveryError.

        ``key`` is the notification's idempotency key (its ``delivery_id``), the same on
        every retry of it.
        """


class Deadline:
    """A total time limit for one delivery.

    The timeouts of urllib and smtplib bound each socket operation, not the delivery: a
    receiver that sends one byte just inside it keeps the pass waiting for as long as it
    likes, and a name lookup has no timeout at all. So the delivery runs in a worker thread,
    and when ``seconds`` have passed the caller gives up; the sockets the worker registered
    with ``watch`` are shut down, which wakes a blocked read and ends the worker too.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = False

    def watch(self, sock: socket.socket) -> socket.socket:
        """Shut ``sock`` down when the deadline passes (at once if it has); returns it."""
        with self._lock:
            self._sockets.append(sock)
            if self._expired:
                _shut(sock)
        return sock

    def run(self, work: Callable[[], None], what: str) -> None:
        """Call ``work`` and re-raise what it raised; raise ``DeadlineExceeded`` when it has
        not returned after ``seconds``."""
        outcome: list[BaseException | None] = []

        def worker() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the caller's thread, raised there
                outcome.append(exc)
            else:
                outcome.append(None)

        started = time.monotonic()
        thread = threading.Thread(target=worker, name=f"deliver {what}", daemon=True)
        thread.start()
        thread.join(self.seconds)
        late = thread.is_alive()
        if late:
            with self._lock:
                self._expired = True
                for sock in self._sockets:
                    _shut(sock)
        error = None if late else outcome[0]
        # A socket operation may time out (each may take the whole timeout) just before the
        # deadline is noticed here, and smtplib reports that as a disconnection: a failure
        # caused by a timeout, or after the deadline, is the deadline's.
        if late or (
            error is not None
            and not isinstance(error, Rejected)
            and (_timed_out(error) or time.monotonic() - started >= self.seconds)
        ):
            raise DeadlineExceeded(
                f"{what}: deadline of {self.seconds:g} s passed before the receiver answered"
            )
        if error is not None:
            raise error


def _timed_out(error: BaseException | None) -> bool:
    """Whether a timeout is ``error`` or in the chain of errors it was raised from."""
    while error is not None:
        if isinstance(error, TimeoutError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _shut(sock: socket.socket) -> None:
    # shutdown (unlike close) wakes a thread blocked reading the socket. OSError: already
    # closed, or handed over to a TLS socket (which is watched itself).
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose sockets the ``deadline`` can shut down."""

    def __init__(self, *args, deadline: Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._create_connection = self._watched_socket

    def _watched_socket(self, *args, **kwargs) -> socket.socket:
        return self.deadline.watch(socket.create_connection(*args, **kwargs))

    def connect(self) -> None:
        super().connect()
        # With TLS this is a new socket wrapping the raw one.
        self.deadline.watch(self.sock)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(partial(_WatchedHTTPConnection, deadline=self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(partial(_WatchedHTTPSConnection, deadline=self.deadline), req)


class HttpJsonSender:
    """POSTs JSON to a URL (generic webhooks and Slack incoming webhooks).

    urllib (not http.client alone) so that ``https_proxy`` and friends still apply.
    """

    def __init__(self, url: str, timeout: float, headers: Mapping[str, str] | None = None):
        if not url.startswith(("http://", "https://")):
            raise NotConfigured("the URL must start with http:// or https://")
        self.url, self.timeout, self.headers = url, timeout, dict(headers or {})

    def send(self, payload: dict, key: str) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **self.headers, IDEMPOTENCY_HEADER: key},
            method="POST",
        )
        deadline = Deadline(self.timeout)
        opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))

        def post() -> None:
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                refused = 400 <= exc.code < 500 and exc.code not in _RETRY_LATER
                error = Rejected if refused else DeliveryError
                raise error(f"HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                raise DeliveryError(f"unreachable: {getattr(exc, 'reason', exc)}") from None

        deadline.run(post, "POST")


_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


class _WatchedSMTP(smtplib.SMTP):
    """An SMTP client whose socket the ``deadline`` can shut down."""

    def __init__(self, deadline: Deadline, *args, **kwargs):
        self.deadline = deadline  # before SMTP.__init__, which connects
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return self.deadline.watch(super()._get_socket(host, port, timeout))


class SmtpSender:
    """Sends ``{"subject", "body"}`` payloads as plain-text mail."""

    def __init__(self, channel: EmailChannel, lookup: Lookup):
        self.channel = channel
        self.host = resolve(channel.host, lookup)
        self.username = resolve(channel.username, lookup) if channel.username else None
        self.password = resolve(channel.password, lookup) if channel.password else None

    def message(self, payload: dict, key: str) -> EmailMessage:
        """The mail; header values on one line (EmailMessage refuses CR and LF in them, and
        outbox rows queued before subjects were made one line may still have them)."""
        message = EmailMessage()
        message["From"] = one_line(self.channel.sender)
        message["To"] = ", ".join(one_line(to) for to in self.channel.to)
        message["Subject"] = one_line(payload["subject"])
        # Stable across retries, so a mail system that deduplicates on it shows one mail.
        domain = self.channel.sender.rpartition("@")[2]
        if not _DOMAIN.fullmatch(domain):
            domain = "metrics-pipeline.invalid"
        message["Message-ID"] = f"<{key}.alert@{domain}>"
        message.set_content(payload["body"])
        return message

    def send(self, payload: dict, key: str) -> None:
        try:
            message = self.message(payload, key)
        except (KeyError, TypeError, ValueError) as exc:
            raise Rejected(f"cannot write the mail: {type(exc).__name__}: {exc}") from None
        timeout = self.channel.timeout.total_seconds()
        deadline = Deadline(timeout)
        where = f"SMTP {self.host}:{self.channel.port}"

        def send_mail() -> None:
            try:
                with _WatchedSMTP(deadline, self.host, self.channel.port, timeout=timeout) as smtp:
                    if self.channel.starttls:
                        smtp.starttls()
                        deadline.watch(smtp.sock)
                    if self.username:
                        smtp.login(self.username, self.password or "")
                    smtp.send_message(message)
            except (smtplib.SMTPException, OSError) as exc:
                raise DeliveryError(f"{where}: {exc}") from None

        deadline.run(send_mail, where)


class Unavailable:
    """Stands in for a channel that cannot be used yet."""

    def __init__(self, reason: str):
        self.reason = reason

    def send(self, payload: dict, key: str) -> None:
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

    An alert's notifications to a channel go in the order they were queued: one waits while an
    earlier one of its alert and channel is owed (a retry not yet due, or failed in this pass),
    but not behind one the receiver refused (its error starts with ``REFUSED``), which may
    never pass.
    Each notification is sent on its own: one that fails gets an attempt and the error on its
    row, and never stops the pass. When the receiver itself is the problem (unreachable, too
    slow, a server error) the channel's other notifications wait for the next pass without
    counting an attempt: one timeout per channel and pass, not one per notification. A
    notification the receiver refused (HTTP 4xx) or that the channel cannot express does not
    hold back the channel's notifications of other alerts.
    """
    failed: set[str] = set()
    # (alert, channel) with a notification still owed: the alert's later ones wait behind it,
    # else a "resolved" queued while an "opened" waits for a retry would arrive first, and
    # the receiver's last word on a resolved alert would be that it is open.
    waiting: set[tuple[str, str]] = set()
    rows = []
    queue = conform("alert_deliveries", outbox).sort(
        pl.coalesce("queued_at", "next_attempt_at"), "next_attempt_at", "delivery_id"
    )
    for row in queue.iter_rows(named=True):
        key = (row["alert_id"], row["channel"])
        if row["delivered_at"] is not None:
            rows.append(row)
            continue
        if row["next_attempt_at"] > now or row["channel"] in failed or key in waiting:
            # One the receiver refused (its content) holds back nothing: it may never pass.
            if not (row["last_error"] or "").startswith(REFUSED):
                waiting.add(key)
            rows.append(row)
            continue
        sender = channels.get(row["channel"]) or Unavailable(
            f"channel {row['channel']} is not in the alerting config"
        )
        try:
            sender.send(json.loads(row["payload"]), row["delivery_id"])
        except NotConfigured as exc:
            # Nothing was sent and nothing timed out: every notification of the channel gets
            # the reason (shown as "would send"), none counts as an attempt.
            waiting.add(key)
            rows.append(row | {"last_error": str(exc)[:ERROR_CHARS]})
            continue
        except Exception as exc:
            refused = isinstance(exc, Rejected)
            if not refused:
                waiting.add(key)
            # Whatever this notification ran into is its own failure: the others of the pass,
            # including those already sent (which must not be sent again), are still recorded.
            if isinstance(exc, DeliveryError) and not refused:
                failed.add(row["channel"])
            error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            error = REFUSED + error if refused else error
            attempts = row["attempts"] + 1
            rows.append(
                row
                | {
                    "attempts": attempts,
                    "next_attempt_at": now + retry.delay(attempts),
                    "last_error": error[:ERROR_CHARS],
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
