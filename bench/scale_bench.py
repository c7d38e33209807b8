"""Ingest with 1 and 2 workers into the warehouse that hosts share (issue #18).

Generates ``--runs`` canonical runs of ``--size-mb`` each (``ingest_bench``'s generator, fixed
seeds), uploads them to a bucket of moto's S3 server, then ingests every run (the ingest
asset's work: ``stages.ci.ingest`` then ``stages.ci.validate``) with W worker processes, each
with a local folder of its own (a host), the runs dealt out in turn:

* ``shared``: the warehouse in the bucket (``s3://.../warehouse``, an ``ObjectWarehouse``)
  mirrored to a throwaway PostgreSQL, whose advisory locks make the hosts take turns: W = 1
  and W = 2;
* ``local`` (the reference, in the same run): one worker into a local folder, no mirror (the
  embedded default);
* ``bucket``: one worker into the bucket without a mirror (what the object store costs apart
  from Postgres).

Each worker is a fresh process, as a Celery worker is once per host: its imports (Great
Expectations among them) are paid once, not per run. Reported per configuration: the wall time
from starting the workers to the last one's exit, partitions per minute, the mean seconds per
partition inside the workers, CPU seconds of all workers, and what the warehouse holds (bytes in
the bucket, rows in Postgres) for the paper estimate in bench/README.md.

    uv run python bench/scale_bench.py                 # 8 runs of 50 MB
    uv run python bench/scale_bench.py --runs 4 --size-mb 10   # smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from ingest_bench import MB, START, generate_canonical  # noqa: E402
from servers import moto_server, new_database, postgres_cluster  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def generate(folder: Path, runs: int, size_mb: int) -> list[tuple[Path, dict]]:
    """``runs`` files of canonical requests, one hour apart (kept in ``folder`` for the next
    invocation)."""
    made = []
    for index in range(runs):
        path = folder / f"run-{size_mb}mb-{index}.ndjson"
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            start = START + timedelta(hours=index)
            meta = generate_canonical(path, size_mb * MB, seed=100 + index, start=start)
            meta_path.write_text(json.dumps(meta))
        made.append((path, json.loads(meta_path.read_text())))
    return made


def upload(store, inputs: list[tuple[Path, dict]]) -> list[str]:
    from metrics_pipeline.contracts.manifest import RunManifest
    from metrics_pipeline.upload.uploader import upload_run

    run_ids = []
    for index, (path, meta) in enumerate(inputs):
        manifest = RunManifest(
            run_id=f"scale-{index:03d}",
            suite="scale",
            scenario="ingest",
            environment="bench",
            started_at=meta["started_at"],
            finished_at=meta["finished_at"],
        )
        upload_run(store, [path], manifest)
        run_ids.append(manifest.run_id)
    return run_ids


def work(args: argparse.Namespace) -> dict:
    """One worker: ingest and validate its runs; seconds per run."""
    from metrics_pipeline.stages import ci
    from metrics_pipeline.storage import warehouse_at
    from metrics_pipeline.storage.objects import S3ObjectStore

    store = S3ObjectStore(bucket=args.bucket, endpoint_url=args.endpoint)
    warehouse = warehouse_at(
        args.location, args.local, args.postgres or None, endpoint_url=args.endpoint
    )
    seconds = []
    for run_id in args.run_ids:
        started = time.perf_counter()
        report = ci.ingest(store, warehouse, run_id, now=NOW)
        if not ci.validate(warehouse, report).valid:
            raise SystemExit(f"{run_id}: not valid")
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds}


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot (/proc/stat): the servers'
    work (Postgres, the S3 server) counts too."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def measure(workers: int, run_ids: list[str], common: list[str], folder: Path) -> dict:
    """Start ``workers`` worker processes with the runs dealt out in turn; wall and CPU time,
    and how busy the machine's cores were meanwhile."""
    load = os.getloadavg()[0]
    busy_before, total_before = machine_ticks()
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--local", str(folder / f"host-{index}"),
             *common, *run_ids[index::workers]],
            stdout=subprocess.PIPE,
            env=os.environ | CREDENTIALS,
        )
        for index in range(workers)
    ]  # fmt: skip
    per_run, cpu = [], 0.0
    for proc in procs:
        stdout = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("a worker failed")
        per_run += json.loads(stdout.decode().strip().splitlines()[-1])["seconds"]
        cpu += usage.ru_utime + usage.ru_stime
    wall = time.perf_counter() - started
    busy_after, total_after = machine_ticks()
    return {
        "machine_busy": (busy_after - busy_before) / (total_after - total_before),
        "workers": workers,
        "wall_s": wall,
        "per_minute": 60 * len(run_ids) / wall,
        "mean_run_s": sum(per_run) / len(per_run),
        "cpu_s": cpu,
        "load": load,
    }


def holdings(endpoint: str, bucket: str, prefix: str, postgres: str | None) -> dict:
    """Bytes of the warehouse's objects and rows in its Postgres mirror."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    objects = [item for page in pages for item in page.get("Contents", [])]
    rows = None
    if postgres:
        from metrics_pipeline.storage import PostgresWarehouse

        mirror = PostgresWarehouse(postgres)
        rows = {t: sum(mirror.partition_counts(t).values()) for t in ("requests", "runs")}
    return {"objects": len(objects), "bytes": sum(o["Size"] for o in objects), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "metrics-pipeline-bench"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--local", help=argparse.SUPPRESS)
    parser.add_argument("--location", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--postgres", default="", help=argparse.SUPPRESS)
    parser.add_argument("run_ids", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(work(args)))
        return

    os.environ.update(CREDENTIALS)
    import boto3

    from metrics_pipeline.storage.objects import S3ObjectStore

    args.workdir.mkdir(parents=True, exist_ok=True)
    inputs = generate(args.workdir, args.runs, args.size_mb)
    raw_bytes = sum(path.stat().st_size for path, _ in inputs)
    rows = sum(meta["rows"] for _, meta in inputs)
    with (
        tempfile.TemporaryDirectory(prefix="scale-bench-") as scratch,
        moto_server(Path(scratch)) as endpoint,
        postgres_cluster() as cluster,
    ):
        folder = Path(scratch)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="uploads")
        run_ids = upload(S3ObjectStore(bucket="uploads", endpoint_url=endpoint), inputs)
        results = []
        for name, workers in (("local", 1), ("bucket", 1), ("shared", 1), ("shared", 2)):
            tag = f"{name}-{workers}"
            if name == "local":
                location, postgres = str(folder / tag / "warehouse"), ""
            else:
                client.create_bucket(Bucket=tag)
                location = f"s3://{tag}/warehouse"
                postgres = new_database(cluster) if name == "shared" else ""
            common = ["--location", location, "--endpoint", endpoint, "--bucket", "uploads"]
            common += ["--postgres", postgres]
            result = measure(workers, run_ids, common, folder / tag)
            if name != "local":
                result |= holdings(endpoint, tag, "warehouse/", postgres)
            results.append({"config": name} | result)
            print(json.dumps(results[-1]), flush=True)

    print(f"\n{args.runs} runs x {args.size_mb} MB ({raw_bytes / MB:.0f} MB, {rows:,} requests)\n")
    print("| warehouse | workers | wall s | partitions / min | s per partition (in worker) "
          "| workers' CPU s | cores busy | load before |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['config']} | {r['workers']} | {r['wall_s']:.1f} | {r['per_minute']:.1f} | "
            f"{r['mean_run_s']:.1f} | {r['cpu_s']:.1f} | {100 * r['machine_busy']:.0f} % | "
            f"{r['load']:.1f} |"
        )
    shared = [r for r in results if r["config"] == "shared"]
    if shared:
        last = shared[-1]
        print(
            f"\nwarehouse in the bucket: {last['objects']} objects, {last['bytes'] / MB:.1f} MB "
            f"for {raw_bytes / MB:.0f} MB uploaded ({last['bytes'] / raw_bytes:.3f} of the raw "
            f"bytes); Postgres rows: {last['rows']}"
        )


if __name__ == "__main__":
    main()
