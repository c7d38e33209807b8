"""The steps of the jobs as plain functions: read from the stores, compute, write back.

Asset bodies, the CLI and bench/ call these; they import no Dagster.
"""
