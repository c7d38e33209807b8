r"""Do the Parquet warehouse and its Postgres mirror hold the same rows? And mending them.

For every partition (table x run, or a whole snapshot table) the check compares the row count
and an order-independent checksum of the rows on both sides,

.. math:: c = \sum_i h(r_i) \bmod 2^{64},

with :math:`h` polars' row hash of the row in the table's schema, computed in this process for
both sides (so the hash function's version does not matter). Parquet is the side that is
trusted: the mirror is written from it, and the raw upload can rebuild Parquet (``rebuild``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from metrics_pipeline.contracts.tables import SCHEMAS, SNAPSHOT_TABLES, conform
from metrics_pipeline.storage.warehouse import Warehouse

PARTITIONED = tuple(t for t in SCHEMAS if t not in SNAPSHOT_TABLES)


@dataclass(frozen=True)
class PartitionCheck:
    """One partition on both sides; ``run_id`` is None for a snapshot table."""

    table: str
    run_id: str | None
    parquet_rows: int
    postgres_rows: int | None
    parquet_checksum: str
    postgres_checksum: str | None
    pending: bool = False

    @property
    def ok(self) -> bool:
        return not self.pending and (
            self.postgres_rows is None
            or (
                self.parquet_rows == self.postgres_rows
                and self.parquet_checksum == self.postgres_checksum
            )
        )


def checksum(table: str, frame: pl.DataFrame) -> str:
    """The order-independent checksum of ``frame``'s rows, as 16 hex digits."""
    # numpy's uint64 sum wraps around: the sum modulo 2**64.
    total = conform(table, frame).hash_rows(seed=0).to_numpy().sum(dtype=np.uint64)
    return f"{int(total):016x}"


def check(warehouse: Warehouse, tables: Iterable[str] | None = None) -> list[PartitionCheck]:
    """Compare every partition of ``tables`` (default all) in Parquet and in the mirror.

    Without a mirror, the Postgres fields are None and only pending markers can fail.
    """
    mirror = warehouse.mirror
    pending = warehouse.pending()
    pending_parts = {
        (table, None if key.startswith("snapshot=") else key.removeprefix("run="))
        for key, names in pending.items()
        for table in names
    }
    results = []
    for table in tables or SCHEMAS:
        if table in SNAPSHOT_TABLES:
            parquet = warehouse.read(table)
            postgres = mirror.read(table) if mirror else None
            results.append(_compare(table, None, parquet, postgres, (table, None) in pending_parts))
            continue
        counts = mirror.partition_counts(table) if mirror else {}
        for run_id in sorted(set(warehouse.run_ids(table)) | set(counts)):
            parquet = warehouse.read(table, [run_id])
            postgres = mirror.read(table, "run_id = %s", (run_id,)) if mirror else None
            results.append(
                _compare(table, run_id, parquet, postgres, (table, run_id) in pending_parts)
            )
    return results


def _compare(
    table: str,
    run_id: str | None,
    parquet: pl.DataFrame,
    postgres: pl.DataFrame | None,
    pending: bool,
) -> PartitionCheck:
    return PartitionCheck(
        table,
        run_id,
        parquet.height,
        None if postgres is None else postgres.height,
        checksum(table, parquet),
        None if postgres is None else checksum(table, postgres),
        pending,
    )


def repair(warehouse: Warehouse) -> list[PartitionCheck]:
    """Rewrite the mirror from Parquet for every partition that differs, and clear the pending
    markers; return the partitions that were rewritten. Without a mirror nothing is rewritten
    and the markers stay: a publication cut between two tables is mended by publishing the run
    again (ingest), which clears its marker."""
    mirror = warehouse.mirror
    if mirror is None:
        return []
    markers = list(warehouse.pending())
    bad = [c for c in check(warehouse) if not c.ok]
    for item in bad:
        if item.run_id is None:
            mirror.replace_snapshot(item.table, warehouse.read(item.table))
        else:
            mirror.replace_partition(
                item.table, item.run_id, warehouse.read(item.table, [item.run_id])
            )
    for marker in markers:
        warehouse.clear_pending(marker)
    return bad
