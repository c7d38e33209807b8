"""The KPI catalog and the alerting config: shipped defaults load, bad entries are named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from metrics_pipeline.alerts import ConfigError, load_alerting, load_catalog

CONFIG = Path(__file__).resolve().parents[2] / "config"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "file.yaml"
    path.write_text(text)
    return path


def test_shipped_catalog_covers_latency_throughput_errors_availability_resources_business():
    catalog = load_catalog(CONFIG / "kpis.yaml")
    metrics = {entry.metric for entry in catalog.kpis.values()}
    assert {"latency_p50", "latency_p95", "latency_p99", "throughput", "error_rate"} <= metrics
    assert {"availability", "resource:cpu_pct", "resource:mem_pct"} <= metrics
    assert any(m.startswith("kpi:") for m in metrics)
    assert catalog.kpis["latency_p95"].frequency == timedelta(minutes=1)
    scoped = catalog.kpis["checkout_orders_p95"].scope
    assert scoped.matches_endpoint("/api/orders") and not scoped.matches_endpoint("/api/cart")


def test_shipped_alerting_config_is_valid():
    config = load_alerting(CONFIG / "alerting.yaml")
    assert config.channels_for("critical", "regression", "checkout")
    assert config.expected_runs[0].suite == "checkout"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "kpis:\n  latency_p95:\n    description: d\n    metric: latency_p95\n    unit: ms\n"
            "    direction: lower_is_better\n    target: fast\n    alert_threshold: 5\n"
            "    severity: critical\n",
            "kpis.latency_p95.target",
        ),
        (
            "kpis:\n  p99:\n    description: d\n    metric: latency_p999\n    unit: ms\n"
            "    direction: lower_is_better\n    target: 1\n    alert_threshold: 5\n"
            "    severity: critical\n",
            "kpis.p99.metric: Value error, unknown metric 'latency_p999'",
        ),
        (
            "kpis:\n  errors:\n    description: d\n    metric: error_rate\n    unit: ratio\n"
            "    direction: lower_is_better\n    target: 0.05\n    alert_threshold: 0.01\n"
            "    severity: critical\n",
            "kpis.errors: Value error, alert_threshold 0.01 is on the better side of target",
        ),
        (
            "kpis:\n  cpu:\n    description: d\n    metric: resource:cpu_pct\n    unit: '%'\n"
            "    direction: lower_is_better\n    target: 70\n    alert_threshold: 90\n"
            "    severity: urgent\n    frequency: 10 minutes\n",
            "kpis.cpu.severity",
        ),
        (
            "kpis:\n  cpu:\n    description: d\n    metric: resource:cpu_pct\n    unit: '%'\n"
            "    direction: lower_is_better\n    target: 70\n    alert_threshold: 90\n"
            "    severity: info\n    frequency: 10 minutes\n",
            "kpis.cpu.frequency: Value error, '10 minutes' is not a duration",
        ),
        (
            "kpis:\n  cpu:\n    description: d\n    metric: resource:cpu_pct\n    unit: '%'\n"
            "    direction: lower_is_better\n    target: 70\n    alert_threshold: 90\n"
            "    severity: info\n    colour: red\n",
            "kpis.cpu.colour: Extra inputs are not permitted",
        ),
        ("kpis: [1, 2\n", "not valid YAML"),
    ],
)
def test_catalog_errors_name_the_entry_and_the_field(tmp_path, body, expected):
    with pytest.raises(ConfigError) as caught:
        load_catalog(write(tmp_path, body))
    assert expected in str(caught.value)
    assert str(tmp_path / "file.yaml") in str(caught.value)


def test_alerting_errors_name_the_route_and_the_unknown_channel(tmp_path):
    body = (
        "channels:\n  hook: {type: webhook, url: 'http://x'}\n"
        "routes:\n  - {severities: [critical], channels: [hook]}\n"
        "  - {severities: [warning], channels: [pager]}\n"
    )
    with pytest.raises(ConfigError, match=r"routes\.1\.channels: unknown channel 'pager'"):
        load_alerting(write(tmp_path, body))
    with pytest.raises(ConfigError, match=r"expected_runs\.0\.every"):
        load_alerting(write(tmp_path, "expected_runs:\n  - {suite: checkout, every: daily}\n"))
    with pytest.raises(ConfigError, match=r"channels\.hook\.webhook\.url"):
        load_alerting(write(tmp_path, "channels:\n  hook: {type: webhook}\n"))
