"""The pipeline's notion of "now", injected wherever a decision depends on the date.

SLA windows, overdue-run alerts, retention ages and report periods all count back from "now".
Reading the system clock inside those functions makes them untestable on a fixed data set (a
test green last month fails today) and makes a replay of a past day impossible; so they take
``now`` as an argument and the composition root decides where it comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC (load tools and CI runners log in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant as an aware UTC datetime (naive means UTC)."""
    return as_utc(datetime.fromisoformat(text))


def clock_at(frozen: datetime | None) -> Clock:
    """A clock stopped at ``frozen`` (UTC), or the system clock when it is None."""
    if frozen is None:
        return system_now
    moment = as_utc(frozen)
    return lambda: moment
