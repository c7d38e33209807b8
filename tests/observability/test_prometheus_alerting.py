"""A regression, end to end: the pipeline's verdicts -> exporter -> real Prometheus evaluating
the generated rules -> real Alertmanager -> the webhook receiver (the only fake)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import polars as pl
import pytest
import yaml
from conftest import service_unavailable, upload_demo_runs
from servers import free_port

from metrics_pipeline.observability.exporter import serve
from metrics_pipeline.observability.prometheus_config import (
    RULES_FILE,
    SEVERITY_TIMING,
    alertmanager_command,
    alertmanager_config,
    prometheus_command,
    prometheus_config,
)
from metrics_pipeline.observability.rules import rule_file
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run

pytestmark = [pytest.mark.slow, pytest.mark.services]
DEADLINE_S = 30


class Receiver(ThreadingHTTPServer):
    """Records every JSON body Alertmanager posts."""

    def __init__(self, port: int):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # keep pytest output clean
                pass

        super().__init__(("127.0.0.1", port), Handler)


@pytest.fixture
def receiver():
    server = Receiver(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def regressed_warehouse(settings, store, warehouse, tmp_path):
    """Three uploaded runs through the sensor and the CI stage; the last has /api/orders slower."""
    upload_demo_runs(store, tmp_path / "runs", count=3)
    with dg.instance_for_test() as instance:
        sense_and_run(build_definitions(settings), instance)
    # What this test needs of the CI stage: the verdicts (later steps have their own tests).
    assert warehouse.read("verdicts").filter(pl.col("regression")).height
    return warehouse


@pytest.fixture
def exporter(regressed_warehouse):
    port = free_port()
    server, thread = serve(regressed_warehouse, port, addr="127.0.0.1")
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def start(command: list[str], log) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def test_a_regression_reaches_the_webhook_through_prometheus_and_alertmanager(
    exporter, receiver, tmp_path
):
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager")
    if prometheus is None or alertmanager is None:
        service_unavailable("prometheus / prometheus-alertmanager are not installed")
    am_port, prom_port = free_port(), free_port()
    # The generated documents with second-scale timing, so the test needs seconds, not minutes.
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(rule_file(evaluation_interval="1s")))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            prometheus_config(
                exporter,
                f"127.0.0.1:{am_port}",
                [RULES_FILE],
                scrape_interval="1s",
                evaluation_interval="1s",
            )
        )
    )
    fast = {
        severity: {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
        for severity in SEVERITY_TIMING
    }
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(
            alertmanager_config(f"http://127.0.0.1:{receiver.server_port}/alerts", timing=fast)
        )
    )

    log = (tmp_path / "servers.log").open("wb")
    processes = [
        start(
            alertmanager_command(
                tmp_path / "alertmanager.yml",
                tmp_path / "am-data",
                listen=f"127.0.0.1:{am_port}",
                binary=alertmanager,
            ),
            log,
        ),
        start(
            prometheus_command(
                tmp_path / "prometheus.yml",
                tmp_path / "prom-data",
                listen=f"127.0.0.1:{prom_port}",
                binary=prometheus,
            ),
            log,
        ),
    ]
    try:
        firing = []
        deadline = time.monotonic() + DEADLINE_S
        while not firing and time.monotonic() < deadline:
            for process in processes:
                assert process.poll() is None, (tmp_path / "servers.log").read_text()[-3000:]
            firing = [
                alert
                for body in list(receiver.bodies)
                for alert in body["alerts"]
                if alert["status"] == "firing"
                and alert["labels"]["alertname"] == "LoadTestRegression"
            ]
            time.sleep(0.5)
        assert firing, (
            f"no regression alert within {DEADLINE_S} s:\n"
            + (tmp_path / "servers.log").read_text()[-3000:]
        )
    finally:
        for process in processes:
            stop(process)
        log.close()

    assert {a["labels"]["endpoint"] for a in firing} == {"/api/orders"}
    alert = firing[0]
    # The demo's slowdown is 60 %: a regression above the critical cut of 50 % (change_severity).
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["suite"] == "checkout"
    assert "regressed in checkout/browse-and-buy/staging" in alert["annotations"]["summary"]
    assert "worse than its baseline" in alert["annotations"]["description"]
