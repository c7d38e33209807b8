"""`dagster dev` (webserver + daemon) on the workspace: the code location loads, and an upload
is picked up by the daemon's sensor and ends as a verdict visible through the UI's GraphQL API
and in the UI itself, in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest
from conftest import chromium, service_unavailable
from servers import free_port

from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage.objects import LocalObjectStore
from metrics_pipeline.upload.uploader import upload_run

pytestmark = [pytest.mark.slow, pytest.mark.services]
ROOT = Path(__file__).resolve().parents[2]
# Screenshots of the UI tests, kept after the run (git-ignored).
ARTIFACTS = ROOT / "test-artifacts"

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


def start_dagster_dev(tmp_path, extra_env: dict[str, str] | None = None):
    dagster = Path(sys.executable).parent / "dagster"
    if not dagster.exists():
        service_unavailable("the dagster command is not installed")
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = os.environ | {"METRICS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env |= extra_env or {}
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


@pytest.fixture
def dagster_dev(tmp_path):
    yield from start_dagster_dev(tmp_path)


@pytest.fixture
def dagster_dev_on_postgres(tmp_path, postgres_url):
    """Dagster dev whose instance (runs, events, sensor cursors) lives in PostgreSQL, configured
    by the documented deploy/dagster.yaml."""
    import psycopg

    database = f"dagster_{tmp_path.name[-12:].lower().replace('-', '_')}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'create database "{database}"')
    home = tmp_path / "home" / "dagster"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = postgres_url.rsplit(":", 1)[1].split("/")[0]
    env = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": port,
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_MAX_CONCURRENT_RUNS": "2",
    }
    yield from start_dagster_dev(tmp_path, env)


def assert_location_loads(port: int) -> None:
    entries = wait_for(
        lambda: graphql(port, LOCATION)["workspaceOrError"]["locationEntries"],
        120,
        "the code location",
    )
    (entry,) = entries
    assert entry["loadStatus"] == "LOADED", entry
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry


def test_the_daemon_on_a_postgres_instance_runs_an_upload(dagster_dev_on_postgres, tmp_path):
    port, settings = dagster_dev_on_postgres
    assert_location_loads(port)
    (run,) = demo_runs(1, duration_s=20)
    store = LocalObjectStore(root=str(settings.local_store_root))
    upload_run(store, [run.write(tmp_path / "runs") / "requests.ndjson"], run.manifest)
    run_id = run.manifest.run_id
    assert wait_for(lambda: finished_partitions(port).get(run_id), 300, "the run") == "SUCCESS"


def test_dagster_dev_loads_and_the_daemon_turns_an_upload_into_a_verdict(dagster_dev, tmp_path):
    port, settings = dagster_dev
    assert_location_loads(port)

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

    check_the_verdict_in_the_browser(port, run_id)


def check_the_verdict_in_the_browser(port: int, run_id: str) -> None:
    """The analysis group's asset graph, the candidate's verdicts partition with its markdown
    verdict table and its plain metadata values, the red (failed) no_regression check and the
    runs' verdict tags, as a user clicks through them (a screenshot of each in
    test-artifacts/); no script error on any page."""
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    # Marks the UI's first-visit community prompt as seen: it would cover the pages.
    graphql(port, "mutation { setNuxSeen }")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        page.goto(
            f"{base}/locations/metrics_pipeline.orchestration.definitions/asset-groups/analysis"
        )
        for name in ("verdicts", "baseline"):
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "ui-analysis-assets.png")

        page.goto(f"{base}/assets/analysis/verdicts?view=partitions&partition={run_id}")
        page.get_by_text("[Show Markdown]").click(timeout=60_000)
        table = page.get_by_role("dialog")
        table.get_by_text("REGRESSION").wait_for(timeout=30_000)
        regressed = [line for line in table.inner_text().splitlines() if "REGRESSION" in line]
        page.screenshot(path=ARTIFACTS / "ui-verdicts-markdown.png")
        page.keyboard.press("Escape")

        # Without opening the Markdown: the plain metadata values of the partition ...
        page.get_by_text("regressed_endpoints").first.wait_for(timeout=30_000)
        partition = page.inner_text("body")
        page.screenshot(path=ARTIFACTS / "ui-verdicts-partition.png")
        # ... the failed (red) no_regression check ...
        page.goto(f"{base}/assets/analysis/verdicts?view=checks")
        page.get_by_text("no_regression").first.wait_for(timeout=60_000)
        page.get_by_text("Failed").first.wait_for(timeout=30_000)
        checks = page.inner_text("body")
        page.screenshot(path=ARTIFACTS / "ui-verdicts-check.png")
        # ... and the run's verdict tag on the Runs page.
        page.goto(f"{base}/runs")
        page.get_by_text("metrics/verdict").first.wait_for(timeout=60_000)
        runs = page.inner_text("body")
        page.screenshot(path=ARTIFACTS / "ui-runs-tags.png")
    assert regressed and all(line.startswith("/api/orders") for line in regressed), regressed
    assert "/api/orders" in partition and "regression 1" in partition
    assert "no_regression" in checks and "Failed" in checks
    assert "metrics/verdict: regression" in runs and "metrics/regressed: /api/orders" in runs
    assert errors == [], errors
