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
# Metrics whose change is a difference of rates (percentage points), not a ratio.
ABSOLUTE_CHANGE = frozenset({"error_rate"})
# The cut for a change in rate points (an error rate's: 1 % -> 6 % is +0.05). Relative, 50 %
# would make 1 % -> 1.5 % critical; 0.5 read as points, only 1 % -> 51 %.
CRITICAL_POINTS = 0.05


def change_severity(change: float | None, metric: str = "") -> Severity:
    """``critical`` from a 50 % degradation on (from 5 percentage points on for a metric whose
    change is a difference of rates, ``ABSOLUTE_CHANGE``), else ``warning`` (also when
    unknown)."""
    cut = CRITICAL_POINTS if metric in ABSOLUTE_CHANGE else CRITICAL_CHANGE
    return "critical" if change is not None and change >= cut else "warning"
