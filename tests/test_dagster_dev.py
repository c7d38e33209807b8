"""`dagster dev` (webserver + daemon) on the workspace: the code location loads, and an upload
is picked up by the daemon's sensor and ends as a verdict visible through the UI's GraphQL API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from conftest import free_port, service_unavailable

from metrics_pipeline.demo_data import demo_runs
from metrics_pipeline.resources import LocalObjectStore
from metrics_pipeline.settings import Settings
from metrics_pipeline.upload import upload_run

pytestmark = [pytest.mark.slow, pytest.mark.services]
ROOT = Path(__file__).resolve().parents[1]

RUNS = """{ runsOrError(limit: 50) { ... on Runs { results { status tags { key value } } } } }"""
LOCATION = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
VERDICTS = """query($p: [String!]) { assetOrError(assetKey: {path: ["analysis", "verdicts"]}) {
  ... on Asset { assetMaterializations(partitions: $p, limit: 1) {
    metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } } } } }"""


def graphql(port: int, query: str, **variables) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = Request(
        f"http://127.0.0.1:{port}/graphql", body, {"content-type": "application/json"}
    )
    with urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def finished_partitions(port: int) -> dict[str, str]:
    runs = graphql(port, RUNS)["runsOrError"]["results"]
    return {
        tag["value"]: run["status"]
        for run in runs
        for tag in run["tags"]
        if tag["key"] == "dagster/partition" and run["status"] in {"SUCCESS", "FAILURE"}
    }


@pytest.fixture
def dagster_dev(tmp_path):
    dagster = Path(sys.executable).parent / "dagster"
    if not dagster.exists():
        service_unavailable("the dagster command is not installed")
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    port = free_port()
    env = os.environ | {"METRICS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    log = (tmp_path / "dagster-dev.log").open("wb")
    # dagster dev started from a script ignores SIGINT/SIGTERM unless they are reset; its own
    # session lets us stop the webserver, the daemon and the code server together.
    proc = subprocess.Popen(
        [
            "setsid",
            "env",
            "--default-signal=INT,TERM",
            str(dagster),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port, Settings(home=home)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_dagster_dev_loads_and_the_daemon_turns_an_upload_into_a_verdict(dagster_dev, tmp_path):
    port, settings = dagster_dev
    entries = wait_for(
        lambda: graphql(port, LOCATION)["workspaceOrError"]["locationEntries"],
        120,
        "the code location",
    )
    (entry,) = entries
    assert entry["loadStatus"] == "LOADED", entry
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry

    store = LocalObjectStore(root=str(settings.local_store_root))
    runs = demo_runs(3, duration_s=20)
    # Baselines first, so the candidate's baseline is complete when the daemon judges it.
    for run in runs[:-1]:
        upload_run(store, [run.write(tmp_path / "runs") / "requests.ndjson"], run.manifest)
    baseline_ids = {r.manifest.run_id for r in runs[:-1]}
    done = wait_for(
        lambda: baseline_ids <= set(finished_partitions(port)) and finished_partitions(port),
        300,
        "the baseline runs",
    )
    assert all(done[i] == "SUCCESS" for i in baseline_ids), done

    candidate = runs[-1]
    upload_run(store, [candidate.write(tmp_path / "runs") / "requests.ndjson"], candidate.manifest)
    run_id = candidate.manifest.run_id
    done = wait_for(lambda: finished_partitions(port).get(run_id), 300, "the candidate run")
    assert done == "SUCCESS"

    asset = graphql(port, VERDICTS, p=[run_id])["assetOrError"]
    entries = {
        e["label"]: e.get("mdStr") for e in asset["assetMaterializations"][0]["metadataEntries"]
    }
    assert "REGRESSION" in entries["verdicts"]
    flagged = [line for line in entries["verdicts"].splitlines() if "REGRESSION" in line]
    assert flagged and all("/api/orders" in line.replace("\\", "") for line in flagged)
