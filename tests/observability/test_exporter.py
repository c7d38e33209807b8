"""The exporter over warehouse rows written through the Warehouse API, scraped over HTTP."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from urllib.request import urlopen

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.observability.exporter import pipeline_metrics, read_snapshot, serve

NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
CHECKOUT = {"suite": "checkout", "scenario": "browse-and-buy", "environment": "staging"}
SEARCH = {"suite": "search", "scenario": "query", "environment": "prod"}


def _run(warehouse, run_id: str, combination: dict, age_h: float, valid: bool = True) -> None:
    row = {
        "run_id": run_id,
        **combination,
        "started_at": NOW - timedelta(hours=age_h + 1),
        "ingested_at": NOW - timedelta(hours=age_h),
        "service_version": f"v-{run_id}",
        "valid": valid,
    }
    warehouse.write_partition("runs", run_id, conform("runs", pl.DataFrame([row])))


def _verdicts(warehouse, run_id: str, rows: list[tuple]) -> None:
    """Rows ``(endpoint, metric, change, regression[, verdict])``; a row has a p-value (was
    tested) unless its verdict is given as ``"untested"`` or ``"suspect"``."""
    frame = pl.DataFrame(
        [
            {
                "run_id": run_id,
                "endpoint": endpoint,
                "metric": metric,
                "change": change,
                # judge_run stores an untested row's p-value as NaN
                "p_value": math.nan if word or change is None else 0.01,
                "regression": regression,
                "verdict": "regression"
                if regression
                else "ok"
                if word in (None, "untested")
                else word,
            }
            for endpoint, metric, change, regression, word in (
                (*row, None) if len(row) == 4 else row for row in rows
            )
        ],
        schema_overrides={"change": pl.Float64, "p_value": pl.Float64},
    )
    warehouse.write_partition("verdicts", run_id, conform("verdicts", frame))


@pytest.fixture
def filled(warehouse):
    """checkout: an older run with a regression and the latest with two (one critical);
    search: the latest run is invalid, so the one before it stands."""
    _run(warehouse, "c1", CHECKOUT, age_h=48)
    _verdicts(warehouse, "c1", [("/api/cart", "latency_p95", 0.9, True)])
    _run(warehouse, "c2", CHECKOUT, age_h=24)
    _verdicts(
        warehouse,
        "c2",
        [
            ("/api/orders", "latency_p95", 0.31, True),
            ("/api/orders", "latency_p50", 0.28, True),
            ("/api/pay", "latency_p95", 0.62, True),
            ("/api/cart", "latency_p95", -0.02, False),
            ("/api/cart", "error_rate", None, False),
            # +8 percentage points of errors: critical (a relative 8 % would be a warning).
            ("/api/login", "error_rate", 0.08, True),
            # The p99 of a few hundred requests moves 20-100 % between identical runs: shown in
            # the verdicts table, but no gauge for a dashboard's max to pick up.
            ("/api/pay", "latency_p99", 1.8, False, "untested"),
            ("/api/tiny", "latency_p95", 4.0, False, "suspect"),
        ],
    )
    _run(warehouse, "s1", SEARCH, age_h=10)
    _verdicts(warehouse, "s1", [("/q", "latency_p95", 0.01, False)])
    _run(warehouse, "s2", SEARCH, age_h=2, valid=False)
    return warehouse


def samples(families) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in families:
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_latest_verdicts_per_combination_without_run_ids(filled):
    got = samples(pipeline_metrics(read_snapshot(filled), NOW))
    info = {
        labels["suite"]: labels["run_id"] for labels, _ in got["metrics_pipeline_latest_run_info"]
    }
    assert info == {"checkout": "c2", "search": "s1"}

    regression = {
        (labels["suite"], labels["endpoint"], labels["metric"]): value
        for labels, value in got["metrics_pipeline_verdict_regression"]
    }
    # c1's /api/cart regression is history: only the latest run of each combination counts.
    assert regression == {
        ("checkout", "/api/orders", "latency_p95"): 1.0,
        ("checkout", "/api/orders", "latency_p50"): 1.0,
        ("checkout", "/api/pay", "latency_p95"): 1.0,
        ("checkout", "/api/cart", "latency_p95"): 0.0,
        ("checkout", "/api/cart", "error_rate"): 0.0,
        ("checkout", "/api/login", "error_rate"): 1.0,
        ("checkout", "/api/pay", "latency_p99"): 0.0,
        ("checkout", "/api/tiny", "latency_p95"): 0.0,
        ("search", "/q", "latency_p95"): 0.0,
    }
    changes = {
        (labels["endpoint"], labels["metric"]): value
        for labels, value in got["metrics_pipeline_verdict_change_ratio"]
    }
    assert changes[("/api/pay", "latency_p95")] == pytest.approx(0.62)
    assert ("/api/cart", "error_rate") not in changes  # no estimate: no sample, not NaN
    assert ("/api/pay", "latency_p99") not in changes  # untested: no gauge
    assert changes[("/api/tiny", "latency_p95")] == pytest.approx(4.0)  # suspect: shown
    per_endpoint = [
        labels
        for name in ("metrics_pipeline_verdict_regression", "metrics_pipeline_verdict_change_ratio")
        for labels, _ in got[name]
    ]
    assert all("run_id" not in labels for labels in per_endpoint)

    # Without alert rows the open regressions come from the verdicts: per regressed endpoint.
    assert sorted(
        (labels["suite"], labels["severity"], value)
        for labels, value in got["metrics_pipeline_open_regressions"]
    ) == [("checkout", "critical", 2.0), ("checkout", "warning", 1.0)]

    lag = {labels["suite"]: value for labels, value in got["metrics_pipeline_ingest_lag_seconds"]}
    assert lag == {"checkout": 24 * 3600.0, "search": 2 * 3600.0}
    assert "metrics_pipeline_sla_compliance_percent" not in got  # no evaluations yet


def test_sla_and_alert_tables(filled):
    evaluation = {
        "run_id": "c2",
        **CHECKOUT,
        "kpi": "latency_p95",
        "endpoint": "/api/orders",
        "compliance_pct": 92.5,
        "error_budget_remaining": -0.5,
        "status": "breached",
        "severity": "critical",
        "evaluated_at": NOW,
    }
    filled.write_partition(
        "sla_evaluations", "c2", conform("sla_evaluations", pl.DataFrame([evaluation]))
    )
    window = {**CHECKOUT, "kpi": "latency_p95", "endpoint": "/api/orders", "window_days": 30}
    filled.write_snapshot(
        "sla_windows",
        conform(
            "sla_windows",
            pl.DataFrame([window | {"compliance_pct": 80.0, "error_budget_remaining": 0.2}]),
        ),
    )
    alerts = [
        {"alert_id": "a1", "kind": "regression", "severity": "critical", "status": "open"},
        {"alert_id": "a2", "kind": "regression", "severity": "warning", "status": "acknowledged"},
        {"alert_id": "a3", "kind": "regression", "severity": "warning", "status": "resolved"},
        {"alert_id": "a4", "kind": "sla_breach", "severity": "critical", "status": "open"},
    ]
    filled.write_snapshot("alerts", conform("alerts", pl.DataFrame([a | CHECKOUT for a in alerts])))

    got = samples(pipeline_metrics(read_snapshot(filled), NOW))
    ((labels, value),) = got["metrics_pipeline_sla_compliance_percent"]
    assert (labels["kpi"], labels["endpoint"], value) == ("latency_p95", "/api/orders", 92.5)
    assert got["metrics_pipeline_sla_error_budget_remaining_ratio"][0][1] == -0.5
    ((labels, value),) = got["metrics_pipeline_sla_breached"]
    assert labels["severity"] == "critical" and value == 1.0
    ((labels, value),) = got["metrics_pipeline_sla_window_compliance_percent"]
    assert labels["window_days"] == "30" and value == 80.0
    assert got["metrics_pipeline_sla_window_error_budget_remaining_ratio"][0][1] == 0.2

    open_alerts = {
        (labels["kind"], labels["severity"]): value
        for labels, value in got["metrics_pipeline_open_alerts"]
    }
    assert open_alerts == {
        ("regression", "critical"): 1,
        ("regression", "warning"): 1,
        ("sla_breach", "critical"): 1,
    }
    # With alert rows the alerting stage's lifecycle decides what is open (resolved is not).
    assert sorted(
        (labels["severity"], value) for labels, value in got["metrics_pipeline_open_regressions"]
    ) == [("critical", 1.0), ("warning", 1.0)]


def test_http_scrape_reports_health_and_survives_a_broken_warehouse(filled):
    port = free_port()
    server, thread = serve(filled, port, addr="127.0.0.1")
    try:

        def scrape() -> dict:
            with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return samples(text_string_to_metric_families(response.read().decode()))

        healthy = scrape()
        assert healthy["metrics_pipeline_exporter_up"][0][1] == 1.0
        assert healthy["metrics_pipeline_exporter_errors_total"][0][1] == 0.0
        assert healthy["metrics_pipeline_exporter_scrape_duration_seconds"][0][1] > 0
        last_success = healthy["metrics_pipeline_exporter_last_success_timestamp_seconds"][0][1]
        assert "metrics_pipeline_verdict_regression" in healthy

        # A corrupt file in the run catalog: the scrape still answers, with the failure.
        (filled.partition_dir("runs", "c1") / "part-0.parquet").write_bytes(b"not parquet")
        broken = scrape()
        assert broken["metrics_pipeline_exporter_up"][0][1] == 0.0
        assert broken["metrics_pipeline_exporter_errors_total"][0][1] == 1.0
        assert (
            broken["metrics_pipeline_exporter_last_success_timestamp_seconds"][0][1] == last_success
        )
        assert "metrics_pipeline_verdict_regression" not in broken
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_triage_marks_are_counted_by_kind_and_mark(filled):
    marks = [
        {"finding_id": "f1", "kind": "regression", "mark": "expected"},
        {"finding_id": "f2", "kind": "regression", "mark": "invalid"},
        {"finding_id": "f3", "kind": "change_point", "mark": "invalid"},
        {"finding_id": "f4", "kind": "change_point", "mark": "invalid"},
    ]
    filled.write_snapshot("triage", conform("triage", pl.DataFrame([m | CHECKOUT for m in marks])))
    got = samples(pipeline_metrics(read_snapshot(filled), NOW))
    counted = {
        (labels["kind"], labels["mark"]): value
        for labels, value in got["metrics_pipeline_triage_marks"]
    }
    assert counted == {
        ("change_point", "invalid"): 2,
        ("regression", "expected"): 1,
        ("regression", "invalid"): 1,
    }
