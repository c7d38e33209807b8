"""The nightly and weekly steps over the whole history: the SQL marts, change points, drifts,
forecasts and findings. Each reads every valid run's summary and resource usage, computes with
``analysis.findings`` and rewrites its snapshot table whole."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from metrics_pipeline.analysis.findings import (
    find_change_points,
    find_drifts,
    findings,
    forecast_series,
)
from metrics_pipeline.analysis.series import resource_series, run_series
from metrics_pipeline.stages.triage import standing_change_points
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.sql_models import Model, discover, ordered


def all_series(warehouse: Warehouse) -> pl.DataFrame:
    """Every per-run history: endpoint metrics from ``run_summary``, resource usage from
    ``resources`` (``analysis.series``)."""
    runs = warehouse.read("runs")
    return pl.concat(
        [
            run_series(runs, warehouse.read("run_summary")),
            resource_series(runs, warehouse.scan("resources")),
        ]
    )


def build_marts(warehouse: Warehouse, models: list[Model] | None = None) -> dict[str, int]:
    """Every SQL model of ``dbt_like_sql/`` in dependency order (DuckDB, and Postgres when
    mirrored); the row count of each table."""
    return warehouse.build_marts(models if models is not None else ordered(discover()))


@dataclass(frozen=True)
class HistoryTable:
    """A snapshot table and the series it was computed from (for sparklines)."""

    table: pl.DataFrame
    series: pl.DataFrame


def change_points(warehouse: Warehouse) -> HistoryTable:
    """Steps in every history, with the run and version that started each (``change_points``)."""
    series = all_series(warehouse)
    table = find_change_points(series)
    warehouse.write_snapshot("change_points", table)
    return HistoryTable(table, series)


def drifts(warehouse: Warehouse) -> HistoryTable:
    """Slow significant trends (``drifts``), each series since its last step (the stored
    ``change_points`` but those marked invalid)."""
    series = all_series(warehouse)
    table = find_drifts(series, standing_change_points(warehouse))
    warehouse.write_snapshot("drifts", table)
    return HistoryTable(table, series)


def forecasts(warehouse: Warehouse) -> pl.DataFrame:
    """30-day forecasts with prediction intervals of every history since its last step (the
    nightly's ``change_points`` but those marked invalid) (``forecasts``)."""
    table = forecast_series(all_series(warehouse), steps=standing_change_points(warehouse))
    warehouse.write_snapshot("forecasts", table)
    return table


def find(warehouse: Warehouse, *, anomaly_sensitivity: float) -> pl.DataFrame:
    """What to do, from the stored change points and drifts, capacity and KPI anomalies
    (``findings``)."""
    table = findings(
        all_series(warehouse),
        warehouse.read("change_points"),
        warehouse.read("drifts"),
        steps=standing_change_points(warehouse),
        kpis=warehouse.read("kpi_points"),
        anomaly_sensitivity=anomaly_sensitivity,
    )
    warehouse.write_snapshot("findings", table)
    warehouse.refresh_catalog()
    return table
