"""Prometheus recording and alert rules over the exporter's metrics, as rule-file documents.

Recording rules roll the per-endpoint series up per suite (what a wall display shows); alert
rules turn a regression verdict, an SLA breach, a spent error budget, a stale ingest and an
unreadable warehouse into alerts with a ``severity`` label that Alertmanager routes on.
"""

from __future__ import annotations

from typing import Any

from metrics_pipeline.common.severity import ABSOLUTE_CHANGE, CRITICAL_CHANGE, CRITICAL_POINTS
from metrics_pipeline.observability.exporter import PREFIX, VERDICT_LABELS

EXPORTER_JOB = "metrics-pipeline"
# Nightly runs: a suite without a new run for a day and a half has missed one.
STALE_INGEST_SECONDS = 36 * 3600
LOW_ERROR_BUDGET = 0.25

_ON_VERDICT = f"on({', '.join(VERDICT_LABELS)})"
_WHERE = "{{ $labels.suite }}/{{ $labels.scenario }}/{{ $labels.environment }}"


def recording_rules() -> list[dict[str, str]]:
    """Per-suite and per-severity aggregates, named level:metric:operation."""
    return [
        {
            "record": f"suite:{PREFIX}_regressions:sum",
            "expr": f"sum by (suite) ({PREFIX}_verdict_regression)",
        },
        {
            "record": f"suite:{PREFIX}_p95_change_ratio:max",
            "expr": f'max by (suite) ({PREFIX}_verdict_change_ratio{{metric="latency_p95"}})',
        },
        {
            "record": f"suite_environment:{PREFIX}_sla_compliance_percent:min",
            "expr": f"min by (suite, environment) ({PREFIX}_sla_compliance_percent)",
        },
        {
            "record": f"severity:{PREFIX}_open_alerts:sum",
            "expr": f"sum by (severity) ({PREFIX}_open_alerts)",
        },
        {
            "record": f"severity:{PREFIX}_open_regressions:sum",
            "expr": f"sum by (severity) ({PREFIX}_open_regressions)",
        },
    ]


def _regression_rule(severity: str, comparison: str) -> dict[str, Any]:
    """The regressions of one severity: relative changes cut at ``CRITICAL_CHANGE``, changes
    in rate points (an error rate's, ``ABSOLUTE_CHANGE``) at ``CRITICAL_POINTS``."""
    # The change is the left operand so that $value is the change, not the 0/1 flag.
    points = "|".join(sorted(ABSOLUTE_CHANGE))
    change = f"{PREFIX}_verdict_change_ratio"
    return {
        "alert": "LoadTestRegression",
        "expr": (
            f'({change}{{metric!~"{points}"}} {comparison} {CRITICAL_CHANGE}'
            f' or {change}{{metric=~"{points}"}} {comparison} {CRITICAL_POINTS})'
            f" and {_ON_VERDICT} {PREFIX}_verdict_regression == 1"
        ),
        "labels": {"severity": severity},
        "annotations": {
            "summary": f"{{{{ $labels.endpoint }}}} {{{{ $labels.metric }}}} regressed in {_WHERE}",
            "description": (
                f'{{{{ if match "^({points})$" $labels.metric }}}}'
                "The latest run's {{ $labels.metric }} is {{ $value | humanizePercentage }} "
                "points higher than its baseline's{{ else }}The latest run is "
                "{{ $value | humanizePercentage }} worse than its baseline{{ end }} "
                "(significant after multiple-testing correction). The run is in "
                f"{PREFIX}_latest_run_info; confidence interval and p-value in the verdicts "
                "table."
            ),
        },
    }


def alert_rules(
    stale_ingest_seconds: int = STALE_INGEST_SECONDS,
) -> list[dict[str, Any]]:
    """Alerts for regressions, SLA breaches and the exporter's own failures."""
    return [
        _regression_rule("critical", ">="),
        _regression_rule("warning", "<"),
        {
            # The evaluation states its own severity; the series carries it into the alert.
            "alert": "SlaBreached",
            "expr": f"{PREFIX}_sla_breached == 1",
            "annotations": {
                "summary": f"SLA {{{{ $labels.kpi }}}} breached on {{{{ $labels.endpoint }}}} "
                f"in {_WHERE}",
                "description": "The latest run crossed the KPI's alert threshold.",
            },
        },
        {
            "alert": "SlaErrorBudgetExhausted",
            "expr": f"{PREFIX}_sla_window_error_budget_remaining_ratio < 0",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": f"Error budget of {{{{ $labels.kpi }}}} spent in {_WHERE}",
                "description": "Over the last {{ $labels.window_days }} days the SLA was "
                "missed more often than its budget allows.",
            },
        },
        {
            "alert": "SlaErrorBudgetLow",
            "expr": (f"{PREFIX}_sla_window_error_budget_remaining_ratio >= 0 < {LOW_ERROR_BUDGET}"),
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"Error budget of {{{{ $labels.kpi }}}} almost spent in {_WHERE}",
                "description": "{{ $value | humanizePercentage }} of the budget is left over "
                "the last {{ $labels.window_days }} days.",
            },
        },
        {
            "alert": "LoadTestIngestStale",
            "expr": f"{PREFIX}_ingest_lag_seconds > {stale_ingest_seconds}",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "No new run of suite {{ $labels.suite }} ingested for "
                "{{ $value | humanizeDuration }}",
                "description": "Check the load-test schedule, the uploads and new_run_sensor.",
            },
        },
        {
            "alert": "MetricsExporterDown",
            "expr": (f'up{{job="{EXPORTER_JOB}"}} == 0 or {PREFIX}_exporter_up == 0'),
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The metrics-pipeline exporter cannot be scraped or cannot read "
                "the warehouse",
                "description": "Findings in Prometheus are stale until it recovers; see "
                f"{PREFIX}_exporter_errors_total.",
            },
        },
    ]


def rule_file(evaluation_interval: str | None = None, **alert_options: Any) -> dict[str, Any]:
    """The rule file: one group of recording rules, one of alerts. ``evaluation_interval``
    overrides the global one for both groups."""
    interval = {"interval": evaluation_interval} if evaluation_interval else {}
    return {
        "groups": [
            {"name": "metrics-pipeline-recording", **interval, "rules": recording_rules()},
            {"name": "metrics-pipeline-alerts", **interval, "rules": alert_rules(**alert_options)},
        ]
    }
