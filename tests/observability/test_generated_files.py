"""The generated monitoring files, checked by Prometheus' and Alertmanager's own tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import service_unavailable

from metrics_pipeline.observability import write_monitoring


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        service_unavailable(f"{name} is not installed (Debian packages prometheus, alertmanager)")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_monitoring(
        tmp_path_factory.mktemp("monitoring"),
        postgres_url="postgresql://grafana:secret@db.internal:5433/warehouse",
        webhook_url="http://hooks.internal/alerts",
        critical_webhook_url="http://pager.internal/hook",
    )


def check(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_accepts_the_rules_and_the_config(files):
    promtool = tool("promtool")
    assert "SUCCESS: 12 rules found" in check(promtool, "check", "rules", str(files.rules))
    # check config also loads the rule files it names, relative to the config.
    out = check(promtool, "check", "config", str(files.prometheus))
    assert "1 rule files found" in out


def test_rules_fire_with_severity_and_annotations(files, tmp_path):
    """Promtool's rule unit tests: the thresholds and labels as Prometheus evaluates them."""
    promtool = tool("promtool")
    verdict = (
        '{suite="checkout", scenario="b", environment="staging", '
        'endpoint="/api/orders", metric="latency_p95"}'
    )
    errors = verdict.replace("/api/orders", "/api/cart").replace("latency_p95", "error_rate")
    cases = {
        "rule_files": [str(files.rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"metrics_pipeline_verdict_regression{verdict}", "values": "1x3"},
                    {
                        "series": f"metrics_pipeline_verdict_change_ratio{verdict}",
                        "values": "0.6x3",
                    },
                    # An error rate from 1 % to 11.7 %: +10.7 points, critical (as a
                    # relative change it read "10.7 % worse", a warning).
                    {"series": f"metrics_pipeline_verdict_regression{errors}", "values": "1x3"},
                    {
                        "series": f"metrics_pipeline_verdict_change_ratio{errors}",
                        "values": "0.107x3",
                    },
                    {
                        "series": 'metrics_pipeline_sla_breached{suite="checkout", kpi="p95", '
                        'severity="warning"}',
                        "values": "0 1 1",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": "suite:metrics_pipeline_p95_change_ratio:max",
                        "eval_time": "1m",
                        "exp_samples": [
                            {
                                "labels": "suite:metrics_pipeline_p95_change_ratio:max"
                                '{suite="checkout"}',
                                "value": 0.6,
                            }
                        ],
                    }
                ],
                "alert_rule_test": [
                    {
                        "alertname": "LoadTestRegression",
                        "eval_time": "1m",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "suite": "checkout",
                                    "scenario": "b",
                                    "environment": "staging",
                                    "endpoint": "/api/orders",
                                    "metric": "latency_p95",
                                },
                                "exp_annotations": {
                                    "summary": "/api/orders latency_p95 regressed in "
                                    "checkout/b/staging",
                                    "description": "The latest run is 60% worse than its "
                                    "baseline (significant after multiple-testing correction). "
                                    "The run is in metrics_pipeline_latest_run_info; confidence "
                                    "interval and p-value in the verdicts table.",
                                },
                            },
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "suite": "checkout",
                                    "scenario": "b",
                                    "environment": "staging",
                                    "endpoint": "/api/cart",
                                    "metric": "error_rate",
                                },
                                "exp_annotations": {
                                    "summary": "/api/cart error_rate regressed in "
                                    "checkout/b/staging",
                                    "description": "The latest run's error_rate is 10.7% "
                                    "points higher than its baseline's (significant after "
                                    "multiple-testing correction). The run is in "
                                    "metrics_pipeline_latest_run_info; confidence interval and "
                                    "p-value in the verdicts table.",
                                },
                            },
                        ],
                    },
                    {
                        "alertname": "SlaBreached",
                        "eval_time": "0m",
                        "exp_alerts": [],
                    },
                    {
                        "alertname": "SlaBreached",
                        "eval_time": "2m",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "suite": "checkout",
                                    "kpi": "p95",
                                    "severity": "warning",
                                },
                                "exp_annotations": {
                                    "summary": "SLA p95 breached on  in checkout//",
                                    "description": "The latest run crossed the KPI's alert "
                                    "threshold.",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(cases))
    check(promtool, "test", "rules", str(test_file))


def test_alertmanager_config_routes_by_severity(files):
    check(tool("amtool"), "check-config", str(files.alertmanager))
    config = yaml.safe_load(files.alertmanager.read_text())
    urls = {r["name"]: r["webhook_configs"][0]["url"] for r in config["receivers"]}
    assert urls == {
        "critical": "http://pager.internal/hook",
        "warning": "http://hooks.internal/alerts",
        "info": "http://hooks.internal/alerts",
    }
    routed = {route["matchers"][0]: route["receiver"] for route in config["route"]["routes"]}
    assert routed == {f'severity="{s}"': s for s in ("critical", "warning", "info")}


def test_run_script_keeps_30_days_and_grafana_files_reference_each_other(files):
    script = files.run_script.read_text()
    assert "--storage.tsdb.retention.time=30d" in script
    assert f"--config.file={files.prometheus.absolute()}" in script
    assert yaml.safe_load(files.prometheus.read_text())["global"]["scrape_interval"] == "10s"

    datasource = yaml.safe_load(files.datasource.read_text())["datasources"][0]
    assert datasource["url"] == "db.internal:5433"
    assert datasource["jsonData"]["database"] == "warehouse"
    assert "secret" not in files.datasource.read_text()  # the password comes from the env
    provider = yaml.safe_load(files.dashboard_provider.read_text())["providers"][0]
    assert Path(provider["options"]["path"]) == files.dashboards[0].parent.absolute()
    titles = {json.loads(p.read_text())["title"] for p in files.dashboards}
    assert titles == {
        "Load tests: executive",
        "Load tests: performance",
        "Load tests: resources",
        "Load tests: regressions",
    }
    for path in files.dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"]
