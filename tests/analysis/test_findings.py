"""History analyses on labelled series: steps, drifts, capacity and the findings they give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from metrics_pipeline.analysis.findings import (
    find_change_points,
    find_drifts,
    findings,
    forecast_series,
    sparkline,
)

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def series_of(values, metric="latency_p95", endpoint="/api/orders") -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "suite": "checkout",
            "scenario": "browse",
            "environment": "staging",
            "endpoint": endpoint,
            "metric": metric,
            "run_id": [f"r{i:03d}" for i in range(n)],
            "started_at": [T0 + timedelta(days=i) for i in range(n)],
            "git_sha": [f"{i:040x}" for i in range(n)],
            "service_version": [f"1.{i}" for i in range(n)],
            "value": np.asarray(values, dtype=float),
        }
    )


def noisy(level, n, rng, sigma=0.03):
    return level * rng.lognormal(0, sigma, n)


def test_a_step_is_found_at_its_run_with_version_and_rollback_advice():
    rng = np.random.default_rng(1)
    values = np.concatenate([noisy(100, 25, rng), noisy(140, 15, rng)])
    series = series_of(values)
    points = find_change_points(series)
    (point,) = points.rows(named=True)
    assert abs(int(point["run_id"][1:]) - 25) <= 1 and point["worse"]
    assert 0.3 < point["change"] < 0.5
    # Its size with a 95 % interval around the true +40 %, and the run just before it.
    assert point["change_low"] < 0.4 < point["change_high"]
    assert int(point["previous_run_id"][1:]) == int(point["run_id"][1:]) - 1
    assert point["previous_service_version"] == f"1.{int(point['previous_run_id'][1:])}"
    # A step makes a trend test significant too: without the steps it was also a drift "with
    # no single step"; since the step there is none.
    assert find_drifts(series).height == 1
    drifts = find_drifts(series, points)
    assert drifts.height == 0
    found = findings(series, points, drifts)
    assert set(found["kind"]) == {"change_point"}
    (finding,) = found.filter(pl.col("kind") == "change_point").rows(named=True)
    assert finding["severity"] == "warning"
    assert point["service_version"] in finding["summary"] and "Roll back" in finding["action"]
    assert point["previous_run_id"] in finding["summary"] and "95 % CI" in finding["summary"]


def test_lower_throughput_is_worse_and_better_latency_is_an_improvement():
    rng = np.random.default_rng(2)
    down = series_of(np.concatenate([noisy(50, 20, rng), noisy(35, 20, rng)]), "throughput_rps")
    (point,) = find_change_points(down).rows(named=True)
    assert point["worse"]
    # Worse is positive for throughput too, and so is its interval around the true +30 %.
    assert point["change_low"] < 0.3 < point["change_high"]
    faster = series_of(np.concatenate([noisy(100, 20, rng), noisy(60, 20, rng)]))
    points = find_change_points(faster)
    assert points["worse"].to_list() == [False]
    (finding,) = findings(faster, points, find_drifts(faster)).rows(named=True)
    assert finding["severity"] == "info" and "baseline update" in finding["action"]


def test_slow_drift_is_reported_and_noise_is_not():
    rng = np.random.default_rng(3)
    drifting = series_of(noisy(100, 40, rng, 0.01) * (1 + 0.01 * np.arange(40)))
    (drift,) = find_drifts(drifting).rows(named=True)
    assert drift["worse"] and 0.3 < drift["total_change"] < 0.5
    assert find_drifts(series_of(noisy(100, 40, rng))).height == 0
    # A drift that goes on after a step is a drift of the runs since the step.
    stepped = series_of(
        np.r_[noisy(80, 20, rng, 0.01), noisy(100, 40, rng, 0.01) * (1 + 0.01 * np.arange(40))]
    )
    steps = find_change_points(stepped)
    (drift,) = find_drifts(stepped, steps).rows(named=True)
    assert drift["first_run"] == steps["run_id"][-1] and drift["last_run"] == "r059"


def test_capacity_saturation_ahead_and_lasting_headroom():
    rng = np.random.default_rng(4)
    cpu = series_of(40 + 0.8 * np.arange(30) + rng.normal(0, 0.5, 30), "cpu_pct", "(resources)")
    idle = series_of(12 + rng.normal(0, 1, 30), "mem_pct", "(resources)")
    both = pl.concat([cpu, idle])
    found = findings(both, find_change_points(both).head(0), find_drifts(both).head(0))
    kinds = dict(zip(found["metric"], found["kind"], strict=True))
    assert kinds == {"cpu_pct": "capacity", "mem_pct": "headroom"}
    capacity = found.filter(pl.col("kind") == "capacity").row(0, named=True)
    # 40 + 0.8 t reaches 80 % at t = 50, i.e. about 21 days after the last of 30 days.
    days = float(capacity["summary"].split(" in ")[1].split()[0])
    assert 15 <= days <= 27


def test_a_step_in_usage_is_no_growth_toward_saturation():
    # CPU flat at 40 % for 14 days, then flat at 70 % for 16: fitted across the step, it was
    # "forecast to reach 80 % in 6 days" (critical); since the step it is flat.
    rng = np.random.default_rng(1)
    cpu = series_of(
        np.r_[40 + rng.normal(0, 1, 14), 70 + rng.normal(0, 1, 16)], "cpu_pct", "(resources)"
    )
    steps = find_change_points(cpu)
    assert steps["run_id"].to_list() == ["r014"]
    assert "capacity" in set(findings(cpu, steps.head(0), find_drifts(cpu).head(0))["kind"])
    assert (
        findings(cpu, steps, find_drifts(cpu, steps)).filter(pl.col("kind") == "capacity").height
        == 0
    )
    # A step to saturation a few runs ago (too few to forecast from) is critical at once.
    saturated = series_of(
        np.r_[40 + rng.normal(0, 1, 25), 92 + rng.normal(0, 1, 5)], "cpu_pct", "(resources)"
    )
    points = find_change_points(saturated)
    (row,) = (
        findings(saturated, points, find_drifts(saturated, points))
        .filter(pl.col("kind") == "capacity")
        .rows(named=True)
    )
    assert row["severity"] == "critical" and "at or above 80 %" in row["summary"]
    # So is its forecast: flat at 70 %, not rising to 100 %.
    table = forecast_series(cpu, horizon=30, steps=steps)
    assert abs(table["mean"][-1] - 70) < 5


def test_forecasts_stay_within_what_the_metric_can_be():
    # A noisy error rate near 0 forecast by a random walk: its interval went below 0.
    rates = [
        0.018,
        0.013,
        0.005,
        None,
        None,
        0.005,
        0.012,
        0.012,
        0.008,
        None,
        0.008,
        0.01,
        0.018,
        0.005,
    ]
    table = forecast_series(series_of(np.array(rates, dtype=float), "error_rate"), horizon=30)
    assert table["lower"].min() >= 0 and table["mean"].min() >= 0 and table["upper"].max() <= 1


def test_forecasts_extend_each_series_day_by_day():
    rng = np.random.default_rng(5)
    table = forecast_series(series_of(200 + 1.5 * np.arange(40) + rng.normal(0, 3, 40)), horizon=10)
    assert table["step"].to_list() == list(range(1, 11))
    assert (table["lower"] <= table["mean"]).all() and (table["mean"] <= table["upper"]).all()
    assert table["ts"][0] == T0 + timedelta(days=40)
    assert abs(table["mean"][9] - (200 + 1.5 * 49)) < 15


def test_sparkline_spans_the_range():
    assert sparkline([1, 2, 3, float("nan"), 8]) == "▁▂▃ █"


def test_resource_moving_with_latency_is_reported_as_an_association():
    rng = np.random.default_rng(6)
    cpu = 40 + 20 * rng.random(20)
    latency = series_of(2.0 * cpu + rng.normal(0, 2, 20))
    usage = series_of(cpu, "cpu_pct", "(resources)")
    both = pl.concat([latency, usage])
    found = findings(both, find_change_points(both).head(0), find_drifts(both).head(0))
    (row,) = found.filter(pl.col("kind") == "correlation").rows(named=True)
    assert "cpu_pct" in row["summary"] and "not proof of cause" in row["confidence"]


def test_a_constant_resource_moves_with_nothing():
    # Its correlation is NaN, which passed the filter: "moves with mem_pct (Spearman rho +nan)".
    latency = series_of(50.0 + np.arange(20.0))
    usage = series_of(np.full(20, 20.0), "mem_pct", "(resources)")
    both = pl.concat([latency, usage])
    found = findings(both, find_change_points(both).head(0), find_drifts(both).head(0))
    assert found.filter(pl.col("kind") == "correlation").height == 0


def test_kpi_days_outside_their_weekly_pattern_are_anomalies():
    rng = np.random.default_rng(7)
    days = 42
    weekly = 100 + 20 * np.sin(2 * np.pi * np.arange(days) / 7) + rng.normal(0, 2, days)
    weekly[30] += 60
    kpis = pl.DataFrame(
        {
            "ts": [T0 + timedelta(days=i, hours=9) for i in range(days)],
            "metric": "signups",
            "value": weekly,
            "dims": '{"plan": "pro"}',
        }
    )
    empty_series = series_of([1.0]).head(0)
    found = findings(
        empty_series, find_change_points(empty_series), find_drifts(empty_series), kpis=kpis
    )
    anomalies = found.filter(pl.col("kind") == "anomaly")
    assert (
        anomalies.height == 1
        and (T0 + timedelta(days=30)).strftime("%Y-%m-%d") in anomalies["summary"][0]
    )
