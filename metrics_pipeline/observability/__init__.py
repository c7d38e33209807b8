"""Prometheus and Grafana: the exporter, generated rules and configs, and dashboards.

:func:`write_monitoring` writes everything a deployment needs into one folder::

    prometheus/metrics-pipeline.rules.yml   recording and alert rules
    prometheus/prometheus.yml               scrape the exporter every 10 s, rules, Alertmanager
    prometheus/alertmanager.yml             route by severity to webhook receivers
    prometheus/run.sh                       start both (Prometheus with 30 days of retention)
    grafana/provisioning/datasources/metrics-warehouse.yml
    grafana/provisioning/dashboards/metrics-pipeline.yml
    grafana/dashboards/<name>.json          executive, performance, resources, regressions
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from metrics_pipeline.observability import dashboards
from metrics_pipeline.observability.prometheus_config import (
    RULES_FILE,
    alertmanager_config,
    prometheus_config,
    run_script,
)
from metrics_pipeline.observability.rules import rule_file

DEFAULT_EXPORTER = "127.0.0.1:9464"
DEFAULT_ALERTMANAGER = "127.0.0.1:9093"
# Where alerts go when no receiver URL is configured: a local webhook, so the files are valid.
DEFAULT_WEBHOOK = "http://127.0.0.1:9095/alerts"


@dataclass(frozen=True)
class MonitoringFiles:
    rules: Path
    prometheus: Path
    alertmanager: Path
    run_script: Path
    datasource: Path
    dashboard_provider: Path
    dashboards: list[Path]


def _yaml(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=100))
    return path


def write_monitoring(
    out: Path,
    *,
    postgres_url: str | None = None,
    webhook_url: str | None = None,
    critical_webhook_url: str | None = None,
    exporter: str = DEFAULT_EXPORTER,
    alertmanager: str = DEFAULT_ALERTMANAGER,
    dashboards_path: str | None = None,
) -> MonitoringFiles:
    """Write the rules, Prometheus and Alertmanager configs and Grafana files under ``out``.

    ``dashboards_path`` is where Grafana will find the dashboard JSON (default: the folder
    written here; give the mount point when Grafana runs in a container).
    """
    prom = out / "prometheus"
    grafana = out / "grafana"
    rules = _yaml(prom / RULES_FILE, rule_file())
    config = _yaml(prom / "prometheus.yml", prometheus_config(exporter, alertmanager, [RULES_FILE]))
    manager = _yaml(
        prom / "alertmanager.yml",
        alertmanager_config(webhook_url or DEFAULT_WEBHOOK, critical_webhook_url),
    )
    script = prom / "run.sh"
    script.write_text(run_script(prom.absolute()))
    script.chmod(0o755)
    board_dir = grafana / "dashboards"
    board_dir.mkdir(parents=True, exist_ok=True)
    boards = []
    for name, build in dashboards.DASHBOARDS.items():
        path = board_dir / f"{name}.json"
        path.write_text(json.dumps(dashboards.dashboard_json(build()), indent=2) + "\n")
        boards.append(path)
    provisioning = grafana / "provisioning"
    return MonitoringFiles(
        rules=rules,
        prometheus=config,
        alertmanager=manager,
        run_script=script,
        datasource=_yaml(
            provisioning / "datasources" / "metrics-warehouse.yml",
            dashboards.datasource_provisioning(postgres_url),
        ),
        dashboard_provider=_yaml(
            provisioning / "dashboards" / "metrics-pipeline.yml",
            dashboards.dashboard_provider(dashboards_path or str(board_dir.absolute())),
        ),
        dashboards=boards,
    )
