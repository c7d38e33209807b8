"""``metrics-pipeline alerts``: list, acknowledge, triage (expected, invalid), and deliver what
waits in the outbox."""

from __future__ import annotations

from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.output import bad_input, command_group, console
from metrics_pipeline.common.severity import severity_rank
from metrics_pipeline.settings import Settings

alerts_app = command_group("Alerts: list them, acknowledge or triage one, deliver the outbox.")


def _warehouse():
    from metrics_pipeline.storage import open_warehouse

    return open_warehouse(Settings.from_env())


def _delivery_state(row: dict) -> str:
    if row["delivered_at"] is not None:
        return f"sent {row['delivered_at']:%Y-%m-%d %H:%M}"
    if row["attempts"] == 0 and row["last_error"]:
        return "would send (channel not configured)"
    if row["attempts"]:
        return f"retrying ({row['attempts']} attempts): {row['last_error']}"
    return "pending"


def notifications_table(alerts: pl.DataFrame, outbox: pl.DataFrame, title: str) -> Table:
    """One row per alert and event (opened, escalated, resolved): severity, kind, summary, and
    each channel with its delivery state on a line of its own."""
    table = Table(title=title)
    for column in ("severity", "kind", "summary", "event", "channels"):
        table.add_column(column)
    rows = outbox.join(alerts.drop("details"), on="alert_id")
    states = rows.with_columns(
        state=pl.struct(pl.all()).map_elements(_delivery_state, return_dtype=pl.String)
    )
    grouped = (
        states.sort("channel")
        .group_by("alert_id", "event", maintain_order=True)
        .agg(
            pl.first("severity", "kind", "summary"),
            lines=pl.concat_str("channel", pl.lit(": "), "state"),
        )
        .sort(severity_rank(), "kind", "alert_id", "event")
    )
    for row in grouped.iter_rows(named=True):
        table.add_row(
            row["severity"],
            row["kind"],
            escape(row["summary"]),
            row["event"],
            escape("\n".join(row["lines"])),
        )
    return table


# Shown from this console width on: below it, the summary keeps room to stay readable.
WIDE = 110


def alerts_table(alerts: pl.DataFrame, title: str, width: int) -> Table:
    """One row per alert, most severe first: the summary takes the width left (its kind in
    front), the other cells stay on one line; the opening time only on a wide console."""
    table = Table(title=title)
    table.add_column("id", no_wrap=True)  # the commands take a unique prefix
    table.add_column("severity", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("alert", ratio=1, min_width=24, overflow="fold")
    if width >= WIDE:
        table.add_column("opened", no_wrap=True)
    table.add_column("runs", justify="right", no_wrap=True)
    for row in alerts.sort(severity_rank(), "opened_at").iter_rows(named=True):
        cells = [
            row["alert_id"][:8],
            row["severity"],
            row["status"],
            f"[bold]{row['kind']}[/]: {escape(row['summary'])}",
        ]
        if width >= WIDE:
            cells.append(f"{row['opened_at']:%Y-%m-%d %H:%M}")
        table.add_row(*cells, str(row["evaluations"]))
    return table


@alerts_app.command("list")
def list_alerts(
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved alerts.")] = False,
) -> None:
    """Active alerts (open and acknowledged), most severe first."""
    alerts = _warehouse().read("alerts")
    if not show_all:
        alerts = alerts.filter(pl.col("status") != "resolved")
    title = "alerts" if show_all else "active alerts"
    console.print(alerts_table(alerts, title, console.width) if alerts.height else "no alerts")


@alerts_app.command("ack")
def ack(
    alert_id: Annotated[str, typer.Argument(help="Alert id (or a unique prefix of it).")],
) -> None:
    """Acknowledge an alert: it is no longer escalated; it resolves when its condition clears."""
    from metrics_pipeline.alerts.service import acknowledge_alert

    with bad_input():
        row = acknowledge_alert(_warehouse(), alert_id, Settings.from_env().clock())
    console.print(f"acknowledged {row['alert_id']}: {escape(row['summary'])}")


def _mark(alert_id: str, verdict: str, note: str | None) -> None:
    from metrics_pipeline.alerts.config import load_alerting
    from metrics_pipeline.stages.triage import mark_alert
    from metrics_pipeline.upload.uploader import uploader_identity

    settings = Settings.from_env()
    with bad_input():
        row = mark_alert(
            _warehouse(),
            alert_id,
            verdict,
            note=note,
            marked_by=uploader_identity(),
            now=settings.clock(),
            config=load_alerting(settings.alerting_config),
        )
    console.print(
        f"{row['alert_id']} marked {verdict} and resolved (its channels are told by the next "
        f"delivery): {escape(row['summary'])}"
    )


AlertId = Annotated[str, typer.Argument(help="Alert id (or a unique prefix of it).")]
Note = Annotated[str | None, typer.Option(help="Why (kept with the mark).")]


@alerts_app.command("expected")
def expected(alert_id: AlertId, note: Note = None) -> None:
    """Mark an alert expected (a real, intended change) and resolve it: a regression is
    accepted into the baseline (later runs are compared with runs from it on)."""
    _mark(alert_id, "expected", note)


@alerts_app.command("invalid")
def invalid(alert_id: AlertId, note: Note = None) -> None:
    """Mark an alert invalid (a false alarm) and resolve it; the runs it covered no longer
    raise it."""
    _mark(alert_id, "invalid", note)


@alerts_app.command("deliver")
def deliver_outbox() -> None:
    """Send what waits in the outbox now (also done every minute by alert_delivery_sensor)."""
    from metrics_pipeline.alerts.config import load_alerting
    from metrics_pipeline.alerts.delivery import build_senders
    from metrics_pipeline.alerts.lifecycle import Signals
    from metrics_pipeline.alerts.service import process

    settings = Settings.from_env()
    with bad_input():
        config = load_alerting(settings.alerting_config)
    outcome = process(
        _warehouse(), config, Signals(), settings.clock(), build_senders(config, Settings.secret)
    )
    console.print(notifications_table(outcome.alerts, outcome.pending, "still waiting"))
    raise typer.Exit(1 if outcome.pending.height else 0)
