"""How bad a finding or an alert is: one order for sorting, routing and escalation."""

from __future__ import annotations

from typing import Literal

import polars as pl

Severity = Literal["critical", "warning", "info"]
# Most severe first; an unknown severity sorts after every known one.
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


def severity_rank(column: str = "severity") -> pl.Expr:
    """A sort key for a severity column: critical first, unknown last."""
    return pl.col(column).replace_strict(
        SEVERITY_ORDER, default=len(SEVERITY_ORDER), return_dtype=pl.Int8
    )


# A degradation this much worse (relative change) is critical; smaller ones are warnings. The
# alerts, the Prometheus exporter and its alert rules, and the change-point findings all cut here.
CRITICAL_CHANGE = 0.5


def change_severity(change: float | None) -> Severity:
    """``critical`` from a 50 % degradation on, else ``warning`` (also when unknown)."""
    return "critical" if change is not None and change >= CRITICAL_CHANGE else "warning"
