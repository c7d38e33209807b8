"""Upload-to-verdict benchmark: a ``--size-mb`` run uploaded while ``dagster dev`` runs.

Starts ``dagster dev`` (webserver, daemon, code server) on a fresh METRICS_HOME with the
instance of ``deploy/dagster-dev.yaml`` (``--default-instance``: Dagster's defaults), uploads
``--baselines`` runs of the same size and waits for their ci_stage runs (not timed), then
uploads ``--candidates`` runs one after the other and measures each, from the first byte
uploaded, with the times Dagster recorded:

* ``found s``: until the daemon's sensor created the ci_stage run;
* ``launch s``: from there until the run's process started (queue, spawn, imports);
* ``verdict s``: until the run's alerts step ended (ingest + validation, summary, baseline,
  verdicts, SLA, alerts delivered): the verdict is out;
* ``reports s``: until the run succeeded, its report step (HTML, PDF) done.

The reference measured in the same run is the upload itself and an in-process ingest of the
same file (``ingest_paths``, no Dagster), so the table shows what the orchestration adds.

    uv run python bench/upload_to_verdict_bench.py   # 50 MB, 5 baselines, 5 candidates
    uv run python bench/upload_to_verdict_bench.py --size-mb 5 --candidates 1   # smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
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
# Upload to verdict (issue #16; it was 60 s before).
TARGET_S = 15.0
COLUMNS = ("upload", "found", "launch", "verdict", "reports")
RUNS = """{ runsOrError(limit: 50) { ... on Runs { results {
  status creationTime startTime endTime tags { key value }
  stepStats { stepKey startTime endTime } } } } }"""
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


def step_end(run: dict, step: str) -> float | None:
    return next((st["endTime"] for st in run["stepStats"] if st["stepKey"] == step), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--baselines", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument(
        "--default-instance",
        action="store_true",
        help="Dagster's default instance (queue checked every 5 s), not deploy/dagster-dev.yaml",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "upload-to-verdict-bench"
    )
    args = parser.parse_args()

    files = []
    first = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    for i in range(args.baselines + args.candidates):
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
    if not args.default_instance:
        shutil.copy(ROOT / "deploy" / "dagster-dev.yaml", home / "dagster" / "dagster.yaml")
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
    rows = []
    try:
        wait(lambda: graphql_ok(port), 180, "dagster dev")
        baselines, candidates = files[: args.baselines], files[args.baselines :]
        for path, run in baselines:
            upload_run(store, [path], run)
        baseline_ids = {run.run_id for _, run in baselines}

        def baselines_done():
            runs = runs_by_partition(port)
            done = {k for k in baseline_ids if runs.get(k, {}).get("status") == "SUCCESS"}
            failed = [k for k in baseline_ids if runs.get(k, {}).get("status") == "FAILURE"]
            if failed:
                raise SystemExit(f"baseline runs failed: {failed}; see {home}/dagster-dev.log")
            return done == baseline_ids

        wait(baselines_done, 900, "the baseline runs")

        for path, candidate in candidates:
            time.sleep(3)  # the daemon idle, as when an upload arrives out of the blue
            start = time.time()
            upload_run(store, [path], candidate)
            uploaded = time.time() - start

            def finished(run_id=candidate.run_id):
                run = runs_by_partition(port).get(run_id, {})
                return run.get("status") in {"SUCCESS", "FAILURE"} and run

            run = wait(finished, 600, f"the run of {candidate.run_id}")
            assert run["status"] == "SUCCESS", f"run failed; see {home}/dagster-dev.log"
            verdicts = Warehouse(settings.warehouse_root).read("verdicts", [candidate.run_id])
            assert verdicts.height, "no verdicts written"
            rows.append(
                {
                    "upload": uploaded,
                    "found": run["creationTime"] - start,
                    "launch": run["startTime"] - run["creationTime"],
                    "verdict": step_end(run, "alerts__alerts") - start,
                    "reports": run["endTime"] - start,
                    "steps": {
                        st["stepKey"]: round(st["endTime"] - st["startTime"], 1)
                        for st in run["stepStats"]
                        if st["endTime"] and st["startTime"]
                    },
                    "verdicts": verdicts,
                }
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "verdicts"}, default=str))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

    # The reference: the same file ingested in this process, no Dagster, no validation.
    path, candidate = files[-1]
    reference_start = time.perf_counter()
    ingest_paths([path], candidate, Warehouse(home / "reference"))
    reference = time.perf_counter() - reference_start

    instance = "Dagster defaults" if args.default_instance else "deploy/dagster-dev.yaml"
    print(f"\ninstance: {instance}; load average after: {os.getloadavg()[0]:.1f}")
    print(
        "| run | upload s | found s | launch s | verdict s | reports s | plain ingest s | "
        f"target {TARGET_S:.0f} s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (_, candidate), row in zip(candidates, rows, strict=True):
        print(
            f"| {candidate.run_id} | {row['upload']:.1f} | {row['found']:.1f} | "
            f"{row['launch']:.1f} | {row['verdict']:.1f} | {row['reports']:.1f} | "
            f"{reference:.1f} | {'met' if row['verdict'] <= TARGET_S else 'missed'} |"
        )
    medians = {k: statistics.median(row[k] for row in rows) for k in rows[0] if k in COLUMNS}
    print(
        f"| median of {len(rows)} | {medians['upload']:.1f} | {medians['found']:.1f} | "
        f"{medians['launch']:.1f} | {medians['verdict']:.1f} | {medians['reports']:.1f} | "
        f"{reference:.1f} | {'met' if medians['verdict'] <= TARGET_S else 'missed'} |"
    )
    last = rows[-1]["verdicts"]
    print(
        f"\nverdict rows {last.height}, regressions {last.filter(last['regression']).height}; "
        f"home {home}"
    )


def graphql_ok(port: int) -> bool:
    try:
        entries = graphql(port, LOCATION)["workspaceOrError"]["locationEntries"]
    except OSError:
        return False
    return bool(entries) and entries[0]["loadStatus"] == "LOADED"


if __name__ == "__main__":
    main()
