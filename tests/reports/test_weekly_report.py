"""The weekly report's calculations: ISO weeks, KPIs week over week, regressions opened and
fixed."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from metrics_pipeline.reports import Week, default_week
from metrics_pipeline.reports.weekly import WeeklyData, kpi_changes, regression_changes

W44, W45 = Week(2026, 44), Week(2026, 45)


def test_weeks_parse_and_bad_ones_are_clear_errors():
    assert str(Week.parse("2026-W45")) == "2026-W45"
    assert W45.start == datetime(2026, 11, 2, tzinfo=UTC) and W45.previous == W44
    for bad in ("2026-45", "W45", "2026-W54"):
        with pytest.raises(ValueError, match=r"ISO week|does not exist"):
            Week.parse(bad)


def test_default_week_is_the_latest_ended_week_with_runs():
    starts = pl.Series([datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC)])
    assert default_week(starts, datetime(2026, 11, 23, tzinfo=UTC)) == W45
    # Only the current week has runs: report it rather than an empty one.
    assert default_week(starts, datetime(2026, 11, 4, tzinfo=UTC)) == W44
    assert default_week(starts[1:], datetime(2026, 11, 6, 12, tzinfo=UTC)) == W45


def _data(verdicts: list[dict], summaries: list[dict] | None = None) -> WeeklyData:
    starts = {
        "r1": datetime(2026, 10, 28, tzinfo=UTC),  # W44
        "r2": datetime(2026, 11, 3, tzinfo=UTC),  # W45
        "r3": datetime(2026, 11, 5, tzinfo=UTC),  # W45
    }
    runs = pl.DataFrame(
        {
            "run_id": list(starts),
            "suite": "s",
            "scenario": "x",
            "environment": "e",
            "started_at": list(starts.values()),
            "valid": True,
            "service_version": "1",
        }
    )
    combo = {"suite": "s", "scenario": "x", "environment": "e", "metric": "latency_p95"}
    rows = pl.DataFrame(
        [
            combo
            | v
            | {
                "started_at": starts[v["run_id"]],
                "change": 0.3 if v["regression"] else 0.0,
                "verdict": "regression" if v["regression"] else "ok",
            }
            | {k: v[k] for k in ("verdict", "change") if k in v}
            for v in verdicts
        ]
    )
    return WeeklyData(W45, runs, pl.DataFrame(summaries or []), rows, pl.DataFrame())


def test_regressions_opened_fixed_and_still_open():
    data = _data(
        [
            # /fixed regressed last week and passes in the week's latest run
            {"run_id": "r1", "endpoint": "/fixed", "regression": True},
            {"run_id": "r3", "endpoint": "/fixed", "regression": False},
            # /new regressed this week for the first time and still does
            {"run_id": "r1", "endpoint": "/new", "regression": False},
            {"run_id": "r3", "endpoint": "/new", "regression": True},
            # /old regressed last week and still does
            {"run_id": "r1", "endpoint": "/old", "regression": True},
            {"run_id": "r2", "endpoint": "/old", "regression": True},
            # /fine never regressed
            {"run_id": "r2", "endpoint": "/fine", "regression": False},
            # /untested regressed last week; this week's run was too small to test and still
            # looks 4x slower: not fixed
            {"run_id": "r1", "endpoint": "/untested", "regression": True},
            {"run_id": "r3", "endpoint": "/untested", "regression": False}
            | {"verdict": "suspect", "change": 3.0},
        ]
    )
    changes = regression_changes(data)
    assert dict(zip(changes["endpoint"], changes["status"], strict=True)) == {
        "/new": "opened",
        "/old": "open",
        "/untested": "open",
        "/fixed": "fixed",
    }
    assert changes.filter(pl.col("endpoint") == "/fixed")["first_run"].item() == "r1"


def test_kpis_week_over_week_use_the_median_run_and_know_which_way_is_better():
    summaries = [
        {
            "run_id": r,
            "endpoint": "/a",
            "latency_p95": p95,
            "throughput_rps": rps,
            "error_rate": 0.01,
        }
        for r, p95, rps in (("r1", 100.0, 50.0), ("r2", 80.0, 60.0), ("r3", 90.0, 40.0))
    ]
    kpis = kpi_changes(_data([], summaries))
    row = {r["kpi"]: r for r in kpis.iter_rows(named=True)}
    assert row["latency_p95"]["current"] == 85.0 and row["latency_p95"]["previous"] == 100.0
    assert row["latency_p95"]["change"] == pytest.approx(-0.15) and row["latency_p95"]["better"]
    assert row["throughput_rps"]["change"] == pytest.approx(0.0)
    assert row["error_rate"]["runs"] == 2


def test_the_weeks_triage_marks_are_shown():
    from metrics_pipeline.contracts.tables import conform
    from metrics_pipeline.reports.weekly import weekly_document

    marks = conform(
        "triage",
        pl.DataFrame(
            [
                {
                    "kind": "regression",
                    "suite": "s",
                    "scenario": "x",
                    "environment": "e",
                    "endpoint": "/orders",
                    "run_id": "r3",
                    "mark": "expected",
                    "note": "tax per line",
                    "marked_by": "ana",
                    "marked_at": datetime(2026, 11, 5, 9, tzinfo=UTC),
                },
                {
                    "kind": "change_point",
                    "suite": "s",
                    "scenario": "x",
                    "environment": "e",
                    "endpoint": "/cart",
                    "metric": "latency_p95",
                    "run_id": "r2",
                    "mark": "invalid",
                    "marked_by": "bo",
                    "marked_at": datetime(2026, 11, 4, 9, tzinfo=UTC),
                },
            ]
        ),
    )
    from metrics_pipeline.contracts.tables import empty

    base = _data([{"run_id": "r3", "endpoint": "/a", "regression": False}])

    def week(triage: pl.DataFrame) -> WeeklyData:
        return WeeklyData(
            base.week, base.runs, empty("run_summary"), base.verdicts, empty("forecasts"), triage
        )

    (section,) = [s for s in weekly_document(week(marks)).sections if s.id == "triage"]
    assert "1 expected" in section.paragraphs[0] and "1 invalid" in section.paragraphs[0]
    rows = section.tables[0].rows
    assert [r[0] for r in rows] == ["invalid", "expected"]  # in the order they were marked
    assert rows[1][6] == "tax per line" and rows[1][7] == "ana"
    (quiet,) = [s for s in weekly_document(week(empty("triage"))).sections if s.id == "triage"]
    assert quiet.paragraphs == ["Nothing was marked this week."]
