"""Partitions shared by the asset, sensor and schedule packages."""

import dagster as dg

# One partition per uploaded run; the sensor adds them as uploads complete.
runs_partitions = dg.DynamicPartitionsDefinition(name="runs")
