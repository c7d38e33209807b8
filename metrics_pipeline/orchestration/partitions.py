"""Partitions shared by the asset, sensor and schedule packages."""

import warnings

import dagster as dg

# One partition per uploaded run; the sensor adds them as uploads complete.
runs_partitions = dg.DynamicPartitionsDefinition(name="runs")
# Dagster's tag of a partitioned run's partition (dagster._core.storage.tags, private).
PARTITION_TAG = "dagster/partition"


def run_check(name: str, asset: dg.AssetKey, *, blocking: bool, description: str):
    """An asset check recorded on each run's partition: without it the asset page showed only
    the latest run's result, and a regressed run turned green at the next clean run of any
    suite. Partitioned checks are a preview in Dagster 1.13 (uv.lock pins the release they
    were tested on); its warning would be printed by every process that loads the code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name,
            asset=asset,
            partitions_def=runs_partitions,
            blocking=blocking,
            description=description,
        )
