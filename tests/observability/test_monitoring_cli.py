"""`metrics-pipeline monitoring write` and `metrics-pipeline exporter` as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import polars as pl
import yaml
from servers import free_port
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import conform


def test_monitoring_write_uses_the_webhook_from_the_environment(tmp_path):
    result = CliRunner().invoke(
        app,
        ["monitoring", "write", "--out", str(tmp_path / "out")],
        env={
            "METRICS_HOME": str(tmp_path / "home"),
            "METRICS_ALERTMANAGER_WEBHOOK_URL": "http://hooks.internal/am",
        },
    )
    assert result.exit_code == 0, result.output
    prometheus = tmp_path / "out" / "prometheus"
    config = yaml.safe_load((prometheus / "alertmanager.yml").read_text())
    assert {r["webhook_configs"][0]["url"] for r in config["receivers"]} == {
        "http://hooks.internal/am"
    }
    assert sorted(p.name for p in (tmp_path / "out" / "grafana" / "dashboards").iterdir()) == [
        "executive.json",
        "performance.json",
        "regressions.json",
        "resources.json",
    ]
    assert str(prometheus) in result.output.replace("\n", "")


def test_exporter_command_serves_the_warehouse(tmp_path, warehouse, settings):
    run = {"run_id": "r1", "suite": "checkout", "scenario": "x", "environment": "e", "valid": True}
    warehouse.write_partition("runs", "r1", conform("runs", pl.DataFrame([run])))
    port = free_port()
    command = [str(Path(sys.executable).parent / "metrics-pipeline"), "exporter"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=os.environ | {"METRICS_HOME": str(settings.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
                listening = _listening_addresses(port)
                break
            except URLError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(timeout=10)
    # By default on loopback only: the findings name suites, endpoints and regressions.
    assert listening == {"127.0.0.1"}
    assert "metrics_pipeline_exporter_up 1.0" in text
    assert 'metrics_pipeline_latest_run_info{environment="e",run_id="r1"' in text


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a socket listening on ``port`` (the kernel's table)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found
