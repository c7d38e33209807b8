"""Warehouse storage: hive-partitioned Parquet per run, queried through DuckDB, optionally
mirrored to Postgres."""

from metrics_pipeline.settings import Settings
from metrics_pipeline.storage.postgres import PostgresWarehouse
from metrics_pipeline.storage.warehouse import PartitionWriter, Warehouse

__all__ = ["PartitionWriter", "PostgresWarehouse", "Warehouse", "open_warehouse"]


def open_warehouse(settings: Settings) -> Warehouse:
    """The configured warehouse: Parquet under METRICS_HOME, plus Postgres when
    METRICS_POSTGRES_URL is set."""
    mirror = PostgresWarehouse(settings.postgres_url) if settings.postgres_url else None
    return Warehouse(settings.warehouse_root, mirror)
