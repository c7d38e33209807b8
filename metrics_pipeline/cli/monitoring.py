"""Monitoring: write the Prometheus, Alertmanager and Grafana files; serve the exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metrics_pipeline.cli.output import command_group, console
from metrics_pipeline.settings import Settings

monitoring_app = command_group(
    "Prometheus rules and configs, Alertmanager routing, Grafana dashboards."
)


def write_monitoring(settings: Settings, out: Path, webhook_url: str | None):
    from metrics_pipeline.observability import write_monitoring

    return write_monitoring(out, postgres_url=settings.postgres_url, webhook_url=webhook_url)


def print_monitoring(files) -> None:
    console.print(
        f"Prometheus rules, prometheus.yml, alertmanager.yml: {files.prometheus.parent}"
        f"  (start both: {files.run_script}; exporter: metrics-pipeline exporter)"
    )
    console.print(
        f"Grafana dashboards: {files.dashboards[0].parent}"
        f"  (provisioning: {files.datasource.parent.parent})"
    )


@monitoring_app.command("write")
def monitoring_write(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder (default: METRICS_HOME/monitoring).")
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            envvar="METRICS_ALERTMANAGER_WEBHOOK_URL",
            help="Where Alertmanager posts alerts (default: http://127.0.0.1:9095/alerts).",
        ),
    ] = None,
) -> None:
    """Write the rules, prometheus.yml, alertmanager.yml, the run script and the Grafana
    dashboards with their provisioning files."""
    settings = Settings.from_env()
    print_monitoring(write_monitoring(settings, out or settings.home / "monitoring", webhook_url))


def exporter(
    port: Annotated[int, typer.Option(help="Port of /metrics.")] = 9464,
    # Loopback unless told otherwise (a container that Prometheus scrapes from another): the
    # findings name suites, endpoints and their regressions.
    addr: Annotated[
        str,
        typer.Option(help="Address to listen on (0.0.0.0: every interface, e.g. in a container)."),
    ] = "127.0.0.1",
) -> None:
    """Serve the pipeline's findings (verdicts, SLA compliance, alerts, ingest lag) as
    Prometheus metrics, read from the warehouse at every scrape."""
    from metrics_pipeline.observability.exporter import serve
    from metrics_pipeline.storage import warehouse_at

    settings = Settings.from_env()
    # The Parquet warehouse is always there; the exporter needs no Postgres connection.
    location = settings.warehouse_location
    warehouse = warehouse_at(
        location,
        settings.warehouse_root,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
    )
    server, thread = serve(warehouse, port, addr)
    console.print(f"serving http://{addr}:{port}/metrics from {location}")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
