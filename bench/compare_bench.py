"""``metrics-pipeline compare`` of two ~100 MB per-request files against DuckDB reading both.

For each input pair (a baseline and a candidate run of about ``--size-mb`` each: canonical
request NDJSON, and k6 ``--out json`` NDJSON), generated deterministically with fixed seeds by
the generators of ``bench/ingest_bench.py`` and kept in ``--workdir``, it runs, each in a fresh
process and back to back:

* ``duckdb``: ``CREATE TABLE base AS SELECT * FROM read_json(BASE, format='newline_delimited')``
  and the same for the candidate, in one connection: DuckDB reading and parsing both files
  fully into its own tables (the reference; its time is that of the two statements, without
  the interpreter's start and ``import duckdb``);
* ``cli``: the command itself, ``.venv/bin/metrics-pipeline compare --json BASE CAND``, timed
  from spawn to exit: interpreter start, imports, reading, verdicts and output all count;
* ``inprocess``: ``cli.gate.compare`` called in a fresh interpreter, with the time of the call
  alone (after the imports) and of the imports before it.

``--repeat`` rounds of the three steps run back to back. The result is the median over the
rounds of the command's wall time over DuckDB's time in the same round (the machine may be
shared: a round compares two runs seconds apart); the best times are shown too. The parent
process imports nothing heavy and generates the inputs in a child, so the peak RSS the kernel
reports for a child (``ru_maxrss`` of ``wait4``) is the child's own. ``--code DIR`` measures
the ``metrics_pipeline`` of another tree (the children get ``PYTHONPATH=DIR``), e.g. the last
commit: ``git archive HEAD metrics_pipeline config | tar -x -C DIR``. Prints a markdown table
for bench/README.md: seconds, ratios to DuckDB, peak RSS, CPU seconds, the load average, and
the verdicts of the command (its exit code and the number of regression rows).

    uv run python bench/compare_bench.py                      # 100 MB files, both formats
    uv run python bench/compare_bench.py --size-mb 10 --repeat 1   # smoke check
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from provenance import git_state, read_through  # noqa: E402

MB = 1024 * 1024
TARGET_RATIO = 3.0
# Set by --code: the children import metrics_pipeline from that tree (PYTHONPATH comes before
# the editable install), e.g. `git archive HEAD metrics_pipeline config | tar -x -C DIR`.
CHILD_ENV: dict[str, str] = {}
# (baseline seed, candidate seed) per format; the candidate starts a day later.
SEEDS = {"canonical": (7, 8), "k6": (11, 12)}
NAMES = {"canonical": "compare-{role}-{mb}mb.ndjson", "k6": "compare-k6-{role}-{mb}mb.json"}
GENERATOR_VERSION = 1


# --- inputs (generated in a child process: the parent stays small) ------------------------------


def generate(kind: str, role: str, path: Path, size_bytes: int) -> dict:
    from datetime import timedelta

    import ingest_bench

    seed = SEEDS[kind][role == "candidate"]
    if kind == "canonical":
        start = ingest_bench.START + timedelta(days=role == "candidate")
        return ingest_bench.generate_canonical(path, size_bytes, seed=seed, start=start)
    return ingest_bench.generate_k6(path, size_bytes, seed=seed)


def ensure_inputs(kind: str, size_mb: int, workdir: Path) -> list[Path]:
    """The baseline and candidate files (reused when they exist from the same generator)."""
    paths = []
    for role in ("baseline", "candidate"):
        path = workdir / NAMES[kind].format(role=role, mb=size_mb)
        meta_path = path.with_name(path.name + ".meta.json")
        fresh = False
        if path.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            fresh = (
                meta.get("version") == GENERATOR_VERSION
                and meta.get("bytes") == path.stat().st_size
            )
        if not fresh:
            started = time.perf_counter()
            command = [sys.executable, __file__, "--generate", kind, "--role", role]
            subprocess.run([*command, "--file", str(path), "--size-mb", str(size_mb)], check=True)
            print(
                f"generated {path} ({path.stat().st_size / MB:.0f} MB) in "
                f"{time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
        paths.append(path)
    return paths


# --- the measured steps (each in its own process) ------------------------------------------------


def work_duckdb(files: list[Path]) -> dict:
    import duckdb

    con = duckdb.connect()
    started = time.perf_counter()
    rows = []
    for i, file in enumerate(files):
        con.execute(
            f"CREATE TABLE t{i} AS SELECT * FROM read_json('{file}', format='newline_delimited')"
        )
        rows.append(con.execute(f"SELECT count(*) FROM t{i}").fetchone()[0])
    return {"seconds": time.perf_counter() - started, "rows": rows}


def work_inprocess(files: list[Path]) -> dict:
    started = time.perf_counter()
    import typer

    from metrics_pipeline.cli.gate import compare

    imported = time.perf_counter()
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            compare(files, as_json=True)
        except typer.Exit as exc:
            code = exc.exit_code
    done = time.perf_counter()
    verdicts = json.loads(out.getvalue())
    return {
        "seconds": done - imported,
        "import_s": imported - started,
        "exit_code": code,
        "rows": len(verdicts),
        "regressions": sum(1 for row in verdicts if row["regression"]),
        "heavy_modules": sorted(
            name for name in ("great_expectations", "dagster", "statsmodels") if name in sys.modules
        ),
    }


def run_child(command: list[str]) -> dict:
    """Run ``command``: wall seconds from spawn to exit, its output and exit code, and from
    the kernel its peak RSS (MB) and CPU seconds (user + system, all threads); the 1-minute
    load average just before."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=os.environ | CHILD_ENV, cwd=ROOT)
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "stdout": stdout.decode(),
        "exit_code": os.waitstatus_to_exitcode(status),
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load": load,
    }


def worker(engine: str, files: list[Path]) -> list[str]:
    return [sys.executable, __file__, "--worker", engine, *map(str, files)]


def measure(kind: str, files: list[Path], repeat: int) -> list[dict]:
    """``repeat`` rounds of DuckDB, the command and the in-process call, back to back."""
    cli = str(Path(sys.executable).with_name("metrics-pipeline"))
    rounds = []
    for _ in range(repeat):
        steps = {
            "duckdb": run_child(worker("duckdb", files)),
            "cli": run_child([cli, "compare", "--json", *map(str, files)]),
            "inprocess": run_child(worker("inprocess", files)),
        }
        for name, result in steps.items():
            if name != "cli":
                if result["exit_code"] != 0:
                    raise SystemExit(f"{name} on {kind} failed: exit {result['exit_code']}")
                result |= json.loads(result["stdout"].strip().splitlines()[-1])
            else:
                if result["exit_code"] not in (0, 1):
                    raise SystemExit(f"compare on {kind} failed: exit {result['exit_code']}")
                verdicts = json.loads(result["stdout"])
                result["rows"] = len(verdicts)
                result["regressions"] = sum(1 for row in verdicts if row["regression"])
                result["seconds"] = result["wall_s"]
            del result["stdout"]
            print(f"{kind} {name}: {json.dumps(result)}", file=sys.stderr)
        rounds.append(steps)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100, help="size of each input file")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the three steps")
    parser.add_argument("--formats", default="canonical,k6", help="comma-separated subset")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "metrics-pipeline-bench",
        help="where the inputs are generated and kept",
    )
    parser.add_argument(
        "--code",
        type=Path,
        help="measure the metrics_pipeline of this folder (e.g. an export of an older commit)",
    )
    parser.add_argument("--worker", choices=["duckdb", "inprocess"], help=argparse.SUPPRESS)
    parser.add_argument("--generate", choices=list(SEEDS), help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=["baseline", "candidate"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate:
        meta = generate(args.generate, args.role, args.file, args.size_mb * MB)
        meta |= {"version": GENERATOR_VERSION, "bytes": args.file.stat().st_size}
        args.file.with_name(args.file.name + ".meta.json").write_text(json.dumps(meta, indent=2))
        return
    if args.worker:
        work = work_duckdb if args.worker == "duckdb" else work_inprocess
        print(json.dumps(work(args.files)))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    code = git_state()
    if args.code:
        CHILD_ENV["PYTHONPATH"] = str(args.code.resolve())
        code = f"metrics_pipeline of {args.code}"
    print(
        f"code: {code}; {time.strftime('%Y-%m-%d %H:%M %Z')}; {args.size_mb} MB per file, "
        f"{args.repeat} rounds of DuckDB, CLI, in-process back to back\n"
    )
    rows, verdicts = [], []
    for kind in args.formats.split(","):
        files = ensure_inputs(kind, args.size_mb, args.workdir)
        read_through(*files)
        mb = sum(f.stat().st_size for f in files) / MB
        rounds = measure(kind, files, args.repeat)
        # Each round's ratio is of two runs seconds apart (the machine may be shared): the
        # median over the rounds is the result; the best times are shown too.
        ratios = sorted(r["cli"]["wall_s"] / r["duckdb"]["seconds"] for r in rounds)
        ratio = statistics.median(ratios)
        best = {
            name: min((r[name] for r in rounds), key=lambda x: x["seconds"]) for name in rounds[0]
        }
        duck, cli, inproc = best["duckdb"], best["cli"], best["inprocess"]
        peak = {name: max(r[name]["peak_rss_mb"] for r in rounds) for name in rounds[0]}
        cpu = {name: statistics.median(r[name]["cpu_s"] for r in rounds) for name in rounds[0]}
        loads = [r["duckdb"]["load"] for r in rounds]
        rows.append(
            f"| {kind} | {mb:.0f} | {sum(duck['rows']):,} | {duck['seconds']:.2f} "
            f"| {cli['wall_s']:.2f} | {inproc['import_s']:.2f} | {inproc['seconds']:.2f} "
            f"| {' / '.join(f'{x:.1f}' for x in ratios)} | **{ratio:.1f}x** "
            f"| {cli['wall_s'] / duck['seconds']:.1f}x "
            f"| {peak['duckdb']:.0f} / {peak['cli']:.0f} | {cpu['duckdb']:.1f} / {cpu['cli']:.1f} "
            f"| {min(loads):.1f}-{max(loads):.1f} "
            f"| exit {cli['exit_code']}, {cli['regressions']} of {cli['rows']} rows |"
        )
        heavy = inproc["heavy_modules"]
        verdicts.append(
            f"{kind}: {'met' if ratio <= TARGET_RATIO else 'NOT met'} ({ratio:.1f}x DuckDB "
            f"reading both, median of the rounds, target {TARGET_RATIO:g}x); "
            f"GX/Dagster/statsmodels imported: {', '.join(heavy) if heavy else 'none'}"
        )
    print(
        "| input | MB (both) | lines | DuckDB s (best) | compare CLI s (best) | imports s "
        "| compare in-process s (best) | CLI / DuckDB per round | CLI / DuckDB (median) "
        "| best / best | peak RSS MB DuckDB / CLI | CPU s DuckDB / CLI (median) "
        "| load avg (1 min) | verdicts |"
    )
    print("|---" * 14 + "|")
    print("\n".join(rows))
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
