"""Warehouse storage: hive-partitioned Parquet per run, queried through DuckDB."""

from metrics_pipeline.storage.warehouse import PartitionWriter, Warehouse

__all__ = ["PartitionWriter", "Warehouse"]
