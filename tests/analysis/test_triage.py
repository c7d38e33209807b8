"""Triage: marked findings stop alerting, an expected step rebaselines its combination, and
the marks measure the detector's precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from typer.testing import CliRunner

from metrics_pipeline.alerts.config import AlertingConfig
from metrics_pipeline.alerts.signals import finding_signals
from metrics_pipeline.analysis.triage import MARKS, finding_id, precision_by_month, unmarked
from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import conform, empty
from metrics_pipeline.stages import ci
from metrics_pipeline.stages.triage import findings_with_marks, mark_finding

T0 = datetime(2031, 1, 1, tzinfo=UTC)
COMBINATION = {"suite": "checkout", "scenario": "browse", "environment": "staging"}


def finding(run_id: str, endpoint: str, kind: str = "change_point") -> dict:
    return COMBINATION | {
        "kind": kind,
        "severity": "warning",
        "endpoint": endpoint,
        "metric": "latency_p95",
        "run_id": run_id,
        "summary": f"{endpoint} got 30% worse since run {run_id}",
        "action": "Roll back",
    }


def daily_runs(days: int) -> pl.DataFrame:
    """Catalog rows of ``days`` runs of the combination, r00, r01, ..., one a day from T0."""
    return conform(
        "runs",
        pl.DataFrame(
            [
                COMBINATION | {"run_id": f"r{i:02d}", "started_at": T0 + timedelta(days=i)}
                for i in range(days)
            ]
        ),
    )


def write_history(warehouse, days: int = 12) -> None:
    """``days`` valid runs, one a day, and two findings at run r06."""
    for i in range(days):
        row = COMBINATION | {
            "run_id": f"r{i:02d}",
            "started_at": T0 + timedelta(days=i),
            "valid": True,
            "ingested_at": T0 + timedelta(days=i),
        }
        warehouse.write_partition("runs", row["run_id"], conform("runs", pl.DataFrame([row])))
    findings = [finding("r06", "/api/orders"), finding("r06", "/api/items")]
    warehouse.write_snapshot("findings", conform("findings", pl.DataFrame(findings)))


def test_a_marked_finding_no_longer_signals_an_alert(warehouse):
    write_history(warehouse)
    (orders,) = [
        r for r in warehouse.read("findings").iter_rows(named=True) if "orders" in r["summary"]
    ]
    mark_finding(
        warehouse, finding_id(orders), "invalid", note="noisy neighbour", marked_by="ana", now=T0
    )
    left = unmarked(warehouse.read("findings"), warehouse.read("triage"))
    assert left["endpoint"].to_list() == ["/api/items"]
    signals = finding_signals(left, AlertingConfig())
    assert [s.endpoint for s in signals.found] == ["/api/items"]
    marks = findings_with_marks(warehouse)
    assert dict(zip(marks["endpoint"], marks["mark"], strict=True)) == {
        "/api/orders": "invalid",
        "/api/items": None,
    }


def test_an_expected_step_rebaselines_the_combination(warehouse):
    write_history(warehouse)
    # r06 and r07, at the new level, were judged regressions when they came in.
    for run_id in ("r06", "r07"):
        row = {"run_id": run_id, "endpoint": "/api/items", "metric": "latency_p95"}
        row |= {"regression": True, "verdict": "regression"}
        warehouse.write_partition("verdicts", run_id, conform("verdicts", pl.DataFrame([row])))
    candidate = "r08"  # its rolling baseline: the 5 accepted runs before it, r01-r05
    before = ci.choose_baseline(warehouse, candidate, [])
    assert before == ["r01", "r02", "r03", "r04", "r05"]
    items = [r for r in warehouse.read("findings").iter_rows(named=True) if "items" in r["summary"]]
    mark_finding(
        warehouse,
        finding_id(items[0]),
        "expected",
        note="new search",
        marked_by="ana",
        now=T0 + timedelta(days=7, hours=12),
    )
    # The step's runs up to the mark are accepted: they are the new level's baseline runs (they
    # stayed rejected, and r08 had no baseline run at all).
    assert ci.choose_baseline(warehouse, candidate, []) == ["r06", "r07"]
    # A run before the step, uploaded again, keeps the baseline runs before it; so does the
    # step's own run, judged again (a baseline run of it uploaded again): it had none left.
    assert ci.choose_baseline(warehouse, "r05", []) == ["r00", "r01", "r02", "r03", "r04"]
    assert ci.choose_baseline(warehouse, "r06", []) == ["r01", "r02", "r03", "r04", "r05"]


def test_only_a_latency_or_throughput_step_accepted_rebaselines():
    from metrics_pipeline.analysis.triage import accepted_regressions, mark, rebaselined_since

    runs = daily_runs(10)
    for metric, rebaselines in (
        ("cpu_pct", False),
        ("error_rate", False),
        ("throughput_rps", True),
    ):
        step = finding("r05", "/a") | {"metric": metric}
        triage = mark(
            empty("triage"),
            step,
            "expected",
            note=None,
            marked_by="ana",
            now=T0 + timedelta(days=7),
            started_at=T0 + timedelta(days=5),
        )
        accepted = accepted_regressions(triage, runs)
        assert accepted == ({"r05", "r06", "r07"} if rebaselines else set()), metric
        assert (rebaselined_since(triage, *COMBINATION.values()) is not None) is rebaselines


def test_precision_per_month_counts_the_marks():
    marks = pl.DataFrame(
        {
            "kind": ["change_point", "drift", "change_point", "capacity", "sla_breach"],
            "mark": ["expected", "invalid", "expected", "expected", "invalid"],
            "marked_at": [T0, T0, T0 + timedelta(days=40), T0 + timedelta(days=41), T0],
        }
    )
    # The SLA breach's mark is about the SLA, not the history's detectors.
    table = precision_by_month(marks)
    assert table.rows() == [("2031-01", 1, 1, 0.5), ("2031-02", 2, 0, 1.0)]


def test_the_cli_lists_marks_and_measures(warehouse, settings, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    monkeypatch.setenv("METRICS_NOW", T0.isoformat())
    write_history(warehouse)
    runner = CliRunner()
    listed = runner.invoke(app, ["triage", "list"])
    assert listed.exit_code == 0, listed.output
    ids = [finding_id(r) for r in warehouse.read("findings").iter_rows(named=True)]
    assert all(i in listed.output for i in ids)
    assert runner.invoke(app, ["triage", "mark", ids[0], "invalid"]).exit_code == 0
    assert runner.invoke(app, ["triage", "mark", ids[1], "expected", "--note", "x"]).exit_code == 0
    assert runner.invoke(app, ["triage", "mark", "nope", "expected"]).exit_code == 2
    assert runner.invoke(app, ["triage", "mark", ids[0], "maybe"]).exit_code == 2
    assert runner.invoke(app, ["triage", "list"]).output.count("finding(s)") == 1
    assert "0 finding(s)" in runner.invoke(app, ["triage", "list"]).output
    precision = runner.invoke(app, ["triage", "precision"])
    assert precision.exit_code == 0 and "50%" in precision.output
    assert warehouse.read("triage").height == 2
    assert empty("triage").columns == warehouse.read("triage").columns


def test_the_backtest_reports_the_precision_of_the_marks(warehouse, settings, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    write_history(warehouse)
    for row, verdict in zip(warehouse.read("findings").iter_rows(named=True), MARKS, strict=True):
        mark_finding(warehouse, finding_id(row), verdict, note=None, marked_by="ana", now=T0)
    from metrics_pipeline.cli.pipeline import _triage_precision

    assert _triage_precision() == [
        {"month": "2031-01", "expected": 1, "invalid": 1, "precision": 0.5}
    ]


def test_a_mark_covers_the_runs_from_the_marked_one_to_the_mark():
    from metrics_pipeline.analysis.triage import accepted_regressions, is_marked, mark

    regression = COMBINATION | {"kind": "regression", "endpoint": "/a", "metric": None}
    triage = mark(
        empty("triage"),
        regression | {"run_id": "r03"},
        "expected",
        note=None,
        marked_by="me",
        now=T0 + timedelta(days=5, hours=12),
        started_at=T0 + timedelta(days=3),
    )
    for day, covered in ((2, False), (3, True), (5, True), (6, False)):
        assert is_marked(regression, T0 + timedelta(days=day), triage) is covered
    assert not is_marked(regression | {"endpoint": "/b"}, T0 + timedelta(days=4), triage)
    assert not is_marked(regression | {"metric": "latency_p95"}, T0 + timedelta(days=4), triage)
    runs = conform(
        "runs",
        pl.DataFrame(
            [
                COMBINATION | {"run_id": f"r{i:02d}", "started_at": T0 + timedelta(days=i)}
                for i in range(8)
            ]
            + [
                {
                    "suite": "other",
                    "scenario": "browse",
                    "environment": "staging",
                    "run_id": "o04",
                    "started_at": T0 + timedelta(days=4),
                }
            ]
        ),
    )
    assert accepted_regressions(triage, runs) == {"r03", "r04", "r05"}


def test_marking_an_unknown_alert_exits_2(settings, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    result = CliRunner().invoke(app, ["alerts", "invalid", "nope", "--note", "noise"])
    assert result.exit_code == 2 and "no alert with an id starting with 'nope'" in result.output


def test_an_alert_marked_from_the_cli_owes_its_channels_its_resolution(
    warehouse, settings, monkeypatch, tmp_path
):
    from metrics_pipeline.alerts import Signal, Signals, evaluate_alerts

    config = tmp_path / "alerting.yaml"
    config.write_text(
        "channels:\n  chat: {type: webhook, url: '${CHAT}'}\n"
        "routes:\n  - {severities: [critical, warning], channels: [chat]}\n"
    )
    monkeypatch.setenv("METRICS_HOME", str(settings.home))
    monkeypatch.setenv("METRICS_ALERTING", str(config))
    signal = Signal(
        "regression", "warning", "/a slower", endpoint="/a", run_id="r01", **COMBINATION
    )
    cfg = AlertingConfig.model_validate(
        {
            "channels": {"chat": {"type": "webhook", "url": "${CHAT}"}},
            "routes": [{"severities": ["critical", "warning"], "channels": ["chat"]}],
        }
    )
    alerts, opened = evaluate_alerts(empty("alerts"), Signals([signal]), T0, cfg)
    warehouse.write_snapshot("alerts", alerts)
    warehouse.write_snapshot("alert_deliveries", opened)
    result = CliRunner().invoke(app, ["alerts", "invalid", alerts["alert_id"][0][:8]])
    assert result.exit_code == 0, result.output
    outbox = warehouse.read("alert_deliveries")
    assert sorted(outbox.select("channel", "event").rows()) == [
        ("chat", "opened"),
        ("chat", "resolved"),
    ]


def test_regressed_and_suspect_runs_are_no_baseline_until_a_person_accepts_them(warehouse):
    write_history(warehouse)
    for run_id, verdict in (("r05", "regression"), ("r06", "suspect"), ("r04", "ok")):
        row = {
            "run_id": run_id,
            "endpoint": "/api/orders",
            "metric": "latency_p95",
            "regression": verdict == "regression",
            "verdict": verdict,
        }
        warehouse.write_partition("verdicts", run_id, conform("verdicts", pl.DataFrame([row])))
    # A run of 15 requests ten times slower (suspect) is no reference for the next run, like a
    # regression: r08's rolling baseline skips both.
    assert ci.rejected(warehouse) == {"r05", "r06"}
    assert ci.choose_baseline(warehouse, "r08", []) == ["r01", "r02", "r03", "r04", "r07"]
    # A person accepts r05's regression as expected: it becomes a baseline run again.
    from metrics_pipeline.analysis.triage import mark

    regression = COMBINATION | {"kind": "regression", "endpoint": "/api/orders", "metric": None}
    triage = mark(
        empty("triage"),
        regression | {"run_id": "r05"},
        "expected",
        note="new page",
        marked_by="ana",
        now=T0 + timedelta(days=5, hours=12),
        started_at=T0 + timedelta(days=5),
    )
    warehouse.write_snapshot("triage", triage)
    assert ci.rejected(warehouse) == {"r06"}
    # (and rebaselines the combination from r05 on; the suspect r06 stays out)
    assert ci.choose_baseline(warehouse, "r08", []) == ["r05", "r07"]


def test_a_mark_covers_its_finding_while_it_stands_though_its_run_moves():
    from metrics_pipeline.analysis.triage import mark, unmarked, with_marks

    runs = daily_runs(30)

    def marked(row: dict, run_id: str) -> pl.DataFrame:
        at = T0 + timedelta(days=int(run_id[1:]))
        return mark(
            empty("triage"),
            row | {"run_id": run_id},
            "invalid",
            note=None,
            marked_by="ana",
            now=at,
            started_at=at,
        )

    def steps_at(*run_ids: str) -> pl.DataFrame:
        rows = [
            COMBINATION
            | {
                "endpoint": "/a",
                "metric": "latency_p95",
                "run_id": r,
                "started_at": T0 + timedelta(days=int(r[1:])),
            }
            for r in run_ids
        ]
        return conform("change_points", pl.DataFrame(rows)) if rows else empty("change_points")

    # A drift's run is the history's last: marked at r19, it is the same drift at r20 and r25,
    # until the series steps (r22): what drifts after that is a new condition.
    drift = finding("r19", "/a", kind="drift") | {"endpoint": "/a"}
    triage = marked(drift, "r19")
    later = conform(
        "findings", pl.DataFrame([drift | {"run_id": "r20"}, drift | {"run_id": "r25"}])
    )
    assert unmarked(later, triage, runs, steps_at()).height == 0
    left = unmarked(later, triage, runs, steps_at("r22"))
    assert left["run_id"].to_list() == ["r25"]
    # Without the runs (the catalog) only the finding itself is covered, as before.
    assert unmarked(later, triage).height == 2
    # A step located again one or two runs away is the marked step; one far away is not.
    step = finding("r12", "/a")
    triage = marked(step, "r12")
    moved = conform("findings", pl.DataFrame([step | {"run_id": r} for r in ("r13", "r14", "r20")]))
    marks = with_marks(moved, triage, runs, steps_at("r13"))
    assert marks["mark"].to_list() == ["invalid", "invalid", None]
    # Another endpoint's or kind's finding is never covered.
    other = conform("findings", pl.DataFrame([step | {"run_id": "r12", "endpoint": "/b"}]))
    assert unmarked(other, triage, runs).height == 1


def test_a_finding_worse_than_when_it_was_marked_is_news():
    from metrics_pipeline.analysis.triage import mark, unmarked

    runs = daily_runs(20)
    # A +12 % step (a warning) at r12 marked as noise; a +80 % step (critical) two runs later
    # is another change, and an improvement there is not the marked degradation either.
    step = finding("r12", "/a")
    triage = mark(
        empty("triage"),
        step,
        "invalid",
        note="noise",
        marked_by="ana",
        now=T0 + timedelta(days=13),
        started_at=T0 + timedelta(days=12),
    )
    later = [step | {"run_id": "r14", "severity": s} for s in ("warning", "critical", "info")]
    left = unmarked(conform("findings", pl.DataFrame(later)), triage, runs)
    assert left["severity"].to_list() == ["critical", "info"]
    # The marked finding itself, estimated worse since: news too.
    worse = conform("findings", pl.DataFrame([step | {"severity": "critical"}]))
    assert unmarked(worse, triage, runs).height == 1


def test_a_step_marked_invalid_does_not_start_the_history_over():
    import numpy as np

    from metrics_pipeline.analysis.findings import find_drifts
    from metrics_pipeline.analysis.triage import mark, standing_steps

    runs = daily_runs(40)
    # A steady drift of 1 % a run over 40 runs, and a step the detector put at r30 (a night on
    # a broken runner, say).
    rng = np.random.default_rng(7)
    series = runs.select("suite", "scenario", "environment", "run_id", "started_at").with_columns(
        endpoint=pl.lit("/a"),
        metric=pl.lit("latency_p95"),
        value=pl.Series(100 * rng.lognormal(0, 0.01, 40) * (1 + 0.01 * np.arange(40))),
    )
    step = COMBINATION | {
        "endpoint": "/a",
        "metric": "latency_p95",
        "run_id": "r30",
        "started_at": T0 + timedelta(days=30),
    }
    steps = conform("change_points", pl.DataFrame([step]))
    # Cut at the step, the drift is read on the ten runs after it only: no drift to tell.
    assert find_drifts(series, steps).height == 0
    triage = mark(
        empty("triage"),
        step | {"kind": "change_point"},
        "invalid",
        note="broken runner",
        marked_by="ana",
        now=T0 + timedelta(days=31),
        started_at=step["started_at"],
    )
    assert standing_steps(steps, triage, runs).height == 0
    (drift,) = find_drifts(series, standing_steps(steps, triage, runs)).rows(named=True)
    assert drift["first_run"] == "r00" and drift["runs"] == 40
    # A step marked expected is real: it still starts the history over.
    expected = triage.with_columns(mark=pl.lit("expected"))
    assert standing_steps(steps, expected, runs).height == 1
