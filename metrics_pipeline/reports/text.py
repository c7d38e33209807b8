"""Formatting shared by the reports: numbers, changes, intervals and metric names (inert
Markdown is ``common.text``)."""

from __future__ import annotations

import math

# Units of the verdict and summary metrics, for baseline -> candidate values.
UNITS = {
    "latency_p50": "{:.1f} ms",
    "latency_p95": "{:.1f} ms",
    "latency_p99": "{:.1f} ms",
    "latency_mean": "{:.1f} ms",
    "error_rate": "{:.2%}",
    "throughput": "{:.1f}/s",
    "throughput_rps": "{:.1f}/s",
}
METRIC_NAMES = {
    "latency_p50": "median latency",
    "latency_p95": "p95 latency",
    "latency_p99": "p99 latency",
    "error_rate": "error rate",
    "throughput": "throughput",
    "throughput_rps": "throughput",
}


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def value(metric: str, number: float | None) -> str:
    if not finite(number):
        return "-"
    return UNITS.get(metric, "{:.4g}").format(number)


def pct(number: float | None, signed: bool = True) -> str:
    if not finite(number):
        return "-"
    return f"{number:+.1%}" if signed else f"{number:.1%}"


def interval(low: float | None, high: float | None) -> str:
    return f"[{pct(low)}, {pct(high)}]" if finite(low) and finite(high) else "-"


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)
