"""Warehouse storage: hive-partitioned Parquet per run (a local folder or an object store),
queried through DuckDB, optionally mirrored to Postgres."""

from pathlib import Path

from metrics_pipeline.settings import DEFAULT_POSTGRES_SCHEMA, Settings
from metrics_pipeline.storage.postgres import PostgresWarehouse
from metrics_pipeline.storage.warehouse import PartitionWriter, Warehouse

__all__ = ["PartitionWriter", "PostgresWarehouse", "Warehouse", "open_warehouse", "warehouse_at"]


def warehouse_at(
    location: str,
    local: str | Path,
    postgres_url: str | None = None,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    postgres_schema: str = DEFAULT_POSTGRES_SCHEMA,
) -> Warehouse:
    """The warehouse at ``location``: a local folder, or ``s3://bucket/prefix`` with ``local``
    for this host's staging files, locks and catalog; mirrored to ``postgres_url`` (in
    ``postgres_schema``) if set."""
    mirror = PostgresWarehouse(postgres_url, postgres_schema) if postgres_url else None
    if location.startswith("s3://"):
        from metrics_pipeline.storage.object_warehouse import ObjectWarehouse

        return ObjectWarehouse(location, local, mirror, endpoint_url=endpoint_url, region=region)
    return Warehouse(location, mirror)


def open_warehouse(settings: Settings, *, mirrored: bool = True) -> Warehouse:
    """The configured warehouse: Parquet under METRICS_HOME (or METRICS_WAREHOUSE), plus
    Postgres when METRICS_POSTGRES_URL is set (and ``mirrored``: a reader of the Parquet files
    alone, such as the ``compare`` gate, neither needs nor migrates the mirror)."""
    return warehouse_at(
        settings.warehouse_location,
        settings.warehouse_root,
        settings.postgres_url if mirrored else None,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        postgres_schema=settings.postgres_schema,
    )
