"""The nightly and weekly analyses over run histories: change points, drifts, forecasts, and
the findings people act on.

Each function takes the long series table of ``series.run_series`` (one value per run for each
combination x endpoint x metric) and returns a warehouse table. A finding says what changed,
since which run and version, how sure we are, and what to do.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from metrics_pipeline.analysis.series import RESOURCES, SERIES_KEYS, iter_series
from metrics_pipeline.common.severity import change_severity
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.stats import (
    PERFORMANCE_HORIZON,
    change_points,
    correlate,
    detect_anomalies,
    detect_drift,
    forecast,
    time_to_threshold,
)

# The kinds of finding the history analyses make (the findings table's; one alert each).
FINDING_KINDS = frozenset(
    {"change_point", "drift", "capacity", "headroom", "correlation", "anomaly"}
)

# Metrics where a lower value is worse; everything else (latency, error rate, usage) is worse up.
LOWER_IS_WORSE = frozenset({"throughput_rps"})
# Fewest runs for a history analysis: with fewer, no test can tell a step from noise.
MIN_RUNS = 8
# Resource usage above this share of capacity is saturation; below HEADROOM for a whole history
# the service is over-provisioned.
SATURATION_PCT = 80.0
HEADROOM_PCT = 30.0
CAPACITY_METRICS = frozenset({"cpu_pct", "mem_pct", "gpu_pct"})
SPARK = "▁▂▃▄▅▆▇█"


def worse_sign(metric: str) -> float:
    return -1.0 if metric in LOWER_IS_WORSE else 1.0


def sparkline(values) -> str:
    """A tiny text chart of a series for markdown tables (NaN shown as a space)."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ""
    low, high = finite.min(), finite.max()
    span = high - low or 1.0
    return "".join(
        " " if not np.isfinite(v) else SPARK[int((v - low) / span * (len(SPARK) - 1))]
        for v in values
    )


def find_change_points(series: pl.DataFrame) -> pl.DataFrame:
    """Steps in every series with at least MIN_RUNS runs, with the run that started each."""
    rows = []
    for key, frame in iter_series(series, MIN_RUNS):
        sign = worse_sign(key["metric"])
        values = frame["value"].to_numpy()
        for point in change_points(values):
            run = frame.row(point.index, named=True)
            # The last run with a value before the change (missing runs are skipped).
            earlier = np.flatnonzero(np.isfinite(values[: point.index]))
            previous = frame.row(int(earlier[-1]), named=True) if earlier.size else {}
            low, high = sorted((sign * point.change_low, sign * point.change_high))
            rows.append(
                key
                | {k: run[k] for k in ("run_id", "started_at", "git_sha", "service_version")}
                | {
                    f"previous_{k}": previous.get(k)
                    for k in ("run_id", "git_sha", "service_version")
                }
                | {
                    "before": point.before,
                    "after": point.after,
                    "change": sign * point.change,
                    "change_low": low,
                    "change_high": high,
                    "p_value": point.p_value,
                    "worse": sign * point.change > 0,
                }
            )
    return conform("change_points", pl.DataFrame(rows, infer_schema_length=None))


def find_drifts(series: pl.DataFrame, steps: pl.DataFrame | None = None) -> pl.DataFrame:
    """Slow, significant and material trends (Mann-Kendall + Theil-Sen), in each series
    since its last step in ``steps`` (``find_change_points``' table): a step makes a trend
    test significant too, and was reported twice, as a step and as a drift "with no single
    step"; a series with fewer than MIN_RUNS runs since its step has no drift to tell."""
    last_step = _last_steps(steps)
    rows = []
    for key, frame in iter_series(series, MIN_RUNS):
        frame = _since_last_step(key, frame, last_step)
        if frame.height < MIN_RUNS:
            continue
        drift = detect_drift(frame["value"].to_numpy())
        if drift is None:
            continue
        sign = worse_sign(key["metric"])
        rows.append(
            key
            | {
                "runs": frame.height,
                "first_run": frame["run_id"][0],
                "last_run": frame["run_id"][-1],
                "slope_per_run": drift.slope,
                "total_change": sign * drift.total_change,
                "p_value": drift.p_value,
                "worse": sign * drift.total_change > 0,
            }
        )
    return conform("drifts", pl.DataFrame(rows, infer_schema_length=None))


def _last_steps(steps: pl.DataFrame | None) -> dict[tuple, str]:
    """The run of each series' last step (by ``SERIES_KEYS``)."""
    if steps is None or steps.height == 0:
        return {}
    last = steps.sort("started_at").group_by(list(SERIES_KEYS)).agg(pl.col("run_id").last())
    return {row[:-1]: row[-1] for row in last.select(*SERIES_KEYS, "run_id").rows()}


def _since_last_step(key: dict, frame: pl.DataFrame, last_step: dict[tuple, str]) -> pl.DataFrame:
    """A series' runs from its last step on (all of them without one): the runs before the
    step were at another level, and a trend fitted across it reads the step as growth."""
    runs = frame["run_id"].to_list()
    run = last_step.get(tuple(key[k] for k in SERIES_KEYS))
    return frame.slice(runs.index(run)) if run in runs else frame


def _in_range(values: np.ndarray, metric: str) -> np.ndarray:
    """Forecast values inside what the metric can be: never below 0; a rate no more than 1,
    a percentage no more than 100 (a random walk's interval grows past both)."""
    high = 1.0 if metric == "error_rate" else 100.0 if metric.endswith("_pct") else np.inf
    return np.clip(values, 0.0, high)


def daily(frame: pl.DataFrame) -> pl.DataFrame:
    """One value per day (the mean of that day's runs), days without runs as nulls."""
    per_day = frame.group_by(pl.col("started_at").dt.truncate("1d").alias("day")).agg(
        pl.col("value").mean()
    )
    days = pl.DataFrame(
        {"day": pl.datetime_range(per_day["day"].min(), per_day["day"].max(), "1d", eager=True)}
    )
    return days.join(per_day, on="day", how="left").sort("day")


def forecast_series(
    series: pl.DataFrame, horizon: int = PERFORMANCE_HORIZON, steps: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Daily forecasts with prediction intervals for every series with MIN_RUNS days of data
    since its last step in ``steps`` (the ``change_points`` table), within the metric's range
    (:func:`_in_range`)."""
    last_step = _last_steps(steps)
    rows = []
    for key, frame in iter_series(series, MIN_RUNS):
        days = daily(_since_last_step(key, frame, last_step))
        if days["value"].drop_nulls().len() < MIN_RUNS:
            continue
        result = forecast(days["value"].to_numpy(), horizon)
        mean, lower, upper = (
            _in_range(np.asarray(v, float), key["metric"])
            for v in (result.mean, result.lower, result.upper)
        )
        last: datetime = days["day"][-1]
        rows += [
            key
            | {
                "ts": last + timedelta(days=step),
                "step": step,
                "mean": float(mean[step - 1]),
                "lower": float(lower[step - 1]),
                "upper": float(upper[step - 1]),
                "method": result.method,
            }
            for step in range(1, horizon + 1)
        ]
    return conform("forecasts", pl.DataFrame(rows, infer_schema_length=None))


def _where(key: dict) -> str:
    return (
        f"{key['metric']} of {key['endpoint']} "
        f"({key['suite']} / {key['scenario']} / {key['environment']})"
    )


def findings(
    series: pl.DataFrame,
    points: pl.DataFrame,
    drifts: pl.DataFrame,
    *,
    steps: pl.DataFrame | None = None,
    kpis: pl.DataFrame | None = None,
    anomaly_sensitivity: float = 3.5,
    capacity_horizon: int = 90,
) -> pl.DataFrame:
    """Recommendations from the history: rollback advice for steps, investigation of drifts,
    right-sizing from resource usage (saturation ahead, or lasting headroom), resources that
    move with latency, and KPI anomalies. Capacity reads each resource since its last step in
    ``steps`` (default: ``points``; the stages pass the points no one marked invalid)."""
    rows = []
    for point in points.iter_rows(named=True):
        key = {k: point[k] for k in SERIES_KEYS}
        version = point["service_version"] or "unknown version"
        previous = point.get("previous_service_version") or "unknown version"
        sha = f", git {point['git_sha'][:12]}" if point["git_sha"] else ""
        if point["worse"]:
            rows.append(
                key
                | {
                    "kind": "change_point",
                    "severity": change_severity(point["change"]),
                    "summary": f"{_where(key)} got {point['change']:.0%} worse "
                    f"(95 % CI {point['change_low']:.0%} to {point['change_high']:.0%}; "
                    f"{point['before']:.4g} -> {point['after']:.4g}) since run "
                    f"{point['run_id']} ({version}{sha}), after run "
                    f"{point['previous_run_id']} ({previous}).",
                    "action": f"Roll back or bisect what changed in {version}{sha}: the first "
                    "run of the worse level.",
                }
            )
        else:
            rows.append(
                key
                | {
                    "kind": "change_point",
                    "severity": "info",
                    "summary": f"{_where(key)} improved by {-point['change']:.0%} since run "
                    f"{point['run_id']} ({version}{sha}).",
                    "action": "Refresh the baselines (metrics-pipeline baseline update) so the "
                    "gain is protected.",
                }
            )
        rows[-1] |= {
            "run_id": point["run_id"],
            "git_sha": point["git_sha"],
            "service_version": point["service_version"],
            "confidence": f"p = {point['p_value']:.2g} (corrected for the search)",
        }
    for drift in drifts.filter(pl.col("worse")).iter_rows(named=True):
        key = {k: drift[k] for k in SERIES_KEYS}
        rows.append(
            key
            | {
                "kind": "drift",
                "severity": "warning",
                "run_id": drift["last_run"],
                "summary": f"{_where(key)} drifted {drift['total_change']:.0%} worse over "
                f"{drift['runs']} runs ({drift['first_run']} .. {drift['last_run']}) with no "
                "single step.",
                "confidence": f"Mann-Kendall p = {drift['p_value']:.2g}",
                "action": "No single version is to blame: profile the service and compare "
                "resource usage across these runs.",
            }
        )
    rows += _capacity_findings(series, capacity_horizon, points if steps is None else steps)
    rows += _correlation_findings(series)
    if kpis is not None:
        rows += kpi_anomalies(kpis, sensitivity=anomaly_sensitivity)
    return conform("findings", pl.DataFrame(rows, infer_schema_length=None))


# Spearman's rho beyond this, with p below CORRELATION_ALPHA, is reported.
STRONG_CORRELATION = 0.7
CORRELATION_ALPHA = 0.01


def _correlation_findings(series: pl.DataFrame) -> list[dict]:
    """Resource usage that moves with an endpoint's p95 latency across runs (association, not
    proof of cause: it says where to look)."""
    combination = ["suite", "scenario", "environment"]
    resources = series.filter(pl.col("endpoint") == RESOURCES)
    latency = series.filter(pl.col("metric") == "latency_p95")
    pairs = latency.join(
        resources.select(*combination, "run_id", resource=pl.col("metric"), usage=pl.col("value")),
        on=[*combination, "run_id"],
    )
    rows = []
    for (suite, scenario, environment, endpoint, resource), frame in pairs.group_by(
        [*combination, "endpoint", "resource"], maintain_order=True
    ):
        if frame.height < MIN_RUNS:
            continue
        result = correlate(frame["usage"].to_numpy(), frame["value"].to_numpy())
        # Written so that NaN (a constant side has no correlation) fails it too.
        if not (
            abs(result.spearman_rho) >= STRONG_CORRELATION and result.p_value < CORRELATION_ALPHA
        ):
            continue
        key = {
            "suite": suite,
            "scenario": scenario,
            "environment": environment,
            "endpoint": endpoint,
            "metric": "latency_p95",
        }
        rows.append(
            key
            | {
                "kind": "correlation",
                "severity": "info",
                "run_id": frame["run_id"][-1],
                "summary": f"{_where(key)} moves with {resource} across {result.n} runs "
                f"(Spearman rho {result.spearman_rho:+.2f}).",
                "confidence": f"p = {result.p_value:.2g}; association, not proof of cause",
                "action": f"Look at {resource} first when this endpoint slows down.",
            }
        )
    return rows


def kpi_anomalies(kpis: pl.DataFrame, *, sensitivity: float = 3.5, period: int = 7) -> list[dict]:
    """Findings for KPI points (business metrics) that leave their usual daily pattern.

    Each metric x dims series is averaged per day; days are checked with
    ``detect_anomalies`` (STL residuals with a weekly period when there are two weeks of data).
    """
    rows = []
    for (metric, dims), frame in kpis.group_by(["metric", "dims"], maintain_order=True):
        days = daily(frame.rename({"ts": "started_at"}))
        if days["value"].drop_nulls().len() < MIN_RUNS:
            continue
        for index in detect_anomalies(
            days["value"].to_numpy(), period=period, sensitivity=sensitivity
        ):
            day = days.row(index, named=True)
            rows.append(
                {
                    "kind": "anomaly",
                    "severity": "warning",
                    "metric": metric,
                    "endpoint": dims,
                    "summary": f"KPI {metric} {dims} was {day['value']:.4g} on "
                    f"{day['day']:%Y-%m-%d}, outside its usual pattern.",
                    "confidence": f"robust z above {sensitivity}",
                    "action": "Check what happened that day (release, incident, campaign).",
                }
            )
    return rows


def _saturated(key: dict, frame: pl.DataFrame, level: float) -> dict:
    """A resource at saturation since its last step, too recent to forecast."""
    return key | {
        "kind": "capacity",
        "severity": "critical",
        "run_id": frame["run_id"][-1],
        "summary": f"{_where(key)} is at {level:.0f} % since run {frame['run_id'][0]} (a step), "
        f"at or above {SATURATION_PCT:.0f} %.",
        "confidence": f"median of the {frame.height} runs since the step",
        "action": "Saturated: add capacity or reduce load now.",
    }


def _capacity_findings(series: pl.DataFrame, horizon: int, steps: pl.DataFrame) -> list[dict]:
    """Saturation ahead or lasting headroom of each resource, from its runs since its last
    step (a step from 40 % to 70 % is no growth toward 80 %)."""
    last_step = _last_steps(steps)
    rows = []
    usage = series.filter(pl.col("metric").is_in(sorted(CAPACITY_METRICS)))
    for key, frame in iter_series(usage, MIN_RUNS):
        frame = _since_last_step(key, frame, last_step)
        if frame.height < MIN_RUNS:
            # Too few runs since the step to forecast from; but a level already at
            # saturation is news now.
            level = float(frame["value"].median())
            if level >= SATURATION_PCT:
                rows.append(_saturated(key, frame, level))
            continue
        values = daily(frame)["value"].to_numpy()
        if np.nanmax(values) < HEADROOM_PCT:
            rows.append(
                key
                | {
                    "kind": "headroom",
                    "severity": "info",
                    "run_id": frame["run_id"][-1],
                    "summary": f"{_where(key)} stayed below {HEADROOM_PCT:.0f} % in all "
                    f"{frame.height} runs (max {np.nanmax(values):.1f} %).",
                    "confidence": f"{frame.height} runs",
                    "action": "Lasting headroom: the service can be right-sized down.",
                }
            )
            continue
        crossing = time_to_threshold(values, SATURATION_PCT, horizon=horizon)
        if crossing.steps is None or math.isnan(crossing.steps):
            continue
        rows.append(
            key
            | {
                "kind": "capacity",
                "severity": "critical" if crossing.steps <= 30 else "warning",
                "run_id": frame["run_id"][-1],
                "summary": f"{_where(key)} is forecast to reach {SATURATION_PCT:.0f} % in "
                f"{crossing.steps:.0f} days.",
                "confidence": f"{crossing.crossing_probability:.0%} probability within "
                f"{horizon} days ({crossing.forecast.method})",
                "action": "Saturation ahead: add capacity or reduce load before then.",
            }
        )
    return rows
