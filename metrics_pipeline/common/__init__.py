"""Shared vocabulary: the clock, configuration-file errors and durations."""
