"""The run manifest and the canonical tables (design section 4), defined once."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import polars as pl
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    ValidationError,
)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Suites name a folder of the bucket just like run ids do, so they follow the same rule.
CLOCK_SKEW = timedelta(minutes=5)
NAME_RULE = "1-128 characters from A-Z a-z 0-9 . _ - and not '.' or '..'"


class ManifestError(ValueError):
    """A run manifest that breaks the contract; the message names the field and the rule."""


def check_name(value: str, what: str = "run_id") -> str:
    """Return ``value`` if it is a safe path segment (run id, suite), else raise ValueError."""
    if not RUN_ID_PATTERN.fullmatch(value) or value in {".", ".."}:
        raise ValueError(f"{what} {value!r} is not allowed: use {NAME_RULE}")
    return value


def _utc(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC: load tools and CI runners overwhelmingly log in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SafeName = Annotated[str, AfterValidator(check_name)]
UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class LoadProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vus: NonNegativeInt | None = None
    target_rps: NonNegativeFloat | None = None
    duration_s: NonNegativeFloat | None = None


class RunManifest(BaseModel):
    """``run.json``: who ran what, where and when. Written last by the uploader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: SafeName
    suite: Annotated[str, AfterValidator(lambda v: check_name(v, "suite"))]
    scenario: str = Field(min_length=1, max_length=256)
    environment: str = Field(min_length=1, max_length=256)
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    tool: str = Field(default="custom", min_length=1, max_length=64)
    service_version: str | None = None
    git_sha: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    load_profile: LoadProfile = Field(default_factory=LoadProfile)
    # A run id, or "auto" (the default when absent).
    baseline: (
        Annotated[str, AfterValidator(lambda v: v if v == "auto" else check_name(v))] | None
    ) = None

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any], source: str = "run.json") -> RunManifest:
        """Validate a manifest; raise ManifestError naming ``source``, the field and the rule."""
        try:
            if isinstance(raw, dict):
                return cls.model_validate(raw)
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ManifestError(f"invalid manifest {source}: {problems}") from None

    def window(self, skew: timedelta = CLOCK_SKEW) -> tuple[datetime, datetime | None]:
        """When the run's data may be timestamped: its start to its end (``finished_at``, else
        start + ``load_profile.duration_s``; open when neither is known), widened by ``skew``
        for clocks of load generators that disagree with the uploader's."""
        end = self.finished_at
        if end is None and self.load_profile.duration_s is not None:
            end = self.started_at + timedelta(seconds=self.load_profile.duration_s)
        return self.started_at - skew, None if end is None else end + skew

    @property
    def combination(self) -> tuple[str, str, str]:
        return (self.suite, self.scenario, self.environment)

    def to_row(self) -> dict[str, Any]:
        """One row of the ``runs`` catalog table."""
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "scenario": self.scenario,
            "environment": self.environment,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "tool": self.tool,
            "service_version": self.service_version,
            "git_sha": self.git_sha,
            "baseline": self.baseline,
        }


TS = pl.Datetime("us", "UTC")

SCHEMAS: dict[str, pl.Schema] = {
    "requests": pl.Schema(
        {
            "run_id": pl.String,
            "ts": TS,
            "endpoint": pl.String,
            "method": pl.String,
            "status": pl.Int32,
            "ok": pl.Boolean,
            "latency_ms": pl.Float64,
            "bytes_received": pl.Int64,
            "bytes_sent": pl.Int64,
            "error": pl.String,
            "source_file": pl.String,
            "line_no": pl.Int64,
        }
    ),
    "resources": pl.Schema(
        {"run_id": pl.String, "ts": TS, "host": pl.String, "metric": pl.String, "value": pl.Float64}
    ),
    "events": pl.Schema(
        {
            "run_id": pl.String,
            "ts": TS,
            "kind": pl.String,
            "subject": pl.String,
            "detail": pl.String,
        }
    ),
    "interval_stats": pl.Schema(
        {
            "run_id": pl.String,
            "ts": TS,
            "endpoint": pl.String,
            "source_file": pl.String,
            "interval_s": pl.Float64,  # the window the row covers; null when unknown
            "count": pl.Int64,
            "errors": pl.Int64,
            "mean": pl.Float64,
            "min": pl.Float64,
            "p50": pl.Float64,
            "p90": pl.Float64,
            "p95": pl.Float64,
            "p99": pl.Float64,
            "max": pl.Float64,
        }
    ),
    "kpi_points": pl.Schema(
        {"ts": TS, "metric": pl.String, "value": pl.Float64, "dims": pl.String}
    ),
    "quarantine": pl.Schema(
        {
            "run_id": pl.String,
            "source_file": pl.String,
            "line_no": pl.Int64,
            "reason": pl.String,
            "raw": pl.String,
        }
    ),
    "run_summary": pl.Schema(
        {
            "run_id": pl.String,
            "endpoint": pl.String,
            "requests": pl.Int64,
            "errors": pl.Int64,
            "error_rate": pl.Float64,
            "throughput_rps": pl.Float64,
            "latency_mean": pl.Float64,
            "latency_p50": pl.Float64,
            "latency_p90": pl.Float64,
            "latency_p95": pl.Float64,
            "latency_p99": pl.Float64,
            "latency_max": pl.Float64,
        }
    ),
    "verdicts": pl.Schema(
        {
            "run_id": pl.String,
            "endpoint": pl.String,
            "metric": pl.String,
            "baseline": pl.Float64,
            "candidate": pl.Float64,
            "change": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "p_value": pl.Float64,
            "p_adjusted": pl.Float64,
            "regression": pl.Boolean,
            "verdict": pl.String,  # regression | trade-off | ok | no baseline
            "n_baseline": pl.Int64,
            "n_candidate": pl.Int64,
            "baseline_runs": pl.String,
            "note": pl.String,
        }
    ),
    "change_points": pl.Schema(
        {
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "endpoint": pl.String,
            "metric": pl.String,
            "run_id": pl.String,  # the first run of the new segment
            "started_at": TS,
            "git_sha": pl.String,
            "service_version": pl.String,
            "before": pl.Float64,
            "after": pl.Float64,
            "change": pl.Float64,  # relative, + = worse
            "p_value": pl.Float64,
            "worse": pl.Boolean,
        }
    ),
    "drifts": pl.Schema(
        {
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "endpoint": pl.String,
            "metric": pl.String,
            "runs": pl.Int64,
            "first_run": pl.String,
            "last_run": pl.String,
            "slope_per_run": pl.Float64,
            "total_change": pl.Float64,  # relative over the series, + = worse
            "p_value": pl.Float64,
            "worse": pl.Boolean,
        }
    ),
    "forecasts": pl.Schema(
        {
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "endpoint": pl.String,
            "metric": pl.String,
            "ts": TS,
            "step": pl.Int32,
            "mean": pl.Float64,
            "lower": pl.Float64,
            "upper": pl.Float64,
            "method": pl.String,
        }
    ),
    "findings": pl.Schema(
        {
            "kind": pl.String,  # change_point | drift | capacity | headroom | ...
            "severity": pl.String,  # critical | warning | info
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "endpoint": pl.String,
            "metric": pl.String,
            "run_id": pl.String,
            "git_sha": pl.String,
            "service_version": pl.String,
            "summary": pl.String,
            "confidence": pl.String,
            "action": pl.String,
        }
    ),
    "latency_sketches": pl.Schema(
        {
            "run_id": pl.String,
            "endpoint": pl.String,
            "minute": TS,
            "bucket": pl.Int32,  # DDSketch bucket index at 1 % relative accuracy
            "count": pl.Int64,
        }
    ),
    "run_baselines": pl.Schema(
        {"run_id": pl.String, "baseline_run_id": pl.String, "position": pl.Int32}
    ),
    "runs": pl.Schema(
        {
            "run_id": pl.String,
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "started_at": TS,
            "finished_at": TS,
            "tool": pl.String,
            "service_version": pl.String,
            "git_sha": pl.String,
            "baseline": pl.String,
            "ingested_at": TS,
            "valid": pl.Boolean,
            "invalid_reason": pl.String,
        }
    ),
    # SLA / KPI evaluation of one run against the catalog (one row per KPI x endpoint).
    "sla_evaluations": pl.Schema(
        {
            "run_id": pl.String,
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "kpi": pl.String,  # catalog entry name, e.g. latency_p95
            "endpoint": pl.String,  # "(all)" for run-level KPIs
            "metric": pl.String,
            "unit": pl.String,
            "direction": pl.String,  # lower_is_better | higher_is_better
            "target": pl.Float64,
            "alert_threshold": pl.Float64,
            "objective_pct": pl.Float64,  # share of intervals that must meet the target
            "observed": pl.Float64,
            "intervals": pl.Int32,  # how many intervals compliance_pct is over
            "compliance_pct": pl.Float64,  # share of intervals meeting the target, 0-100
            "error_budget_remaining": pl.Float64,  # fraction of the budget left, <0 when blown
            "status": pl.String,  # met | missed | breached | no_data
            "severity": pl.String,  # critical | warning | info
            "evaluated_at": pl.Datetime("us", "UTC"),
        }
    ),
    # Rolling-window SLA compliance per combination (rewritten whole at each evaluation).
    "sla_windows": pl.Schema(
        {
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "kpi": pl.String,
            "endpoint": pl.String,
            "window_days": pl.Int32,
            "runs": pl.Int32,
            "breaches": pl.Int32,
            "compliance_pct": pl.Float64,
            "error_budget_remaining": pl.Float64,
            "evaluated_at": pl.Datetime("us", "UTC"),
        }
    ),
    # One row per alert, whatever its age: the lifecycle open -> acknowledged -> resolved.
    "alerts": pl.Schema(
        {
            "alert_id": pl.String,  # stable fingerprint of what the alert is about
            "kind": pl.String,  # regression | sla_breach | missing_run | missing_metric | ...
            "severity": pl.String,  # critical | warning | info
            "status": pl.String,  # open | acknowledged | resolved
            "suite": pl.String,
            "scenario": pl.String,
            "environment": pl.String,
            "endpoint": pl.String,
            "metric": pl.String,
            "first_run_id": pl.String,
            "last_run_id": pl.String,
            "summary": pl.String,
            "details": pl.String,  # JSON
            "evaluations": pl.Int32,
            "opened_at": pl.Datetime("us", "UTC"),
            "updated_at": pl.Datetime("us", "UTC"),
            "acknowledged_at": pl.Datetime("us", "UTC"),
            "escalated_at": pl.Datetime("us", "UTC"),
            "resolved_at": pl.Datetime("us", "UTC"),
        }
    ),
    # The outbox: every notification owed to a channel, kept until delivered.
    "alert_deliveries": pl.Schema(
        {
            "delivery_id": pl.String,
            "alert_id": pl.String,
            "channel": pl.String,
            "event": pl.String,  # opened | escalated | resolved
            "payload": pl.String,  # JSON body as sent
            "attempts": pl.Int32,
            "next_attempt_at": pl.Datetime("us", "UTC"),
            "delivered_at": pl.Datetime("us", "UTC"),
            "last_error": pl.String,
        }
    ),
}

# Tables rewritten whole by the nightly and weekly analyses (not partitioned by run).
SNAPSHOT_TABLES = frozenset(
    {
        "change_points",
        "drifts",
        "forecasts",
        "findings",
        "sla_windows",
        "alerts",
        "alert_deliveries",
    }
)
CANONICAL_TABLES = ("requests", "resources", "events", "interval_stats", "kpi_points", "quarantine")
RAW_EXCERPT_BYTES = 4096


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[table])


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Cast ``frame`` to the table's schema, adding absent columns as nulls, in schema order."""
    schema = SCHEMAS[table]
    # with_columns broadcasts the null literals to the frame's height (select would not).
    missing = [
        pl.lit(None, dtype).alias(n) for n, dtype in schema.items() if n not in frame.columns
    ]
    return frame.with_columns(missing).select(
        [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    )
