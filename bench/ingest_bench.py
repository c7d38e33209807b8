"""Streaming ingest benchmark: our ingest + validation against DuckDB's NDJSON -> Parquet.

For each input (canonical request NDJSON and k6 ``--out json`` NDJSON of about ``--size-mb``)
it runs, each in a fresh process so that peak RSS is per run:

* ``duckdb``: ``COPY (SELECT * FROM read_json(file, format='newline_delimited')) TO out.parquet``
* ``ours``: ``stages.ci.ingest_local`` then ``stages.ci.validate`` (the pipeline's steps)

and prints one markdown table (seconds, MB/s, ours/duckdb, peak RSS). The inputs are generated
deterministically (fixed seeds) and kept in ``--workdir`` for the next run.

    uv run python bench/ingest_bench.py --size-mb 20      # smoke check, about a minute
    uv run python bench/ingest_bench.py --size-mb 1024    # the acceptance sizes
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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from provenance import read_through

GENERATOR_VERSION = 1
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
MB = 1024 * 1024
RSS_TARGET_MB = 1536  # 1.5 GB (MiB throughout)

# --- canonical request NDJSON (the shape of evaluation.demo_data.generate_requests) ---

# name, method, median ms, log-normal sigma, share of the traffic, response bytes
ENDPOINTS = (
    ("/health", "GET", 0.6, 0.35, 20, 15),
    ("/api/items", "GET", 12.0, 0.45, 40, 1123),
    ("/api/search", "GET", 35.0, 0.55, 15, 4096),
    ("/api/orders", "POST", 48.0, 0.40, 10, 214),
    ("/api/cart", "GET", 9.0, 0.50, 25, 640),
)
CANONICAL_RPS = 2000.0  # a one-hour soak at 2k requests/s is about 1 GB
CANONICAL_CHUNK = 500_000


def canonical_chunk(rng: np.random.Generator, n: int, t0_us: int) -> tuple[pl.DataFrame, int]:
    """``n`` request lines starting at ``t0_us``; returns (lines, last arrival in µs)."""
    share = np.array([e[4] for e in ENDPOINTS], float)
    which = rng.choice(len(ENDPOINTS), n, p=share / share.sum())
    arrival = t0_us + np.cumsum(rng.exponential(1e6 / CANONICAL_RPS, n)).astype(np.int64)
    median = np.array([e[2] for e in ENDPOINTS])[which]
    sigma = np.array([e[3] for e in ENDPOINTS])[which]
    latency = rng.lognormal(np.log(median), sigma)
    outliers = rng.random(n) < 0.005
    latency[outliers] *= rng.uniform(5, 20, outliers.sum())
    latency = np.round(latency, 3)
    failed = rng.random(n) < 0.01
    # Completion time, as generate_requests writes it (start + latency).
    ts = arrival + np.round(latency * 1000).astype(np.int64)
    frame = pl.DataFrame(
        {
            "ts": ts,
            "endpoint": np.array([e[0] for e in ENDPOINTS])[which],
            "method": np.array([e[1] for e in ENDPOINTS])[which],
            "bytes": np.array([e[5] for e in ENDPOINTS])[which],
            "latency": latency,
            "failed": failed,
        }
    ).sort("ts")
    micros = pl.col("ts") % 1_000_000
    # datetime.isoformat() leaves the fraction out when it is zero.
    iso = pl.concat_str(
        pl.from_epoch("ts", "us").dt.strftime("%Y-%m-%dT%H:%M:%S"),
        pl.when(micros != 0)
        .then(pl.lit(".") + micros.cast(pl.String).str.zfill(6))
        .otherwise(pl.lit("")),
    )
    line = pl.concat_str(
        pl.lit('{"ts": "'),
        iso,
        pl.lit('Z", "endpoint": "'),
        "endpoint",
        pl.lit('", "method": "'),
        "method",
        pl.lit('", "status": '),
        pl.when("failed").then(pl.lit("500")).otherwise(pl.lit("200")),
        pl.lit(', "latency_ms": '),
        pl.col("latency").cast(pl.String),
        pl.lit(', "bytes_received": '),
        pl.when("failed").then(pl.lit("0")).otherwise(pl.col("bytes").cast(pl.String)),
        pl.lit(', "error": '),
        pl.when("failed").then(pl.lit('"500 Internal Server Error"')).otherwise(pl.lit("null")),
        pl.lit("}"),
    )
    return frame.select(line=line), int(arrival[-1])


def generate_canonical(path: Path, size_bytes: int, seed: int = 7, start: datetime = START) -> dict:
    rng = np.random.default_rng(seed)
    t0 = int(start.timestamp() * 1e6)
    cursor, rows, written = t0, 0, 0
    first_ts = last_ts = None
    with path.open("wb") as out:
        while written < size_bytes:
            lines, cursor = canonical_chunk(rng, CANONICAL_CHUNK, cursor)
            # Trim the last chunk so the file is close to the requested size.
            sizes = lines["line"].str.len_bytes().cast(pl.Int64) + 1
            room = size_bytes - written
            keep = int((sizes.cum_sum() <= room).sum()) or 1
            lines = lines.head(keep)
            lines.write_csv(out, include_header=False, quote_style="never")
            written += int(sizes.head(keep).sum())
            rows += keep
            stamps = lines["line"].str.slice(8, 27)
            first_ts = first_ts or stamps[0]
            last_ts = stamps[-1]
    return {
        "rows": rows,
        "requests": rows,
        "resources": 0,
        "started_at": f"{first_ts[:19]}Z",
        "finished_at": f"{last_ts[:19]}Z",
    }


# --- k6 --out json NDJSON (modelled on shared/fixtures/loadtest/k6/k6_out.json.gz) --------------

K6_TIMINGS = (
    "http_req_blocked",
    "http_req_connecting",
    "http_req_tls_handshaking",
    "http_req_sending",
    "http_req_waiting",
    "http_req_receiving",
)
# name, method, status, group, median waiting ms
K6_REQUESTS = (
    ("index", "GET", "200", "::browse", 0.7),
    ("items", "GET", "200", "::browse", 3.5),
    ("orders", "POST", "201", "", 1.2),
    ("slow", "GET", "200", "", 25.0),
)
K6_METRICS = (
    ("http_reqs", "counter", "default"),
    ("http_req_duration", "trend", "time"),
    *((name, "trend", "time") for name in K6_TIMINGS),
    ("http_req_failed", "rate", "default"),
    ("checks", "rate", "default"),
    ("group_duration", "trend", "time"),
    ("data_sent", "counter", "data"),
    ("data_received", "counter", "data"),
    ("iteration_duration", "trend", "time"),
    ("iterations", "counter", "default"),
    ("vus", "gauge", "default"),
    ("vus_max", "gauge", "default"),
)
K6_ITERATIONS_PER_S = 50.0
K6_VUS_EVERY = 50  # one vus and one vus_max point per 50 iterations (about once a second)
K6_CHUNK = 20_000  # iterations


def _k6_time(ns: pl.Expr) -> pl.Expr:
    """RFC 3339 with nanoseconds and trailing zeros cut, as Go (k6) writes it."""
    text = pl.from_epoch(ns, "ns").dt.strftime("%Y-%m-%dT%H:%M:%S%.9f")
    return text.str.replace(r"0+$", "").str.replace(r"\.$", "") + pl.lit("Z")


def _point(metric: str, time_ns: pl.Expr, value: pl.Expr, tags: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        pl.lit(f'{{"metric":"{metric}","type":"Point","data":{{"time":"'),
        _k6_time(time_ns),
        pl.lit('","value":'),
        value,
        pl.lit(',"tags":'),
        tags,
        pl.lit("}}"),
    )


def _ms(values: np.ndarray) -> pl.Series:
    return pl.Series(np.round(values, 6)).cast(pl.String)


def k6_chunk(rng: np.random.Generator, first: int, m: int) -> tuple[pl.DataFrame, dict]:
    """The lines of iterations ``first .. first+m-1``, in time order within each iteration."""
    it = np.arange(first, first + m)
    start_ns = (
        int(START.timestamp() * 1e9)
        + (it * 1e9 / K6_ITERATIONS_PER_S).astype(np.int64)
        + rng.integers(0, 5_000_000, m)
    )
    cursor = start_ns.copy()
    parts = []
    seq = 0
    stats = {"requests": 0, "min_start_ns": None, "max_end_ns": 0}

    def add(line: pl.Series | pl.Expr, time_ns: np.ndarray | None = None) -> None:
        nonlocal seq
        frame = pl.DataFrame({"it": it, "seq": np.full(m, seq), "t": time_ns})
        parts.append(frame.select("it", "seq", line=line))
        seq += 1

    group_start = cursor.copy()
    for name, method, status, group, waiting_ms in K6_REQUESTS:
        blocked = rng.lognormal(np.log(0.004), 0.8, m)
        connecting = np.where(rng.random(m) < 0.01, rng.uniform(0.1, 0.3, m), 0.0)
        sending = rng.lognormal(np.log(0.01), 0.5, m)
        waiting = rng.lognormal(np.log(waiting_ms), 0.4, m)
        receiving = rng.lognormal(np.log(0.1), 0.5, m)
        duration = sending + waiting + receiving
        begin = cursor + (blocked * 1e6).astype(np.int64)
        end = begin + (duration * 1e6).astype(np.int64)
        stats["min_start_ns"] = (
            int(begin.min())
            if stats["min_start_ns"] is None
            else min(stats["min_start_ns"], int(begin.min()))
        )
        stats["max_end_ns"] = max(stats["max_end_ns"], int(end.max()))
        failed = (rng.random(m) < 0.01) if name == "slow" else np.zeros(m, bool)
        status_col = pl.Series(np.where(failed, "500", status))
        tags = pl.concat_str(
            pl.when(pl.lit(failed)).then(pl.lit('{"error_code":"1500",')).otherwise(pl.lit("{")),
            pl.lit('"expected_response":'),
            pl.when(pl.lit(failed)).then(pl.lit('"false"')).otherwise(pl.lit('"true"')),
            pl.lit(f',"group":"{group}","method":"{method}","name":"{name}",'),
            pl.lit('"proto":"HTTP/1.1","scenario":"shoppers","status":"'),
            pl.lit(status_col),
            pl.lit(f'","url":"{name}"}}'),
        )
        t = pl.col("t")
        values = {
            "http_reqs": pl.lit("1"),
            "http_req_duration": pl.lit(_ms(duration)),
            "http_req_blocked": pl.lit(_ms(blocked)),
            "http_req_connecting": pl.lit(_ms(connecting)),
            "http_req_tls_handshaking": pl.lit("0"),
            "http_req_sending": pl.lit(_ms(sending)),
            "http_req_waiting": pl.lit(_ms(waiting)),
            "http_req_receiving": pl.lit(_ms(receiving)),
            "http_req_failed": pl.lit(pl.Series(failed.astype(int)).cast(pl.String)),
        }
        for metric, value in values.items():
            add(_point(metric, t, value, tags), end)
        check_tags = f'{{"check":"{name} {status}","group":"{group}","scenario":"shoppers"}}'
        add(
            _point(
                "checks",
                t,
                pl.lit(pl.Series((~failed).astype(int)).cast(pl.String)),
                pl.lit(check_tags),
            ),
            end + 50_000,
        )
        cursor = end + 60_000
        stats["requests"] += m
        if name == "items":
            group_tags = pl.lit('{"group":"::browse","scenario":"shoppers"}')
            add(
                _point("group_duration", t, pl.lit(_ms((cursor - group_start) / 1e6)), group_tags),
                cursor,
            )
    iteration_end = cursor + 150_000_000 + rng.integers(0, 5_000_000, m)  # the script's sleep
    iteration_tags = pl.lit('{"group":"","scenario":"shoppers"}')
    t = pl.col("t")
    add(_point("data_sent", t, pl.lit("385"), iteration_tags), iteration_end)
    add(_point("data_received", t, pl.lit("1848"), iteration_tags), iteration_end)
    add(
        _point(
            "iteration_duration", t, pl.lit(_ms((iteration_end - start_ns) / 1e6)), iteration_tags
        ),
        iteration_end,
    )
    add(_point("iterations", t, pl.lit("1"), iteration_tags), iteration_end)
    lines = pl.concat(parts)
    every = it % K6_VUS_EVERY == 0
    if every.any():
        gauge_it = it[every]
        gauge = pl.DataFrame({"it": gauge_it, "t": start_ns[every]})
        for offset, metric in ((-2, "vus"), (-1, "vus_max")):
            lines = pl.concat(
                [
                    lines,
                    gauge.select(
                        "it",
                        seq=pl.lit(offset, pl.Int64),
                        line=_point(metric, pl.col("t"), pl.lit("10"), pl.lit("{}")),
                    ),
                ]
            )
        stats["resources"] = 2 * len(gauge_it)
    else:
        stats["resources"] = 0
    return lines.sort("it", "seq").select("line"), stats


def k6_declarations() -> list[str]:
    lines = []
    for name, kind, contains in K6_METRICS:
        data = {
            "name": name,
            "type": kind,
            "contains": contains,
            "thresholds": ["rate<0.05"] if name == "http_req_failed" else [],
            "submetrics": None,
        }
        lines.append(
            json.dumps({"type": "Metric", "data": data, "metric": name}, separators=(",", ":"))
        )
    return lines


def generate_k6(path: Path, size_bytes: int, seed: int = 11) -> dict:
    rng = np.random.default_rng(seed)
    totals = {"rows": 0, "requests": 0, "resources": 0}
    min_start, max_end = None, 0
    with path.open("wb") as out:
        head = "".join(f"{line}\n" for line in k6_declarations()).encode()
        out.write(head)
        written, totals["rows"] = len(head), len(K6_METRICS)
        first = 0
        while written < size_bytes:
            lines, stats = k6_chunk(rng, first, K6_CHUNK)
            data = lines.write_csv(include_header=False, quote_style="never").encode()
            per_iteration = len(data) / K6_CHUNK
            room = size_bytes - written
            m = K6_CHUNK
            if len(data) > room:  # the last chunk: regenerate only the iterations that fit
                m = max(1, int(room / per_iteration))
                lines, stats = k6_chunk(np.random.default_rng(seed + first), first, m)
                data = lines.write_csv(include_header=False, quote_style="never").encode()
            out.write(data)
            written += len(data)
            totals["rows"] += lines.height
            totals["requests"] += stats["requests"]
            totals["resources"] += stats["resources"]
            min_start = (
                stats["min_start_ns"]
                if min_start is None
                else min(min_start, stats["min_start_ns"])
            )
            max_end = max(max_end, stats["max_end_ns"], int(1e9 * START.timestamp()))
            first += m
    # Gauges and iteration points come later than the last request: widen by the sleep.
    return totals | {
        "started_at": datetime.fromtimestamp(min_start // 10**9, UTC).isoformat(),
        "finished_at": datetime.fromtimestamp(max_end // 10**9 + 2, UTC).isoformat(),
    }


GENERATORS = {
    "canonical": ("requests-{mb}mb.ndjson", generate_canonical),
    "k6": ("k6-out-{mb}mb.json", generate_k6),
}


def ensure_input(kind: str, size_mb: int, workdir: Path) -> tuple[Path, dict]:
    """The generated file (reused when it exists with the same generator version)."""
    name, generate = GENERATORS[kind]
    path = workdir / name.format(mb=size_mb)
    meta_path = path.with_name(path.name + ".meta.json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == GENERATOR_VERSION and meta.get("bytes") == path.stat().st_size:
            return path, meta
    started = time.perf_counter()
    meta = generate(path, size_mb * MB)
    meta |= {"version": GENERATOR_VERSION, "bytes": path.stat().st_size}
    meta_path.write_text(json.dumps(meta, indent=2))
    print(
        f"generated {path} ({meta['bytes'] / MB:.0f} MB, {meta['rows']} lines) "
        f"in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return path, meta


# --- the measured runs (each in its own process) -----------------------------------------------


def work_duckdb(file: Path, out: Path) -> dict:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_json('{file}', format='newline_delimited')) "
        f"TO '{out / 'out.parquet'}' (FORMAT parquet)"
    )
    seconds = time.perf_counter() - started
    rows = con.execute(f"select count(*) from '{out / 'out.parquet'}'").fetchone()[0]
    return {"seconds": seconds, "rows_written": rows}


def bench_manifest(run_id: str, meta: dict, scenario: str = "ingest"):
    """The manifest of a generated input (its ``meta``): suite and environment ``bench``."""
    from metrics_pipeline.contracts.manifest import RunManifest

    return RunManifest(
        run_id=run_id,
        suite="bench",
        scenario=scenario,
        environment="bench",
        started_at=meta["started_at"],
        finished_at=meta["finished_at"],
    )


def work_ours(file: Path, out: Path, meta: dict) -> dict:
    from metrics_pipeline.stages import ci
    from metrics_pipeline.storage import Warehouse

    manifest = bench_manifest("bench-run", meta)
    warehouse = Warehouse(out)
    started = time.perf_counter()
    report = ci.ingest_local(
        [(file.name, lambda: file.open("rb"))], manifest, warehouse, now=datetime.now(UTC)
    )
    ingested = time.perf_counter()
    ingest_peak = peak_rss_mb()
    # Timed apart: a fixed cost of every validating process, imported as validation does
    # (the modules it defers since 2026-12-07; a tree from before imports all of them).
    try:
        from metrics_pipeline.validation.runner import import_great_expectations
    except ImportError:
        import great_expectations  # noqa: F401
    else:
        import_great_expectations()

    imported = time.perf_counter()
    validation = ci.validate(warehouse, report)
    validated = time.perf_counter()
    validate_peak = peak_rss_mb()
    build_run_marts(warehouse, manifest.run_id)
    done = time.perf_counter()
    (acc,) = report.files
    return {
        "seconds": validated - started,
        "marts_s": done - validated,
        "validate_peak_rss_mb": validate_peak,
        "ingest_s": ingested - started,
        "gx_import_s": imported - ingested,
        "validate_s": validated - imported,
        "ingest_peak_rss_mb": ingest_peak,
        "rows_read": acc["rows_read"],
        "rows_accepted": acc["rows_accepted"],
        "rows_quarantined": acc["rows_quarantined"],
        "format": acc["format"],
        "error": acc["error"],
        "tables": report.rows,
        "valid": validation.valid,
        "problems": validation.problems,
    }


def build_run_marts(warehouse, run_id: str) -> None:
    """What the rest of the CI stage and the nightly marts do with the run: its summary and
    latency sketches, then every SQL mart of dbt_like_sql/ (the same stage functions)."""
    from metrics_pipeline.stages import ci, nightly

    ci.summarise(warehouse, run_id)
    nightly.build_marts(warehouse)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM).

    Not ``ru_maxrss`` of the child: Linux carries the forking parent's high-water mark into it.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(engine: str, file: Path, meta: dict, out: Path) -> dict:
    """Run one measurement in a fresh interpreter, which reports its own peak RSS; its CPU time
    (user + system, all threads) comes from the kernel."""
    command = [sys.executable, __file__, "--worker", engine, "--file", str(file), "--out", str(out)]
    load = os.getloadavg()[0]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, env=os.environ | {"BENCH_META": json.dumps(meta)}
    )
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{engine} on {file.name} failed with exit code {proc.returncode}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    return result | {"cpu_s": usage.ru_utime + usage.ru_stime, "load_before": load}


def check(kind: str, meta: dict, result: dict) -> list[str]:
    """What does not match the generated data (empty when the ingest is right)."""
    problems = []
    if result["format"] != ("k6_ndjson" if kind == "k6" else "canonical_jsonl"):
        problems.append(f"detected as {result['format']}")
    if (result["rows_read"], result["rows_accepted"]) != (meta["rows"], meta["rows"]):
        problems.append(
            f"read {result['rows_read']}, accepted {result['rows_accepted']} of {meta['rows']}"
        )
    for table in ("requests", "resources"):
        if result["tables"].get(table, 0) != meta[table]:
            problems.append(f"{table}: {result['tables'].get(table, 0)} rows, not {meta[table]}")
    if not result["valid"]:
        problems.append("validation failed: " + "; ".join(result["problems"]))
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each input file")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "metrics-pipeline-bench",
        help="where inputs are generated (and kept) and outputs written (and removed)",
    )
    parser.add_argument("--formats", default="canonical,k6", help="comma-separated subset")
    parser.add_argument("--worker", choices=["duckdb", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        meta = json.loads(os.environ["BENCH_META"])
        if args.worker == "duckdb":
            work = work_duckdb(args.file, args.out)
        else:
            work = work_ours(args.file, args.out, meta)
        print(json.dumps(work | {"peak_rss_mb": peak_rss_mb()}))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    speed, memory, verdicts, failures = [], [], [], []
    for kind in args.formats.split(","):
        file, meta = ensure_input(kind, args.size_mb, args.workdir)
        read_through(file)
        mb = meta["bytes"] / MB
        results = {}
        for engine in ("duckdb", "ours"):
            out = args.workdir / f"out-{kind}-{engine}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            results[engine] = run_child(engine, file, meta, out)
            shutil.rmtree(out, ignore_errors=True)
            print(f"{kind} {engine}: {json.dumps(results[engine])}", file=sys.stderr)
        duck, ours = results["duckdb"], results["ours"]
        failures += [f"{kind}: {p}" for p in check(kind, meta, ours)]
        ratio = ours["seconds"] / duck["seconds"]
        speed.append(
            f"| {kind} | {mb:.0f} | {meta['rows']:,} | {ours['tables'].get('requests', 0):,} "
            f"| {duck['seconds']:.1f} ({mb / duck['seconds']:.0f} MB/s) "
            f"| {ours['ingest_s']:.1f} ({mb / ours['ingest_s']:.0f} MB/s) "
            f"| {ours['gx_import_s']:.1f} | {ours['validate_s']:.1f} "
            f"| {ours['seconds']:.1f} ({mb / ours['seconds']:.0f} MB/s) "
            f"| {ours['ingest_s'] / duck['seconds']:.1f}x | {ratio:.1f}x "
            f"| {duck['cpu_s']:.0f} / {ours['cpu_s']:.0f} "
            f"| {duck['load_before']:.1f} / {ours['load_before']:.1f} |"
        )
        memory.append(
            f"| {kind} | {duck['peak_rss_mb']:.0f} | {ours['ingest_peak_rss_mb']:.0f} "
            f"| {ours['validate_peak_rss_mb']:.0f} | {ours['marts_s']:.1f} "
            f"| {ours['peak_rss_mb']:.0f} |"
        )
        peak = ours["peak_rss_mb"]
        verdicts.append(
            f"{kind}: throughput {'met' if ratio <= 2 else 'NOT met'} ({ratio:.1f}x DuckDB, "
            f"target 2x); peak RSS {'met' if peak <= RSS_TARGET_MB else 'NOT met'} "
            f"({peak:.0f} MB, target {RSS_TARGET_MB} MB)"
        )
    print(
        "| input | MB | lines | request rows | DuckDB s | ingest s | GX import s | validate s "
        "| ours total s | ingest / DuckDB | total / DuckDB | CPU s DuckDB / ours "
        "| load avg before DuckDB / ours |"
    )
    print("|---" * 13 + "|")
    print("\n".join(speed))
    print()
    print(
        "| input | DuckDB peak RSS MB | ours after ingest MB | ours after validation MB "
        "| summary + sketches + marts s | ours peak RSS (all marts) MB |"
    )
    print("|---" * 6 + "|")
    print("\n".join(memory))
    print()
    print("\n".join(verdicts))
    if failures:
        raise SystemExit("ingest did not match the generated data:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
