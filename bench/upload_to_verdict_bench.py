"""Upload-to-verdict benchmark: a ``--size-mb`` run uploaded while ``dagster dev`` runs.

Starts ``dagster dev`` (webserver, daemon, code server) on a fresh METRICS_HOME, uploads
``--baselines`` runs of the same size and waits for their ci_stage runs (not timed), then
uploads the candidate and measures, from the first byte uploaded:

* ``sensor s``: until the daemon's sensor has launched the ci_stage run (its start time);
* ``run s``: the ci_stage run itself (ingest + validation, summary, baseline, verdicts);
* ``total s``: until the run succeeded and its verdicts are in the warehouse.

The reference measured in the same run is the upload itself and an in-process ingest of the
same file (``ingest_paths``, no Dagster), so the table shows what the orchestration adds.

    uv run python bench/upload_to_verdict_bench.py                 # 50 MB, 5 baselines
    uv run python bench/upload_to_verdict_bench.py --size-mb 5     # smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import MB, generate_canonical

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.ingest.files import ingest_paths
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import LocalObjectStore
from metrics_pipeline.upload.uploader import upload_run

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 60.0
RUNS = """{ runsOrError(limit: 50) { ... on Runs { results {
  status startTime endTime tags { key value } } } } }"""
LOCATION = """{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"""


def graphql(port: int, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    request = Request(
        f"http://127.0.0.1:{port}/graphql", body, {"content-type": "application/json"}
    )
    with urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def runs_by_partition(port: int) -> dict[str, dict]:
    try:
        results = graphql(port, RUNS)["runsOrError"]["results"]
    except OSError:
        return {}
    return {
        tag["value"]: run
        for run in results
        for tag in run["tags"]
        if tag["key"] == "dagster/partition"
    }


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def manifest(index: int, meta: dict) -> RunManifest:
    return RunManifest(
        run_id=f"soak-{index:02d}",
        suite="soak",
        scenario="steady",
        environment="staging",
        started_at=meta["started_at"],
        finished_at=meta["finished_at"],
        tool="custom",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--baselines", type=int, default=5)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "upload-to-verdict-bench"
    )
    args = parser.parse_args()

    files = []
    first = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    for i in range(args.baselines + 1):
        path = args.workdir / "inputs" / f"run-{i}-{args.size_mb}mb.ndjson"
        meta_path = path.with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not meta_path.exists():
            meta = generate_canonical(
                path, args.size_mb * MB, seed=100 + i, start=first + timedelta(days=i)
            )
            meta_path.write_text(json.dumps(meta))
        files.append((path, manifest(i, json.loads(meta_path.read_text()))))

    home = Path(tempfile.mkdtemp(prefix="home-", dir=args.workdir))
    (home / "dagster").mkdir(parents=True)
    settings = Settings(home=home)
    store = LocalObjectStore(root=str(settings.local_store_root))
    port = 3300 + os.getpid() % 500
    env = os.environ | {"METRICS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    dagster = Path(sys.executable).parent / "dagster"
    log = (home / "dagster-dev.log").open("wb")
    # Its own session, so the webserver, the daemon and the code server stop together.
    proc = subprocess.Popen(
        ["setsid", "env", "--default-signal=INT,TERM", str(dagster), "dev", "-w",
         "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait(lambda: graphql_ok(port), 180, "dagster dev")
        for path, run in files[:-1]:
            upload_run(store, [path], run)
        baseline_ids = {run.run_id for _, run in files[:-1]}

        def baselines_done():
            runs = runs_by_partition(port)
            done = {k for k in baseline_ids if runs.get(k, {}).get("status") == "SUCCESS"}
            failed = [k for k in baseline_ids if runs.get(k, {}).get("status") == "FAILURE"]
            if failed:
                raise SystemExit(f"baseline runs failed: {failed}; see {home}/dagster-dev.log")
            return done == baseline_ids

        wait(baselines_done, 900, "the baseline runs")

        path, candidate = files[-1]
        start = time.time()
        upload_run(store, [path], candidate)
        uploaded = time.time() - start
        run = wait(
            lambda: (
                runs_by_partition(port).get(candidate.run_id, {}).get("status")
                in {"SUCCESS", "FAILURE"}
                and runs_by_partition(port)[candidate.run_id]
            ),
            600,
            "the candidate's run",
        )
        total = time.time() - start
        assert run["status"] == "SUCCESS", f"candidate run failed; see {home}/dagster-dev.log"
        verdicts = Warehouse(settings.warehouse_root).read("verdicts", [candidate.run_id])
        assert verdicts.height, "no verdicts written"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    # The reference: the same file ingested in this process, no Dagster, no validation.
    reference_start = time.perf_counter()
    ingest_paths([path], candidate, Warehouse(home / "reference"))
    reference = time.perf_counter() - reference_start

    sensor = run["startTime"] - start
    print(
        f"| run size | load | upload s | sensor s | run s | total s | plain ingest s | "
        f"target {TARGET_S:.0f} s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.size_mb} MB, {args.baselines} baselines | {os.getloadavg()[0]:.1f} | "
        f"{uploaded:.1f} | {sensor:.1f} | {run['endTime'] - run['startTime']:.1f} | "
        f"{total:.1f} | {reference:.1f} | {'met' if total < TARGET_S else 'missed'} |"
    )
    regressions = verdicts.filter(verdicts["regression"]).height
    print(f"\nverdict rows {verdicts.height}, regressions {regressions}; home {home}")


def graphql_ok(port: int) -> bool:
    try:
        entries = graphql(port, LOCATION)["workspaceOrError"]["locationEntries"]
    except OSError:
        return False
    return bool(entries) and entries[0]["loadStatus"] == "LOADED"


if __name__ == "__main__":
    main()
