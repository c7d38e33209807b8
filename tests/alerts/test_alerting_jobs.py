"""SLA evaluation and alerts as Dagster runs them: the CI stage on uploaded runs, a receiver
that records what it got, and the run-failure sensor on a failing run."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from conftest import upload_demo_runs
from receivers import http_receiver

from assets.alerting import ALERTS, SLA
from metrics_pipeline.evaluation.demo_data import DemoRun, demo_runs, generate_requests
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    ClockResource,
    WarehouseResource,
)
from metrics_pipeline.settings import shipped_path
from metrics_pipeline.stages import ci
from metrics_pipeline.upload.uploader import upload_run
from sensors.alerting import alert_delivery_sensor, alert_on_run_failure, resolve_on_run_success

pytestmark = pytest.mark.slow

# The pipeline's clock, frozen far from the day the test runs: SLA windows and overdue-run
# checks count back from it, and the runs are dated relative to it.
NOW = datetime(2031, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def hook():
    with http_receiver() as recorder:
        yield recorder


@pytest.fixture
def alerting_settings(settings, tmp_path, hook):
    config = tmp_path / "alerting.yaml"
    config.write_text(
        f"channels:\n  hook: {{type: webhook, url: '{hook.url}'}}\n"
        "routes:\n  - {severities: [critical, warning, info], channels: [hook]}\n"
    )
    return dataclasses.replace(settings, alerting_config=config, now=NOW)


def alerted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether the run evaluated its SLAs and alerts (other steps of the job are not ours)."""
    done = {e.asset_key for e in result.get_asset_materialization_events()}
    return {SLA, ALERTS} <= done


def test_a_regressed_run_alerts_once_and_a_clean_run_resolves(
    alerting_settings, store, warehouse, tmp_path, hook
):
    # A day before the clock, so that the clean run a day after the last one is still past.
    runs = demo_runs(4, duration_s=20.0, now=NOW - timedelta(days=1))
    for run in runs:
        upload_run(store, [run.write(tmp_path / "runs") / "requests.ndjson"], run.manifest)
    last = runs[-1].manifest.run_id
    defs = build_definitions(alerting_settings)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(defs, instance)
        assert all(alerted(r) for r in tick.results.values())

        evaluations = warehouse.read("sla_evaluations", [last])
        breach = evaluations.filter(pl.col("kpi") == "checkout_orders_p95").row(0, named=True)
        assert breach["status"] == "breached" and breach["endpoint"] == "/api/orders"
        (event,) = [
            e for e in tick.results[last].get_asset_materialization_events() if e.asset_key == SLA
        ]
        assert "BREACHED" in event.materialization.metadata["sla"].value
        assert warehouse.read("sla_windows").filter(pl.col("window_days") == 30).height > 0
        # Without runs the windows move on: 10 days later the 7-day window holds none (its
        # spent budget fired an alert as long as no run came), the 30-day one still does.
        catalog = AlertingResource.from_settings(alerting_settings).catalog()
        later = ci.refresh_sla_windows(warehouse, catalog, now=NOW + timedelta(days=10))
        assert set(later["window_days"]) == {30}
        ci.refresh_sla_windows(warehouse, catalog, now=NOW)

        alerts = warehouse.read("alerts").filter(pl.col("status") == "open")
        regressions = alerts.filter(pl.col("kind") == "regression")
        assert set(regressions["endpoint"]) == {"/api/orders"}
        assert set(alerts["kind"]) == {"regression", "sla_breach"}
        # Every number of the SLA's summary with its unit.
        (sla,) = alerts.filter(pl.col("kind") == "sla_breach")["summary"]
        assert re.search(r"ms is beyond the alert threshold [\d.]+ ms \(target [\d.]+ ms", sla), sla
        opened = [b for b in hook.bodies if b["event"] == "opened"]
        assert sorted(b["alert_id"] for b in opened) == sorted(alerts["alert_id"])

        # The same run judged again: no new alert, no second notification.
        job = defs.resolve_job_def("ci_stage")
        assert alerted(
            job.execute_in_process(instance=instance, partition_key=last, raise_on_error=False)
        )
        assert len(hook.bodies) == len(opened)
        assert warehouse.read("alerts").height == alerts.height

        # A clean run of the same combination resolves them.
        manifest = runs[-1].manifest.model_copy(
            update={
                "run_id": "checkout-clean",
                "started_at": runs[-1].manifest.started_at + timedelta(days=1),
                "finished_at": runs[-1].manifest.finished_at + timedelta(days=1),
            }
        )
        clean = DemoRun(manifest, generate_requests(manifest.started_at, duration_s=20.0, seed=77))
        upload_run(store, [clean.write(tmp_path / "runs") / "requests.ndjson"], manifest)
        again = sense_and_run(defs, instance, cursor=tick.cursor)
        assert again.run_ids == ["checkout-clean"]
    after = warehouse.read("alerts")
    assert set(after.filter(pl.col("alert_id").is_in(alerts["alert_id"].implode()))["status"]) == {
        "resolved"
    }
    resolved = [b for b in hook.bodies if b["event"] == "resolved"]
    assert sorted(b["alert_id"] for b in resolved) == sorted(alerts["alert_id"])


def test_a_backfill_of_past_nights_raises_no_missing_run_alert(
    settings, store, warehouse, tmp_path
):
    # The demo's runs: one a night up to the last, judged oldest first. While the first is
    # judged the newer ones still wait in the bucket; the suite (expected every 24 h + 6 h in
    # the shipped alerting config) is not overdue, and no run's evaluation may say it is.
    shipped = shipped_path("config/alerting.yaml")
    settings = dataclasses.replace(settings, alerting_config=shipped, now=NOW)
    upload_demo_runs(store, tmp_path / "runs", count=4, now=NOW)
    with dg.instance_for_test() as instance:
        assert not sense_and_run(build_definitions(settings), instance).failed
    assert "missing_run" not in set(warehouse.read("alerts")["kind"])

    # Judged over all the runs, when a suite is overdue: the delivery sensor's pass.
    def sensor_pass(now: datetime) -> None:
        frozen = dataclasses.replace(settings, now=now)
        resources = {
            "warehouse": WarehouseResource(root=str(settings.warehouse_root)),
            "alerting": AlertingResource.from_settings(frozen),
            "clock": ClockResource.from_settings(frozen),
        }
        with dg.build_sensor_context(resources=resources) as context:
            alert_delivery_sensor(context)

    sensor_pass(NOW)
    assert "missing_run" not in set(warehouse.read("alerts")["kind"])
    sensor_pass(NOW + timedelta(days=2))
    (missing,) = warehouse.read("alerts").filter(pl.col("kind") == "missing_run").rows(named=True)
    assert missing["status"] == "open"


def test_a_failing_run_becomes_a_delivered_alert(
    alerting_settings, store, warehouse, tmp_path, hook
):
    store.put_bytes("raw/checkout/broken-1/requests.ndjson", b"")
    store.put_bytes("raw/checkout/broken-1/run.json", b'{"run_id": "broken-1", "suite": 1}')
    defs = build_definitions(alerting_settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(runs_partitions.name, ["broken-1"])
        result = defs.resolve_job_def("ci_stage").execute_in_process(
            instance=instance, partition_key="broken-1", raise_on_error=False
        )
        assert not result.success
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={
                "warehouse": WarehouseResource(root=str(alerting_settings.warehouse_root)),
                "alerting": AlertingResource.from_settings(alerting_settings),
                "clock": ClockResource.from_settings(alerting_settings),
            },
        )
        alert_on_run_failure(context)
        alert_on_run_failure(context)  # the daemon may see it twice: still one alert
    (alert,) = warehouse.read("alerts").iter_rows(named=True)
    assert alert["kind"] == "pipeline_failure" and alert["severity"] == "critical"
    assert alert["metric"] == "ci_stage" and alert["endpoint"] == "broken-1"
    assert "invalid manifest" in alert["summary"]
    (body,) = hook.bodies
    assert body["kind"] == "pipeline_failure" and body["alert_id"] == alert["alert_id"]


def test_an_invalid_upload_is_a_warning_that_says_why_and_its_valid_upload_resolves_it(
    alerting_settings, store, warehouse, tmp_path, hook
):
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1, now=NOW - timedelta(days=2))
    run_id = run.manifest.run_id
    folder = run.write(tmp_path / "broken")
    lines = (folder / "requests.ndjson").read_text().splitlines(keepends=True)
    broken = ["{broken\n" if i % 20 == 0 else line for i, line in enumerate(lines)]
    (folder / "requests.ndjson").write_text("".join(broken))
    upload_run(store, [folder / "requests.ndjson"], run.manifest)
    defs = build_definitions(alerting_settings)
    resources = {
        "warehouse": WarehouseResource(root=str(alerting_settings.warehouse_root)),
        "alerting": AlertingResource.from_settings(alerting_settings),
        "clock": ClockResource.from_settings(alerting_settings),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(runs_partitions.name, [run_id])
        job = defs.resolve_job_def("ci_stage")
        result = job.execute_in_process(
            instance=instance, partition_key=run_id, raise_on_error=False
        )
        assert not result.success  # its validation, a blocking check, failed

        def seen_by(sensor, event: dg.DagsterEvent) -> None:
            sensor(
                dg.build_run_status_sensor_context(
                    sensor_name=sensor.name,
                    dagster_instance=instance,
                    dagster_run=result.dagster_run,
                    dagster_event=event,
                    resources=resources,
                )
            )

        seen_by(alert_on_run_failure, result.get_run_failure_event())
        # Not a critical pipeline failure paging on-call: the upload is bad, and the alert
        # says why (the check's words), not "1 blocking asset check failed".
        (alert,) = warehouse.read("alerts").iter_rows(named=True)
        assert alert["kind"] == "invalid_run" and alert["severity"] == "warning"
        assert "quarantined" in alert["summary"] and "blocking" not in alert["summary"]
        # Its valid upload succeeds and resolves it.
        upload_run(store, [run.write(tmp_path / "fixed") / "requests.ndjson"], run.manifest)
        result = job.execute_in_process(instance=instance, partition_key=run_id)
        seen_by(resolve_on_run_success, result.get_run_success_event())
    (alert,) = warehouse.read("alerts").filter(pl.col("kind") == "invalid_run").rows(named=True)
    assert alert["status"] == "resolved"


def test_an_alert_marked_expected_from_the_ui_rebaselines_and_stays_quiet(
    alerting_settings, store, warehouse, tmp_path, hook
):
    runs = upload_demo_runs(store, tmp_path / "runs", count=4, now=NOW - timedelta(days=2))
    last = runs[-1].manifest.run_id
    defs = build_definitions(alerting_settings)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(defs, instance)
        (alert,) = (
            warehouse.read("alerts").filter(pl.col("kind") == "regression").iter_rows(named=True)
        )
        assert alert["endpoint"] == "/api/orders" and alert["status"] == "open"

        # The Launchpad's config of the triage job: a prefix of the id, the mark, a note.
        marked = defs.resolve_job_def("triage_alert").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "mark_alert": {
                        "config": {
                            "alert_id": alert["alert_id"][:8],
                            "mark": "expected",
                            "note": "orders now computes tax per line",
                        }
                    }
                }
            },
        )
        assert marked.success
        # A mistyped id fails the step with the reason, once (not retried).
        typo = defs.resolve_job_def("triage_alert").execute_in_process(
            instance=instance,
            run_config={"ops": {"mark_alert": {"config": {"alert_id": "zz", "mark": "invalid"}}}},
            raise_on_error=False,
        )
        (failure,) = typo.get_step_failure_events()
        assert "no alert with an id starting with 'zz'" in failure.step_failure_data.error.message
        assert not typo.filter_events(
            lambda e: e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        )
        # The person who typed it sees why in the UI; nobody is paged.
        alerts_before = warehouse.read("alerts").height
        alert_on_run_failure(
            dg.build_run_status_sensor_context(
                sensor_name="alert_on_run_failure",
                dagster_instance=instance,
                dagster_run=typo.dagster_run,
                dagster_event=typo.get_run_failure_event(),
                resources=defs.resources,
            )
        )
        assert warehouse.read("alerts").height == alerts_before
        after = warehouse.read("alerts").filter(pl.col("alert_id") == alert["alert_id"])
        assert after["status"][0] == "resolved"
        (mark,) = warehouse.read("triage").iter_rows(named=True)
        assert (mark["kind"], mark["run_id"], mark["mark"]) == ("regression", last, "expected")
        # The channel told it opened is owed its resolution (sent by the next delivery).
        owed = warehouse.read("alert_deliveries").filter(
            (pl.col("alert_id") == alert["alert_id"]) & pl.col("delivered_at").is_null()
        )
        assert owed["event"].to_list() == ["resolved"]

        # Judged again, the marked run raises nothing and notifies nobody (but the resolution
        # owed, delivered by this pass).
        sent = len(hook.bodies)
        job = defs.resolve_job_def("ci_stage")
        assert alerted(job.execute_in_process(instance=instance, partition_key=last))
        assert (
            warehouse.read("alerts")
            .filter(pl.col("status") == "open")
            .filter(pl.col("kind") == "regression")
            .height
            == 0
        )
        assert [(b["event"], b["alert_id"]) for b in hook.bodies[sent:]] == [
            ("resolved", alert["alert_id"])
        ]

        # The next run is as slow as the accepted one: it is compared with runs from the
        # accepted one on, and nothing regressed.
        following = demo_runs(4, duration_s=20.0, now=NOW - timedelta(days=1))[-1]
        upload_run(
            store,
            [following.write(tmp_path / "runs") / "requests.ndjson"],
            following.manifest,
        )
        again = sense_and_run(defs, instance, cursor=tick.cursor)
        assert again.run_ids == [following.manifest.run_id]
    verdicts = warehouse.read("verdicts", [following.manifest.run_id])
    assert verdicts["baseline_runs"][0] == last
    assert not verdicts["regression"].any()
    assert len(hook.bodies) == sent + 1  # the resolution owed, nothing since
