"""Formatting shared by the reports: numbers, changes, and Markdown that stays inert."""

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


def one_line(text: str) -> str:
    """User text on one line (endpoint names may contain newlines)."""
    return " ".join(str(text).split())


# Characters that start Markdown syntax in the middle of a line (emphasis, code, links,
# images, raw HTML, entities, table cells, strike-through) plus the escape itself.
MD_SPECIAL = "\\`*_[]<>|~&"


def md(text: object) -> str:
    """Text from the data made inert in the middle of a Markdown line, tables included: every
    character that could start Markdown syntax is backslash-escaped, newlines become spaces.
    Callers never start a line with it (where ``#``, ``-`` or ``1.`` would matter)."""
    escaped = "".join("\\" + c if c in MD_SPECIAL else c for c in one_line(str(text)))
    return escaped


def md_table(columns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells that are already escaped (see :func:`md`)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
