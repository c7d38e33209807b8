"""Nightly-analysis benchmark: the history analyses over ``--series`` series x ``--runs`` runs.

Builds a warehouse of ``runs`` + ``run_summary`` partitions (one per run, as ingest writes
them) for ``--combos`` suite/scenario/environment combinations, each with ``--runs`` runs of
``series / (combos x 5 metrics)`` endpoints. The histories are log-normal noise with injected
steps (1 series in 10) and slow drifts (1 in 20), so the detectors do the work they do in
production. Then, in a fresh process each:

* ``floor``: one Mann-Kendall-style Kendall tau (scipy) per series: the least any per-series
  test costs, as a same-machine reference;
* ``nightly``: the ``nightly`` Dagster job executed in process (SQL marts, change points,
  drifts, findings, retention) on that warehouse, as the schedule runs it.

    uv run python bench/nightly_bench.py                       # 2,000 series x 500 runs
    uv run python bench/nightly_bench.py --series 200 --runs 100  # smoke check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from metrics_pipeline.analysis.baselines import METRICS

TARGET_S = 60.0
# Twice a day: 500 runs span 250 days, inside the aggregates' one-year retention.
RUN_EVERY = timedelta(hours=12)


def build_warehouse(root: Path, series: int, runs: int, combos: int, seed: int = 7) -> None:
    from metrics_pipeline.contracts.tables import conform
    from metrics_pipeline.storage import Warehouse

    endpoints = max(1, series // (combos * len(METRICS)))
    rng = np.random.default_rng(seed)
    warehouse = Warehouse(root)
    first = datetime.now(UTC) - RUN_EVERY * runs
    base = rng.lognormal(np.log(40), 0.8, (combos, endpoints))
    # Per series (combo x endpoint): a step at a random run (1 in 10) or a drift (1 in 20).
    step_at = np.where(
        rng.random((combos, endpoints)) < 0.1, rng.integers(50, runs, (combos, endpoints)), runs
    )
    drift = np.where(rng.random((combos, endpoints)) < 0.05, 0.3 / runs, 0.0)
    for c in range(combos):
        suite = f"suite-{c}"
        for i in range(runs):
            run_id = f"{suite}-{i:04d}"
            started = first + RUN_EVERY * i
            warehouse.write_partition(
                "runs",
                run_id,
                conform(
                    "runs",
                    pl.DataFrame(
                        {
                            "run_id": [run_id],
                            "suite": [suite],
                            "scenario": ["soak"],
                            "environment": ["staging"],
                            "started_at": [started],
                            "finished_at": [started + timedelta(minutes=10)],
                            "tool": ["k6"],
                            "service_version": [f"1.{i // 20}.0"],
                            "git_sha": [f"{i:012x}"],
                            "ingested_at": [started + timedelta(minutes=11)],
                            "valid": [True],
                        }
                    ),
                ),
            )
            level = base[c] * (1 + 0.25 * (i >= step_at[c])) * (1 + drift[c] * i)
            p50 = level * rng.lognormal(0, 0.03, endpoints)
            rps = 100 / level * 40 * rng.lognormal(0, 0.03, endpoints)
            warehouse.write_partition(
                "run_summary",
                run_id,
                conform(
                    "run_summary",
                    pl.DataFrame(
                        {
                            "run_id": run_id,
                            "endpoint": [f"/api/e{e:03d}" for e in range(endpoints)],
                            "requests": (rps * 600).astype(np.int64),
                            "errors": rng.poisson(rps * 600 * 0.01),
                            "error_rate": rng.beta(2, 198, endpoints),
                            "throughput_rps": rps,
                            "latency_mean": p50 * 1.2,
                            "latency_p50": p50,
                            "latency_p90": p50 * 2.0,
                            "latency_p95": p50 * 2.5 * rng.lognormal(0, 0.05, endpoints),
                            "latency_p99": p50 * 4.0 * rng.lognormal(0, 0.08, endpoints),
                            "latency_max": p50 * 10.0,
                        }
                    ),
                ),
            )


def floor(root: Path) -> dict:
    """Kendall's tau per series: the cheapest per-series trend test, as a reference."""
    from scipy.stats import kendalltau

    from metrics_pipeline.analysis.series import iter_series, run_series
    from metrics_pipeline.storage import Warehouse

    warehouse = Warehouse(root)
    series = run_series(warehouse.read("runs"), warehouse.read("run_summary"))
    count = 0
    for _, frame in iter_series(series, 8):
        values = frame["value"].to_numpy()
        kendalltau(np.arange(len(values)), values)
        count += 1
    return {"series": count}


def nightly(root: Path) -> dict:
    import dagster as dg

    from metrics_pipeline.orchestration.definitions import build_definitions
    from metrics_pipeline.settings import Settings
    from metrics_pipeline.storage import Warehouse

    settings = Settings(home=root.parent / "home", warehouse_dir=root)
    with dg.instance_for_test() as instance:
        result = (
            build_definitions(settings)
            .resolve_job_def("nightly")
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        steps = {
            event.step_key: event.event_specific_data.duration_ms / 1000  # type: ignore[union-attr]
            for event in result.all_events
            if event.event_type_value == "STEP_SUCCESS"
        }
    warehouse = Warehouse(root)
    return {
        "success": result.success,
        "change_points": warehouse.read("change_points").height,
        "drifts": warehouse.read("drifts").height,
        "findings": warehouse.read("findings").height,
        "slowest_steps": dict(sorted(steps.items(), key=lambda kv: -kv[1])[:4]),
    }


def measure(stage: str, root: Path) -> dict:
    """Run ``stage`` in a fresh interpreter; wall time, CPU seconds and its peak RSS."""
    code = (
        "import json, sys, pathlib; sys.path.insert(0, 'bench'); import nightly_bench as b; "
        f"out = b.{stage}(pathlib.Path({str(root)!r})); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
        "print(json.dumps(out | {'rss_mb': int(hwm) / 1024}))"
    )
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = json.loads(proc.stdout.read().strip().splitlines()[-1])
    if status != 0:
        raise SystemExit(f"{stage} failed with status {status}")
    return out | {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--combos", type=int, default=4)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "nightly-bench"
    )
    args = parser.parse_args()

    root = args.workdir / f"warehouse-{args.series}x{args.runs}"
    if not (root / "run_summary").exists():
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        build_warehouse(root, args.series, args.runs, args.combos)
        print(f"built {root} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    load = os.getloadavg()[0]
    reference = measure("floor", root)
    ours = measure("nightly", root)
    assert ours["success"], "the nightly job failed"
    print(
        f"| series x runs | load | floor s | nightly s | nightly / floor | CPU s | peak RSS MB |"
        f" target {TARGET_S:.0f} s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {reference['series']} x {args.runs} | {load:.1f} | {reference['wall_s']:.1f} | "
        f"{ours['wall_s']:.1f} | {ours['wall_s'] / reference['wall_s']:.1f}x | "
        f"{ours['cpu_s']:.1f} | {ours['rss_mb']:.0f} | "
        f"{'met' if ours['wall_s'] < TARGET_S else 'missed'} |"
    )
    print(
        f"\nchange points {ours['change_points']}, drifts {ours['drifts']}, findings "
        f"{ours['findings']}; slowest steps (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in ours["slowest_steps"].items())
    )


if __name__ == "__main__":
    main()
