"""The alerts the CLI lists: one row per alert and event, its channels in one cell."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from rich.console import Console

from metrics_pipeline.cli.alerts import notifications_table
from metrics_pipeline.contracts.tables import conform

NOW = datetime(2031, 3, 15, 12, 0, tzinfo=UTC)


def test_one_row_per_alert_with_every_channel_and_its_state():
    alerts = conform(
        "alerts",
        pl.DataFrame(
            {
                "alert_id": ["a1", "b2"],
                "severity": ["warning", "critical"],
                "kind": ["regression", "sla_breach"],
                "summary": ["latency_p50 of /api/orders +27%", "SLA of /api/orders breached"],
            }
        ),
    )
    outbox = conform(
        "alert_deliveries",
        pl.DataFrame(
            {
                "alert_id": ["a1", "a1", "b2", "b2"],
                "channel": ["team-webhook", "team-slack", "team-slack", "team-webhook"],
                "event": ["opened"] * 4,
                "attempts": [0, 2, 1, 0],
                "last_error": ["not configured", "HTTP 503", None, None],
                "delivered_at": [None, None, NOW, None],
            }
        ),
    )
    console = Console(width=200, record=True)
    console.print(notifications_table(alerts, outbox, "alerts"))
    text = console.export_text()
    rows = [line for line in text.splitlines() if "│ warning" in line or "│ critical" in line]
    assert len(rows) == 2  # two alerts, not four notifications
    assert text.index("critical") < text.index("warning")  # most severe first
    assert "team-slack: sent 2031-03-15 12:00" in text
    assert "team-webhook: would send (channel not configured)" in text
    assert "team-slack: retrying (2 attempts): HTTP 503" in text


def test_alerts_list_reads_at_80_columns():
    from metrics_pipeline.cli.alerts import alerts_table

    summaries = [
        "/api/orders worse than its baseline in run checkout-20261206-4: latency_p50 +70% "
        "(48.7 -> 82.5), latency_p95 +65% (102 -> 169)",
        "SLA latency_p95 of /api/orders: 169.5 ms is beyond the alert threshold 150 ms "
        "(target 100 ms) in run checkout-20261206-4",
    ]
    alerts = conform(
        "alerts",
        pl.DataFrame(
            {
                "alert_id": ["3f9a2c1b7d5e4a60", "b2c4d6e8f0a1b3c5"],
                "severity": ["warning", "critical"],
                "kind": ["regression", "sla_breach"],
                "status": ["open", "acknowledged"],
                "summary": summaries,
                "opened_at": [NOW, NOW],
                "evaluations": [1, 2],
            }
        ),
    )
    console = Console(width=80, record=True)
    console.print(alerts_table(alerts, "active alerts", console.width))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    # The summary wraps in a column wide enough for phrases, not a word per line.
    body = [line for line in lines if line.startswith("│")]
    assert len(body) <= 2 * 5
    assert any("3f9a2c1b" in line for line in body)
    assert "b2c4d6e8" in body[0]  # critical first
    assert "opened" not in console.export_text()
    wide = Console(width=140, record=True)
    wide.print(alerts_table(alerts, "active alerts", wide.width))
    assert "2031-03-15 12:00" in wide.export_text()
