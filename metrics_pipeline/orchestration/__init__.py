"""Dagster's side: definitions, resources, partitions, executors, in-process runs."""
