"""KPI / SLA catalog, SLA evaluation and alerting (lifecycle, routing, delivery).

Pure functions (``evaluate_run``, ``rolling_windows``, ``evaluate_alerts``, ``deliver`` and the
signal builders) do the work; ``service`` reads and writes the warehouse tables under a lock.
"""

from metrics_pipeline.alerts.config import AlertingConfig, load_alerting
from metrics_pipeline.alerts.delivery import DeliveryError, build_senders, deliver
from metrics_pipeline.alerts.lifecycle import Scope, Signal, Signals, acknowledge, evaluate_alerts
from metrics_pipeline.analysis.kpi_catalog import KpiCatalog, KpiEntry, load_catalog
from metrics_pipeline.analysis.sla import evaluate_run, rolling_windows
from metrics_pipeline.common.config import ConfigError

__all__ = [
    "AlertingConfig",
    "ConfigError",
    "DeliveryError",
    "KpiCatalog",
    "KpiEntry",
    "Scope",
    "Signal",
    "Signals",
    "acknowledge",
    "build_senders",
    "deliver",
    "evaluate_alerts",
    "evaluate_run",
    "load_alerting",
    "load_catalog",
    "rolling_windows",
]
