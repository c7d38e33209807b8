"""The KPI / SLA catalog: what we promise, per metric, and when a miss is worth an alert.

One YAML file (default ``config/kpis.yaml``, ``METRICS_KPI_CATALOG`` overrides it) maps entry
names to entries::

    kpis:
      latency_p95:
        description: 95th percentile latency of successful requests, per minute
        metric: latency_p95          # what is measured (see MEASURES, resource:<m>, kpi:<m>)
        unit: ms
        direction: lower_is_better
        target: 300                  # each interval should meet this
        alert_threshold: 450         # the run's value beyond this is a breach (alert)
        objective_pct: 99            # share of intervals that must meet the target
        frequency: 1m                # interval width: what "an interval" is
        retention: 400d              # how long evaluations are kept (and the longest window)
        severity: critical           # of the alert a breach raises
        scope: {suites: [checkout], endpoints: ["/api/*"]}   # optional selectors

Business KPIs (``kpi_points``) use ``metric: kpi:<name>`` and go through the same evaluation.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from metrics_pipeline.common.config import Duration, load_yaml_model
from metrics_pipeline.common.severity import Severity

# Measures read from requests (or the interval_stats of tools without per-request data).
LATENCY_QUANTILES = {"latency_p50": 0.50, "latency_p95": 0.95, "latency_p99": 0.99}
ENDPOINT_MEASURES = frozenset({*LATENCY_QUANTILES, "error_rate", "availability"})
RUN_MEASURES = frozenset({"throughput"})
MEASURES = ENDPOINT_MEASURES | RUN_MEASURES
RESOURCE_PREFIX = "resource:"
KPI_PREFIX = "kpi:"
ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Scope(BaseModel):
    """Optional selectors; an absent list matches everything. Endpoints are glob patterns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suites: list[str] | None = None
    scenarios: list[str] | None = None
    environments: list[str] | None = None
    endpoints: list[str] | None = None

    def matches_run(self, suite: str, scenario: str, environment: str) -> bool:
        return all(
            allowed is None or value in allowed
            for allowed, value in (
                (self.suites, suite),
                (self.scenarios, scenario),
                (self.environments, environment),
            )
        )

    def matches_endpoint(self, endpoint: str) -> bool:
        return self.endpoints is None or any(fnmatchcase(endpoint, p) for p in self.endpoints)


class KpiEntry(BaseModel):
    """One KPI with its target; see the module docstring for the fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    metric: str
    unit: str = Field(min_length=1)
    direction: Literal["lower_is_better", "higher_is_better"]
    target: float
    alert_threshold: float
    objective_pct: float = Field(default=99.0, gt=0, lt=100)
    frequency: Duration = timedelta(minutes=1)
    retention: Duration = timedelta(days=400)
    severity: Severity
    # How the points of one interval (and of the run) combine, for resource: and kpi: measures.
    aggregate: Literal["mean", "sum", "max"] = "mean"
    scope: Scope = Scope()

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value in MEASURES:
            return value
        for prefix in (RESOURCE_PREFIX, KPI_PREFIX):
            if value.startswith(prefix) and len(value) > len(prefix):
                return value
        raise ValueError(
            f"unknown metric {value!r}: use one of {', '.join(sorted(MEASURES))}, "
            "resource:<resource metric> or kpi:<kpi_points metric>"
        )

    @field_validator("frequency")
    @classmethod
    def _whole_seconds(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1 or value.total_seconds() != int(value.total_seconds()):
            raise ValueError("frequency must be a whole number of seconds, at least 1s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KpiEntry:
        worse = self.alert_threshold - self.target
        if (self.direction == "lower_is_better" and worse < 0) or (
            self.direction == "higher_is_better" and worse > 0
        ):
            raise ValueError(
                f"alert_threshold {self.alert_threshold:g} is on the better side of target "
                f"{self.target:g} for {self.direction}: a breach must be worse than a miss"
            )
        if self.scope.endpoints is not None and not self.per_endpoint:
            raise ValueError(
                f"scope.endpoints does not apply to {self.metric}: it is measured per run"
            )
        return self

    @property
    def per_endpoint(self) -> bool:
        return self.metric in ENDPOINT_MEASURES

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower_is_better"

    def meets(self, value: float, bound: float) -> bool:
        """Whether ``value`` is on the good side of ``bound`` (inclusive)."""
        return value <= bound if self.lower_is_better else value >= bound


class KpiCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    kpis: dict[str, KpiEntry] = Field(default_factory=dict)

    @field_validator("kpis")
    @classmethod
    def _names(cls, kpis: dict[str, KpiEntry]) -> dict[str, KpiEntry]:
        for name in kpis:
            if not ENTRY_NAME.fullmatch(name):
                raise ValueError(
                    f"entry name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . - "
                    "starting with a letter or digit"
                )
        return kpis


def load_catalog(path: Path) -> KpiCatalog:
    """The catalog at ``path`` (empty when the file does not exist).

    Raises ``ConfigError`` naming the file, the entry and the field of every problem.
    """
    if not path.exists():
        return KpiCatalog()
    return load_yaml_model(KpiCatalog, path, "KPI catalog")
