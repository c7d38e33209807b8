"""The alerting configuration: channels, routes, escalation, retries and expected runs.

One YAML file (default ``config/alerting.yaml``, ``METRICS_ALERTING`` overrides it)::

    channels:
      team-webhook: {type: webhook, url: "${METRICS_ALERT_WEBHOOK_URL}"}
      team-slack:   {type: slack, url: "${METRICS_ALERT_SLACK_URL}"}
      oncall-mail:  {type: email, host: smtp.example.com, port: 587, starttls: true,
                     sender: alerts@example.com, to: [oncall@example.com],
                     username: alerts, password: "${METRICS_ALERT_SMTP_PASSWORD}"}
    routes:
      - {severities: [critical, warning], channels: [team-slack, team-webhook]}
      - {severities: [info], kinds: [trade_off], suites: [checkout], channels: [team-webhook]}
    escalation: {after: 60m, severities: [critical], channels: [oncall-mail]}
    retry: {initial: 30s, maximum: 1h}
    expected_runs:
      - {suite: checkout, every: 24h, grace: 6h}
    missing_data: {history_runs: 5}
    findings: {min_severity: warning}

Secrets (webhook URLs, passwords) are written as ``${ENV_VAR}`` and looked up when a
notification is sent, so they never appear in the file, the UI or an error message. A channel
whose variable is not set is *not configured*: its notifications wait in the outbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metrics_pipeline.common.config import Duration, load_yaml_model
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.common.severity import Severity

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Lookup = Callable[[str], str | None]


class UnresolvedSecret(MetricsPipelineError, LookupError):
    """A ``${VAR}`` reference whose variable is not set."""


def resolve(value: str, lookup: Lookup) -> str:
    """``value`` with every ``${VAR}`` replaced through ``lookup``."""

    def replace(match: re.Match) -> str:
        found = lookup(match[1])
        if not found:
            raise UnresolvedSecret(f"{match[1]} is not set")
        return found

    return _REFERENCE.sub(replace, value)


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = timedelta(seconds=10)


class WebhookChannel(_Channel):
    """POSTs the alert as a JSON object."""

    type: Literal["webhook"]
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)


class SlackChannel(_Channel):
    """POSTs a Slack incoming-webhook message (``text`` plus ``blocks``)."""

    type: Literal["slack"]
    url: str = Field(min_length=1)


class EmailChannel(_Channel):
    """Sends a plain-text mail over SMTP."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=25, gt=0, lt=65536)
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str | None = None
    password: str | None = None


Channel = Annotated[WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="type")]


class Route(BaseModel):
    """Alerts of these severities (and, when given, kinds and suites) go to these channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severities: list[Severity] = Field(min_length=1)
    kinds: list[str] | None = None
    suites: list[str] | None = None
    channels: list[str] = Field(min_length=1)

    def matches(self, severity: str, kind: str, suite: str | None) -> bool:
        return (
            severity in self.severities
            and (self.kinds is None or kind in self.kinds)
            and (self.suites is None or suite in self.suites)
        )


class Escalation(BaseModel):
    """An open alert nobody acknowledged within ``after`` is sent to ``channels``, once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: Duration
    severities: list[Severity] = Field(default_factory=lambda: ["critical"], min_length=1)
    channels: list[str] = Field(min_length=1)


class Retry(BaseModel):
    """Exponential backoff of a failed delivery: initial, 2x, 4x, ... at most ``maximum``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial: Duration = timedelta(seconds=30)
    maximum: Duration = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1-based)."""
        return min(self.initial * 2 ** max(attempts - 1, 0), self.maximum)


class ExpectedRun(BaseModel):
    """A suite (optionally one scenario / environment) that should upload every ``every``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = Field(min_length=1)
    scenario: str | None = None
    environment: str | None = None
    every: Duration
    grace: Duration = timedelta(0)
    severity: Severity = "warning"


class MissingData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # An endpoint or resource metric present in each of this many previous runs is expected.
    history_runs: int = Field(default=5, ge=1)


class Findings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Findings below this severity are advice (improvements, headroom), not alerts.
    min_severity: Severity = "warning"


class AlertingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    channels: dict[str, Channel] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    escalation: Escalation | None = None
    retry: Retry = Retry()
    expected_runs: list[ExpectedRun] = Field(default_factory=list)
    missing_data: MissingData = MissingData()
    findings: Findings = Findings()

    @model_validator(mode="after")
    def _channels_exist(self) -> AlertingConfig:
        used = [
            (f"routes.{i}.channels", name) for i, r in enumerate(self.routes) for name in r.channels
        ]
        if self.escalation is not None:
            used += [("escalation.channels", name) for name in self.escalation.channels]
        for where, name in used:
            if name not in self.channels:
                known = ", ".join(sorted(self.channels)) or "none"
                raise ValueError(f"{where}: unknown channel {name!r} (channels: {known})")
        return self

    def channels_for(self, severity: str, kind: str, suite: str | None) -> list[str]:
        """Every channel a route sends such an alert to, in the order of the file."""
        names = [n for r in self.routes if r.matches(severity, kind, suite) for n in r.channels]
        return list(dict.fromkeys(names))

    def escalation_channels(self, severity: str) -> list[str]:
        if self.escalation is None or severity not in self.escalation.severities:
            return []
        return list(self.escalation.channels)


def load_alerting(path: Path) -> AlertingConfig:
    """The configuration at ``path`` (nothing routed when the file does not exist).

    Raises ``ConfigError`` naming the file, the entry and the field of every problem.
    """
    if not path.exists():
        return AlertingConfig()
    return load_yaml_model(AlertingConfig, path, "alerting config")
