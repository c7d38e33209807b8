"""The ``metrics-pipeline`` command line."""
