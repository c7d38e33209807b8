"""Parquet encodings of the ``requests`` partition: CPU seconds and bytes per column.

Ingests the canonical NDJSON of ``ingest_bench.py`` (generated once in ``--workdir``, fixed
seed) into a throwaway warehouse, reads its ``requests`` partition back, and writes it again in
batches of 50,000 rows (the ingest's batch size), zstd-compressed, two ways:

* ``default``: pyarrow's defaults (a dictionary for every column, plain when it overflows);
* ``warehouse``: ``storage.warehouse.encodings`` (deltas for ``ts`` and ``line_no``, plain
  floats, dictionaries for the rest), what the warehouse writes.

For each column alone and for the whole table it prints the CPU seconds of the write (median
of ``--repeat``) and the bytes written, and checks that the file reads back equal.

    uv run python bench/parquet_encodings.py                 # 1 GB input
    uv run python bench/parquet_encodings.py --size-mb 100
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_bench

BATCH_ROWS = 50_000


def partition(workdir: Path, size_mb: int) -> pa.Table:
    from metrics_pipeline.stages import ci
    from metrics_pipeline.storage import Warehouse

    file, meta = ingest_bench.ensure_input("canonical", size_mb, workdir)
    manifest = ingest_bench.bench_manifest("encodings", meta, scenario="encodings")
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        warehouse = Warehouse(Path(folder))
        ci.ingest_local(
            [(file.name, lambda: file.open("rb"))], manifest, warehouse, now=datetime.now(UTC)
        )
        return pq.read_table(warehouse.files("requests", ["encodings"]))


def write(table: pa.Table, options: dict) -> tuple[float, int, bytes]:
    """CPU seconds and bytes of writing ``table`` in ingest-sized batches."""
    buffer = io.BytesIO()
    started = time.process_time()
    with pq.ParquetWriter(buffer, table.schema, compression="zstd", **options) as writer:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            writer.write_table(pa.Table.from_batches([batch]))
    return time.process_time() - started, buffer.tell(), buffer.getvalue()


def measure(table: pa.Table, options: dict, repeat: int) -> tuple[float, int]:
    seconds, size = [], 0
    for _ in range(repeat):
        spent, size, data = write(table, options)
        seconds.append(spent)
    if not pq.read_table(io.BytesIO(data)).equals(table):
        raise SystemExit("the file does not read back equal")
    return statistics.median(seconds), size


def main() -> None:
    from metrics_pipeline.storage.warehouse import encodings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "metrics-pipeline-bench"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    table = partition(args.workdir, args.size_mb).drop_columns(["run_id"])
    print(
        f"{table.num_rows:,} rows, load average {os.getloadavg()[0]:.1f}, "
        f"pyarrow {pa.__version__}, median of {args.repeat}\n"
    )
    print("| column | default CPU s | default MB | warehouse CPU s | warehouse MB |")
    print("|---|---:|---:|---:|---:|")
    for name in [*table.column_names, None]:
        part = table if name is None else table.select([name])
        cells = []
        for options in ({}, encodings(part.schema)):
            seconds, size = measure(part, options, args.repeat)
            cells += [f"{seconds:.2f}", f"{size / 1e6:.1f}"]
        print(f"| {name or '**all**'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
