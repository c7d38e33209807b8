"""SLA evaluation against values computed by hand on a small frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from metrics_pipeline.alerts import KpiCatalog, evaluate_run, rolling_windows
from metrics_pipeline.analysis.sla import budget_words
from metrics_pipeline.analysis.summary import summarize_intervals
from metrics_pipeline.contracts.tables import conform, empty

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
RUN = {"run_id": "r1", "suite": "checkout", "scenario": "s", "environment": "staging"}


def requests() -> pl.DataFrame:
    # minute 0: ok 10, 20, 30 -> p50 20; minute 1: ok 40, 60 -> p50 50;
    # minute 2: ok 5 and one failure (its 1000 ms is not a latency of the service), 50 s apart:
    # the run covers most of that minute.
    rows = [
        (0, 10, True),
        (10, 20, True),
        (20, 30, True),
        (60, 40, True),
        (70, 60, True),
        (120, 5, True),
        (170, 1000, False),
    ]
    return conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": "r1",
                "ts": [T0 + timedelta(seconds=s) for s, _, _ in rows],
                "endpoint": "/a",
                "latency_ms": [float(ms) for _, ms, _ in rows],
                "ok": [ok for _, _, ok in rows],
            }
        ),
    )


def entry(metric, target, threshold, objective, direction="lower_is_better", **extra):
    return {
        "description": "d",
        "metric": metric,
        "unit": "u",
        "direction": direction,
        "target": target,
        "alert_threshold": threshold,
        "objective_pct": objective,
        "severity": "critical",
        **extra,
    }


def evaluate(kpis: dict, **frames) -> dict[str, dict]:
    table = evaluate_run(
        KpiCatalog.model_validate({"kpis": kpis}),
        RUN,
        requests=frames.get("requests", requests()),
        intervals=frames.get("intervals", empty("interval_stats")),
        resources=frames.get("resources", empty("resources")),
        kpi_points=frames.get("kpi_points", empty("kpi_points")),
        now=T0,
    )
    return {(row["kpi"], row["endpoint"]): row for row in table.iter_rows(named=True)}


def test_compliance_budget_and_status_match_hand_computed_values():
    rows = evaluate(
        {
            "p50": entry("latency_p50", 30, 45, 50),
            "strict_p50": entry("latency_p50", 10, 20, 90),
            "errors": entry("error_rate", 0.1, 0.2, 60),
            "availability": entry("availability", 90, 80, 60, "higher_is_better"),
        }
    )
    p50 = rows["p50", "/a"]
    # intervals 20, 50, 5 against 30: two of three meet it
    assert p50["intervals"] == 3
    assert p50["compliance_pct"] == pytest.approx(200 / 3)
    assert p50["error_budget_remaining"] == pytest.approx(1 - (100 / 3) / 50)
    # the run's median of 5, 10, 20, 30, 40, 60 is 25: within target
    assert p50["observed"] == pytest.approx(25.0)
    assert p50["status"] == "met"

    strict = rows["strict_p50", "/a"]
    assert strict["compliance_pct"] == pytest.approx(100 / 3)
    assert strict["error_budget_remaining"] == pytest.approx(1 - (200 / 3) / 10)
    assert strict["status"] == "breached"  # 25 is beyond the alert threshold 20

    errors = rows["errors", "/a"]
    # per minute 0/3, 0/2, 1/2: two of three at or below 0.1; the run: 1 of 7
    assert errors["compliance_pct"] == pytest.approx(200 / 3)
    assert errors["error_budget_remaining"] == pytest.approx(1 - (100 / 3) / 40)
    assert errors["observed"] == pytest.approx(1 / 7)
    assert errors["status"] == "missed"  # worse than the target, not beyond the threshold

    availability = rows["availability", "/a"]
    assert availability["observed"] == pytest.approx(600 / 7)
    assert availability["compliance_pct"] == pytest.approx(200 / 3)
    assert availability["status"] == "missed"


def test_a_sliver_of_an_interval_at_the_end_of_a_run_is_no_interval():
    # Two minutes of fast requests, then one straggler answered 0.3 s into the third minute:
    # counted as an interval, that one slow request made a third of them missed.
    fast = [T0 + timedelta(seconds=s) for s in range(0, 120, 2)]
    ts = [*fast, T0 + timedelta(seconds=120.3)]
    frame = conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": "r1",
                "ts": ts,
                "endpoint": "/a",
                "latency_ms": [50.0] * len(fast) + [331.0],
                "ok": True,
            }
        ),
    )
    rows = evaluate({"p50": entry("latency_p50", 150, 200, 99)}, requests=frame)
    p50 = rows["p50", "/a"]
    assert p50["intervals"] == 2 and p50["compliance_pct"] == 100.0 and p50["status"] == "met"
    # An endpoint seen only in such a sliver keeps it: its only interval.
    late = frame.with_columns(
        endpoint=pl.when(pl.col("latency_ms") > 300).then(pl.lit("/b")).otherwise(pl.lit("/a"))
    )
    rows = evaluate({"p50": entry("latency_p50", 150, 200, 99)}, requests=late)
    assert rows["p50", "/b"]["intervals"] == 1 and rows["p50", "/a"]["intervals"] == 2


def test_scope_selects_suites_and_endpoints_and_absent_data_is_no_data():
    other = requests().with_columns(endpoint=pl.lit("/b"))
    rows = evaluate(
        {
            "only_a": entry("latency_p50", 30, 45, 50, scope={"endpoints": ["/a"]}),
            "other_suite": entry("latency_p50", 30, 45, 50, scope={"suites": ["search"]}),
            "cpu": entry("resource:cpu_pct", 70, 90, 95),
        },
        requests=pl.concat([requests(), other]),
    )
    assert set(rows) == {("only_a", "/a"), ("cpu", "(all)")}
    assert rows["cpu", "(all)"]["status"] == "no_data"


def test_resources_and_business_kpis_go_through_the_same_evaluation():
    resources = conform(
        "resources",
        pl.DataFrame(
            {
                "run_id": "r1",
                "ts": [T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)],
                "host": ["a", "b", "a"],
                "metric": "cpu_pct",
                "value": [60.0, 90.0, 50.0],
            }
        ),
    )
    kpis = conform(
        "kpi_points",
        pl.DataFrame(
            {
                "ts": [T0, T0 + timedelta(hours=1), T0 + timedelta(days=1)],
                "metric": "signups",
                "value": [30.0, 30.0, 20.0],
                "dims": "{}",
            }
        ),
    )
    rows = evaluate(
        {
            "cpu": entry("resource:cpu_pct", 70, 90, 50),
            "signups": entry(
                "kpi:signups", 50, 20, 50, "higher_is_better", frequency="1d", aggregate="sum"
            ),
        },
        resources=resources,
        kpi_points=kpis,
    )
    cpu = rows["cpu", "(all)"]
    # minute 0: mean(60, 90) = 75 misses 70; minute 1: 50 meets it; the run: mean 62.5
    assert cpu["compliance_pct"] == pytest.approx(50.0)
    assert cpu["observed"] == pytest.approx(62.5)
    signups = rows["signups", "(all)"]
    # day 1: 60 sign-ups meet 50, day 2: 20 does not; the typical day: 40
    assert signups["compliance_pct"] == pytest.approx(50.0)
    assert signups["observed"] == pytest.approx(40.0)
    assert signups["status"] == "missed"


def test_interval_stats_are_the_intervals_of_tools_without_requests():
    intervals = conform(
        "interval_stats",
        pl.DataFrame(
            {
                "run_id": "r1",
                "ts": [T0, T0 + timedelta(seconds=10)],
                "endpoint": "/a",
                "source_file": "stats.csv",
                "interval_s": 10.0,
                "count": [100, 300],
                "errors": [0, 30],
                "p95": [100.0, 200.0],
            }
        ),
    )
    rows = evaluate(
        {
            "p95": entry("latency_p95", 150, 300, 50),
            "errors": entry("error_rate", 0.05, 0.2, 50),
            "rps": entry("throughput", 15, 5, 50, "higher_is_better"),
        },
        requests=empty("requests"),
        intervals=intervals,
    )
    assert rows["p95", "/a"]["compliance_pct"] == pytest.approx(50.0)
    # The run's p95 is that of all its requests, the number its summary shows (a mean of the
    # intervals' p95 weighted by their counts, 175, would understate it).
    (summary,) = summarize_intervals(intervals).iter_rows(named=True)
    assert rows["p95", "/a"]["observed"] == pytest.approx(summary["latency_p95"], rel=1e-12)
    assert 175.0 < summary["latency_p95"] < 200.0
    assert rows["errors", "/a"]["observed"] == pytest.approx(30 / 400)
    assert rows["rps", "(all)"]["observed"] == pytest.approx(400 / 20)
    assert rows["rps", "(all)"]["compliance_pct"] == pytest.approx(50.0)  # 10/s, 30/s


def test_rolling_windows_pool_intervals_of_the_runs_inside_each_window():
    catalog = KpiCatalog.model_validate(
        {
            "kpis": {
                "p50": entry("latency_p50", 30, 45, 90),
                "short_kept": entry("error_rate", 0.1, 0.2, 90, retention="10d"),
            }
        }
    )
    now = datetime(2026, 11, 30, tzinfo=UTC)
    runs = pl.DataFrame(
        {
            "run_id": ["old", "mid", "new"],
            "started_at": [now - timedelta(days=20), now - timedelta(days=5), now],
        }
    )
    base = {"suite": "c", "scenario": "s", "environment": "e", "endpoint": "/a", "kpi": "p50"}
    evaluations = conform(
        "sla_evaluations",
        pl.DataFrame(
            [
                base
                | {
                    "run_id": "old",
                    "intervals": 10,
                    "compliance_pct": 50.0,
                    "status": "breached",
                    "objective_pct": 90.0,
                },
                base
                | {
                    "run_id": "mid",
                    "intervals": 30,
                    "compliance_pct": 90.0,
                    "status": "met",
                    "objective_pct": 90.0,
                },
                base
                | {
                    "run_id": "new",
                    "intervals": 10,
                    "compliance_pct": 100.0,
                    "status": "met",
                    "objective_pct": 90.0,
                },
                base
                | {
                    "run_id": "new",
                    "kpi": "short_kept",
                    "intervals": 10,
                    "compliance_pct": 100.0,
                    "status": "met",
                    "objective_pct": 90.0,
                },
            ]
        ),
    )
    windows = rolling_windows(evaluations, runs, catalog, now)
    rows = {(r["kpi"], r["window_days"]): r for r in windows.iter_rows(named=True)}
    week = rows["p50", 7]
    # mid and new: (27 + 10) good of 40 intervals = 92.5 %; budget 1 - 7.5 / 10
    assert week["runs"] == 2 and week["breaches"] == 0
    assert week["compliance_pct"] == pytest.approx(92.5)
    assert week["error_budget_remaining"] == pytest.approx(0.25)
    month = rows["p50", 30]
    # all three: (5 + 27 + 10) / 50 = 84 %; budget 1 - 16 / 10 (blown)
    assert month["runs"] == 3 and month["breaches"] == 1
    assert month["compliance_pct"] == pytest.approx(84.0)
    assert month["error_budget_remaining"] == pytest.approx(-0.6)
    # a KPI kept 10 days has a 7-day window but no 30-day one
    assert ("short_kept", 7) in rows and ("short_kept", 30) not in rows


@pytest.mark.parametrize(
    ("remaining", "words"),
    [(0.63, "63 % left"), (0.0, "spent"), (-19.0, "spent 20x over"), (None, "")],
)
def test_the_error_budget_reads_in_words(remaining, words):
    """Never "budget left -1900.0 %": a budget spent 20-fold says so."""
    assert budget_words(remaining) == words
