"""The capacity of one run whose load varies (a stepped or ramping test): the peak throughput
and the load at the peak from the Universal Scalability Law, and the load at which p95 crosses
its SLA (``capacity``, one row per run).

The load is the concurrency the service saw, measured per time window by Little's law: the
mean number of requests in flight is the time they spent in the service per second of window,

    load = sum of the window's request latencies / window length = arrival rate x mean latency,

each request counted in the window its timestamp falls in. It needs no tool metric, so it is
the same for every tool (per-request rows, else the tool's interval rows: count x mean / the
interval length), for closed tests (virtual users, threads; with think time the users are more
than the requests in flight) and for open tests driven by an arrival rate, where the number of
virtual users says little about the load. The throughput is the window's successful requests
per second: failures that return fast would otherwise look like capacity. The p95 of each
endpoint per window is that of its successful requests, as in the SLA evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from metrics_pipeline.analysis.intervals import one_source
from metrics_pipeline.analysis.kpi_catalog import KpiCatalog
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import ALL_ENDPOINTS
from metrics_pipeline.stats.capacity import (
    ABOVE_AT_LOWEST,
    BOOTSTRAP_REPLICATES,
    CROSSED,
    NO_FIT,
    NOT_REACHED,
    PEAK,
    Capacity,
    SlaCrossing,
    estimate_capacity,
    sla_crossing,
)
from metrics_pipeline.storage import Warehouse

LOAD_MEASURE = "concurrency"
# About this many windows per run: enough points for the fit and its bootstrap, each long
# enough to hold many requests.
TARGET_WINDOWS = 30
MIN_WINDOW_S = 1.0
# Little's law over a window is off by about one latency per request straddling its edges:
# a window at least this many mean latencies long keeps that under a few per cent.
LATENCY_WINDOWS = 10
# A window whose load lies between its neighbours', which differ by this many times more than
# each differs from its own other neighbour and than neighbours typically differ, straddles a
# step of a stepped test (see _steady).
STEP_JUMP = 3.0
# Fewest successful requests of an endpoint in a window for its p95 to count.
MIN_P95_REQUESTS = 20
SLA_METRIC = "latency_p95"
# Catalog outcomes besides SlaCrossing's: no latency_p95 entry applies, or no window has a p95.
NO_SLA, NO_DATA = "no_sla", "no_data"
REQUEST_COLUMNS = ("ts", "endpoint", "ok", "latency_ms")


@dataclass(frozen=True)
class LoadWindows:
    """A run cut into time windows.

    ``totals``: one row per window (``window``, ``load``, ``throughput``); ``p95``: one row per
    window and endpoint with enough successful requests (``window``, ``endpoint``, ``p95``,
    ``load``); ``source``: ``requests`` or ``interval_stats`` (empty when neither has rows).
    """

    window_s: float
    totals: pl.DataFrame
    p95: pl.DataFrame
    source: str


def _no_windows(source: str = "", window_s: float = math.nan) -> LoadWindows:
    return LoadWindows(
        window_s,
        pl.DataFrame(schema={"window": pl.Int64, "load": pl.Float64, "throughput": pl.Float64}),
        pl.DataFrame(
            schema={
                "window": pl.Int64,
                "endpoint": pl.String,
                "p95": pl.Float64,
                "load": pl.Float64,
            }
        ),
        source,
    )


def windows_from_requests(requests: pl.DataFrame | pl.LazyFrame) -> LoadWindows:
    """Per-request rows cut into whole windows of equal length from the first request on.

    The window is the run's span over :data:`TARGET_WINDOWS`, at least :data:`MIN_WINDOW_S`
    and :data:`LATENCY_WINDOWS` mean latencies; the last, partial window is dropped (its rate
    would look low).
    """
    rows = (
        requests.lazy()
        .select(REQUEST_COLUMNS)
        .filter(pl.col("ts").is_not_null() & pl.col("latency_ms").is_not_null())
    )
    # Latencies summed as whole microseconds: an integer sum is the same in any order, and
    # the streaming engine adds a group's partial sums in the order its threads finish (float
    # sums then differ in the last bits between two builds of the same run, and so the fit).
    micros = (pl.col("latency_ms") * 1000).round().cast(pl.Int64)
    span = rows.select(
        first=pl.col("ts").min(),
        last=pl.col("ts").max(),
        mean_ms=micros.sum() / pl.len() / 1000,
    ).collect()
    first, last, mean_ms = span.row(0)
    if first is None:
        return _no_windows()
    span_s = (last - first).total_seconds()
    window_s = max(span_s / TARGET_WINDOWS, LATENCY_WINDOWS * mean_ms / 1000, MIN_WINDOW_S)
    width_us = round(window_s * 1e6)
    whole = int(span_s * 1e6 // width_us)
    windowed = rows.with_columns(
        window=(pl.col("ts") - pl.lit(first)).dt.total_microseconds() // width_us
    ).filter(pl.col("window") < whole)
    totals = _steady(
        windowed.group_by("window")
        .agg(
            load=micros.sum() / 1e6 / window_s,
            throughput=pl.col("ok").sum().cast(pl.Float64) / window_s,
        )
        .sort("window")
        .collect()
    )
    p95 = (
        windowed.filter(pl.col("ok"))
        .group_by("window", "endpoint")
        .agg(p95=pl.col("latency_ms").quantile(0.95, interpolation="linear"), n=pl.len())
        .filter(pl.col("n") >= MIN_P95_REQUESTS)
        .drop("n")
        .collect()
    )
    return LoadWindows(window_s, totals, _with_load(p95, totals), "requests")


def windows_from_intervals(intervals: pl.DataFrame) -> LoadWindows:
    """The tool's own interval rows (Artillery's 10 s periods) as the windows, for runs without
    per-request rows; rows without a length (whole-run summaries) cannot give a load."""
    rows = intervals.filter(
        pl.col("ts").is_not_null()
        & pl.col("interval_s").is_not_null()
        & (pl.col("interval_s") > 0)
        & pl.col("mean").is_not_null()
        & (pl.col("count") > 0)
    )
    if rows.height == 0:
        return _no_windows("interval_stats")
    rows = one_source(rows, by=("endpoint",))  # one run's rows
    endpoints = rows.filter(pl.col("endpoint") != ALL_ENDPOINTS)
    # Totals from the per-endpoint rows when there are any, else from the "(all)" rows.
    counted = endpoints if endpoints.height else rows
    per_ts = (
        counted.group_by("ts")
        .agg(
            busy_s=(pl.col("count") * pl.col("mean")).sum() / 1000,
            ok=(pl.col("count") - pl.col("errors").fill_null(0)).sum(),
            seconds=pl.col("interval_s").max(),
        )
        .sort("ts")
        .with_row_index("window")
    )
    totals = _steady(
        per_ts.select(
            pl.col("window").cast(pl.Int64),
            load=pl.col("busy_s") / pl.col("seconds"),
            throughput=pl.col("ok").cast(pl.Float64) / pl.col("seconds"),
        )
    )
    p95 = (
        endpoints.filter(pl.col("p95").is_not_null() & (pl.col("count") >= MIN_P95_REQUESTS))
        .join(per_ts.select("ts", "window"), on="ts")
        .select(pl.col("window").cast(pl.Int64), "endpoint", "p95")
    )
    window_s = float(per_ts["seconds"].median())
    return LoadWindows(window_s, totals, _with_load(p95, totals), "interval_stats")


def _steady(totals: pl.DataFrame) -> pl.DataFrame:
    """The windows (in time order) without those that straddle a step of the load.

    A window half at one level of a stepped test and half at the next shows the mean of both
    loads and of both throughputs: a point on the chord, below the concave throughput curve,
    which pulls the fitted peak down. Such a window lies between its neighbours, and they
    differ by much more (:data:`STEP_JUMP` times) than each differs from its own other
    neighbour, both being on a level, and than neighbouring windows typically differ (the
    median difference: within a level, since a level lasts several windows). In a ramp the
    neighbours' differences are all alike, twice the median at most, so no window is dropped;
    the first and last two are always kept.
    """
    n = totals["load"].to_numpy()
    keep = np.ones(n.size, dtype=bool)
    if n.size >= 5:
        middle = n[2:-2]
        before, after = n[1:-3], n[3:-1]
        between = (middle - before) * (after - middle) > 0
        around = np.maximum(np.abs(before - n[:-4]), np.abs(n[4:] - after))
        typical = float(np.median(np.abs(np.diff(n))))
        jump = np.abs(after - before) > STEP_JUMP * np.maximum(around, typical)
        keep[2:-2] = ~(between & jump)
    return totals.filter(pl.Series(keep))


def _with_load(p95: pl.DataFrame, totals: pl.DataFrame) -> pl.DataFrame:
    return p95.join(totals.select("window", "load"), on="window").sort("window", "endpoint")


@dataclass(frozen=True)
class SlaResult:
    """The latency_p95 catalog entry and endpoint whose SLA the load reached first."""

    status: str
    kpi: str | None = None
    endpoint: str | None = None
    target_ms: float | None = None
    crossing: SlaCrossing | None = None

    def describe(self, load_max: float) -> str:
        where = f"{self.endpoint} p95 > {self.target_ms:g} ms ({self.kpi})" if self.kpi else ""
        if self.status == CROSSED:
            return f"SLA {where} crossed at {self.crossing.load:,.3g} concurrent requests"
        if self.status == ABOVE_AT_LOWEST:
            return f"SLA {where} already missed at the lowest tested load"
        if self.status == NOT_REACHED:
            return f"SLA {where} not reached up to {load_max:,.3g} concurrent requests"
        if self.status == NO_SLA:
            return "no latency_p95 SLA applies"
        return "no window with enough requests for a p95"


def sla_load(windows: LoadWindows, catalog: KpiCatalog, run: dict) -> SlaResult:
    """The first SLA the load broke: of every ``latency_p95`` catalog entry that applies to the
    run and each of its endpoints, the crossing at the lowest load (one already missed at the
    lowest load first); when none was crossed, the one whose p95 came closest to its target."""
    entries = [
        (name, entry)
        for name, entry in sorted(catalog.kpis.items())
        if entry.metric == SLA_METRIC
        and entry.scope.matches_run(run["suite"], run["scenario"], run["environment"])
    ]
    if not entries:
        return SlaResult(NO_SLA)
    candidates = []
    for endpoint, points in windows.p95.group_by("endpoint", maintain_order=True):
        if points.height < 2:
            continue
        for name, entry in entries:
            if not entry.scope.matches_endpoint(endpoint[0]):
                continue
            crossing = sla_crossing(points["load"], points["p95"], entry.target)
            closeness = float(points["p95"].max()) / entry.target
            candidates.append(
                (SlaResult(crossing.status, name, endpoint[0], entry.target, crossing), closeness)
            )
    if not candidates:
        return SlaResult(NO_DATA)
    rank = {ABOVE_AT_LOWEST: 0, CROSSED: 1, NOT_REACHED: 2}

    def order(candidate: tuple[SlaResult, float]) -> tuple:
        result, closeness = candidate
        load = result.crossing.load if result.status == CROSSED else 0.0
        return (rank[result.status], load, -closeness, result.kpi, result.endpoint)

    return min(candidates, key=order)[0]


def capacity_row(
    run: dict,
    windows: LoadWindows,
    catalog: KpiCatalog,
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> tuple[pl.DataFrame, Capacity, SlaResult | None]:
    """The run's ``capacity`` row from its windows (pure: no store is read).

    ``run`` is the run's row of ``runs``. The SLA crossing is looked for only when the load
    varies enough for a fit: along a constant load there is nothing to cross.
    """
    totals = windows.totals
    capacity = estimate_capacity(
        totals["load"], totals["throughput"], replicates=replicates, seed=seed
    )
    sla = sla_load(windows, catalog, run) if capacity.status != NO_FIT else None
    fit = capacity.fit
    summary = capacity.describe()
    if sla is not None:
        summary += f"; {sla.describe(capacity.load_max)}"
    row = {
        "run_id": run["run_id"],
        "suite": run["suite"],
        "scenario": run["scenario"],
        "environment": run["environment"],
        "status": capacity.status,
        "reason": capacity.reason or None,
        "summary": summary,
        "load_measure": LOAD_MEASURE,
        "source": windows.source or None,
        "window_s": windows.window_s,
        "n_windows": totals.height,
        "load_min": capacity.load_min,
        "load_max": capacity.load_max,
        "model": fit and fit.model,
        "usl_lambda": fit and fit.lambda_,
        "usl_sigma": fit and fit.sigma,
        "usl_kappa": fit and fit.kappa,
        "kappa_p_value": fit and fit.kappa_p_value,
        "r_squared": fit and fit.r_squared,
        "peak_is_bound": None if capacity.status == NO_FIT else capacity.status != PEAK,
        "peak_rps": capacity.peak_throughput,
        "peak_rps_low": capacity.peak_throughput_low,
        "peak_rps_high": capacity.peak_throughput_high,
        "peak_load": capacity.peak_load,
        "peak_load_low": capacity.peak_load_low,
        "peak_load_high": capacity.peak_load_high,
        "confidence": None if capacity.status == NO_FIT else capacity.confidence,
        "sla_kpi": sla and sla.kpi,
        "sla_endpoint": sla and sla.endpoint,
        "sla_target_ms": sla and sla.target_ms,
        "sla_status": sla and sla.status,
        "sla_load": sla and sla.crossing and sla.crossing.load,
    }
    # NaN (unknown) and inf (not bounded by the data) are both stored as null: Postgres and
    # readers of the table treat a number as a number.
    row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
    return conform("capacity", pl.DataFrame([row], infer_schema_length=None)), capacity, sla


@dataclass(frozen=True)
class CapacityResult:
    """The run's ``capacity`` row, the estimate and the SLA crossing behind it."""

    table: pl.DataFrame
    capacity: Capacity
    sla: SlaResult | None


def fit_run(warehouse: Warehouse, run_id: str, catalog: KpiCatalog) -> CapacityResult:
    """Cut the run into windows (its requests, else the tool's intervals), fit the law, find
    the SLA crossing, and replace the run's ``capacity`` partition with the row."""
    run = warehouse.read("runs", [run_id]).row(0, named=True)
    windows = windows_from_requests(warehouse.scan("requests", [run_id]))
    if windows.totals.height == 0:
        windows = windows_from_intervals(warehouse.read("interval_stats", [run_id]))
    table, capacity, sla = capacity_row(run, windows, catalog)
    warehouse.write_partition("capacity", run_id, table)
    warehouse.refresh_catalog()
    return CapacityResult(table, capacity, sla)
