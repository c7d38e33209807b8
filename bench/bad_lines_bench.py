"""CPU seconds of the NDJSON adapters' parse on a clean file and on the same file with one
broken line in every 200 (the bulk path then reads each block in many ranges, bisecting to
the bad lines, and sends those to the per-line path).

    OPENBLAS_NUM_THREADS=1 uv run python bench/bad_lines_bench.py            # this tree
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=/tmp/old uv run python bench/bad_lines_bench.py
    # /tmp/old: `git archive <commit> metrics_pipeline config | tar -x -C /tmp/old`

Inputs: the canonical generator of ``ingest_bench.py`` (50 MB, kept in --workdir) and the
real k6 runs of ``tests/fixtures/real_runs/k6`` (decompressed, twice over: about 58 MB). The
best of ``--repeat`` parses of each, in this process, in CPU seconds of the whole process
(both worker threads count).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import tempfile
import time
from pathlib import Path

from ingest_bench import ensure_input
from provenance import git_state

from metrics_pipeline.formats import canonical_jsonl, k6_ndjson
from metrics_pipeline.formats.base import FileAccounting

ROOT = Path(__file__).resolve().parent.parent


def broken_every(data: bytes, every: int = 200) -> bytes:
    """``data`` with the last 3 bytes cut off one line in ``every`` (invalid JSON)."""
    lines = data.split(b"\n")
    cut = every // 2
    return b"\n".join(line[:-3] if i % every == cut else line for i, line in enumerate(lines))


def cpu_seconds(adapter, data: bytes, repeat: int) -> tuple[float, int]:
    best, quarantined = float("inf"), 0
    for _ in range(repeat):
        accounting = FileAccounting("bench")
        started = time.process_time()
        for _ in adapter.parse(io.BytesIO(data), accounting):
            pass
        best = min(best, time.process_time() - started)
        quarantined = accounting.rows_quarantined
    return best, quarantined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "metrics-pipeline-bench"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    canonical = ensure_input("canonical", 50, args.workdir)[0].read_bytes()
    k6 = (
        b"".join(
            gzip.decompress(path.read_bytes())
            for path in sorted((ROOT / "tests/fixtures/real_runs/k6").glob("*/k6_out.json.gz"))
        )
        * 2
    )
    print(f"code {git_state()}, load average {os.getloadavg()}")
    print("| input | MB | clean CPU s | a bad line in 200: CPU s | quarantined |")
    print("|---|---|---|---|---|")
    for name, adapter, data in (("canonical", canonical_jsonl, canonical), ("k6", k6_ndjson, k6)):
        clean, _ = cpu_seconds(adapter, data, args.repeat)
        broken, quarantined = cpu_seconds(adapter, broken_every(data), args.repeat)
        print(f"| {name} | {len(data) >> 20} | {clean:.2f} | {broken:.2f} | {quarantined:,} |")


if __name__ == "__main__":
    main()
