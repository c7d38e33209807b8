"""The CI stage as Dagster runs it: sensor -> partitions -> ingest, check, summary, verdicts."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import numpy as np
import polars as pl
import pytest
from conftest import upload_demo_runs

from assets.analysis import VERDICTS
from assets.ingest import EXPECTATIONS, REQUESTS
from assets.reports import RUN_REPORT
from assets.retention import RETENTION
from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.orchestration.partitions import runs_partitions
from metrics_pipeline.stats.sketch import sketch_quantiles
from metrics_pipeline.upload.uploader import upload_run

pytestmark = pytest.mark.slow


def materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_uploaded_runs_become_verdicts_flagging_only_the_slowed_endpoint(
    settings, store, warehouse, tmp_path
):
    runs = upload_demo_runs(store, tmp_path / "runs", count=4)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(settings), instance)
        assert tick.run_ids == [r.manifest.run_id for r in runs]  # oldest first
        assert all(result.success for result in tick.results.values())
        assert set(instance.get_dynamic_partitions(runs_partitions.name)) == set(tick.run_ids)

        last = runs[-1].manifest.run_id
        verdicts = warehouse.read("verdicts", [last])
        flagged = verdicts.filter(pl.col("regression"))
        assert set(flagged["endpoint"]) == {"/api/orders"}
        assert "latency_p50" in set(flagged["metric"])
        # The slowdown was 60 %: the estimate and its interval must say so.
        p50 = flagged.filter(pl.col("metric") == "latency_p50").row(0, named=True)
        assert 0.45 < p50["change"] < 0.75 and p50["ci_low"] < 0.6 < p50["ci_high"]
        assert verdicts["baseline_runs"][0] == ",".join(r.manifest.run_id for r in runs[:-1])

        metadata = materialization(tick.results[last], VERDICTS)
        assert metadata["regressions"] == flagged.height
        assert "REGRESSION" in metadata["verdicts"] and "/api/orders" in metadata["verdicts"]
        # The UI shows the state without opening Markdown: plain values, a red check, run tags.
        assert metadata["regressed_endpoints"] == "/api/orders"
        assert "/api/orders" in metadata["regression 1"] and "% worse" in metadata["regression 1"]
        for run_id, result in tick.results.items():
            checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
            assert checks == {"great_expectations": True, "no_regression": run_id != last}
            # Recorded on the run's partition: the next clean run does not turn it green.
            assert {c.partition for c in result.get_asset_check_evaluations()} == {run_id}
            tags = instance.get_run_by_id(result.run_id).tags
            assert tags["metrics/regressed"] == ("/api/orders" if run_id == last else "none")
        assert instance.get_run_by_id(tick.results[last].run_id).tags["metrics/verdict"] == (
            "regression"
        )

        # The first run has nothing to compare with: no verdict, no crash.
        first = warehouse.read("verdicts", [runs[0].manifest.run_id])
        assert not first["regression"].any() and set(first["note"]) == {"no baseline data"}

        # A second tick with the cursor sees nothing new.
        again = sense_and_run(build_definitions(settings), instance, cursor=tick.cursor)
        assert again.run_ids == [] and again.skipped

        # The daemon (`make dev` after `make demo`) starts without that cursor: each run key it
        # requests is already carried by a run of this sensor, which is how it skips them.
        defs = build_definitions(settings)
        with dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=defs.resources
        ) as context:
            fresh = defs.resolve_sensor_def("new_run_sensor").evaluate_tick(context)
        assert len(fresh.run_requests) == len(runs)
        for request in fresh.run_requests:
            launched = instance.get_runs(
                filters=dg.RunsFilter(
                    tags={
                        "dagster/run_key": request.run_key,
                        "dagster/sensor_name": "new_run_sensor",
                    }
                )
            )
            assert len(launched) == 1, request.run_key


def test_rematerializing_a_partition_never_duplicates_rows(settings, store, warehouse, tmp_path):
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1)
    run_id = run.manifest.run_id
    with dg.instance_for_test() as instance:
        job = build_definitions(settings).resolve_job_def("ci_stage")
        instance.add_dynamic_partitions(runs_partitions.name, [run_id])
        counts = []
        for _ in range(2):
            assert job.execute_in_process(instance=instance, partition_key=run_id).success
            counts.append(
                {
                    t: warehouse.read(t, [run_id]).height
                    for t in ("requests", "run_summary", "runs", "latency_sketches")
                }
            )
    assert counts[0] == counts[1]
    assert counts[0]["requests"] == len(run.records)
    assert counts[0]["runs"] == 1 and counts[0]["run_summary"] == 5
    # The run's sketches give its percentiles within 1 % of the exact ones.
    sketched = sketch_quantiles(
        warehouse.read("latency_sketches", [run_id]), {"p95": 0.95}, by=["endpoint"]
    )
    ok = warehouse.read("requests", [run_id]).filter(pl.col("ok"))
    for row in sketched.iter_rows(named=True):
        exact = ok.filter(pl.col("endpoint") == row["endpoint"])["latency_ms"].to_numpy()
        truth = float(np.quantile(exact, 0.95, method="lower"))
        assert abs(row["p95"] - truth) <= 0.01 * truth


def test_malformed_lines_are_quarantined_and_accounted_for(settings, store, warehouse, tmp_path):
    (run,) = demo_runs(1, duration_s=20.0)
    run_id = run.manifest.run_id
    folder = run.write(tmp_path / "runs")
    good = (folder / "requests.ndjson").read_bytes()
    bad = b'{"ts": "2026-11-01T02:00:01Z", "endpoint": "/x", "latency_ms": -5}\nnot json\n'
    # The last line is bad but whole (with its newline): one cut off would be a file cut short.
    (folder / "more.jsonl").write_bytes(bad + b'{"endpoint": "/y", "latency_ms": 3\n')
    upload_run(store, [folder / "requests.ndjson", folder / "more.jsonl"], run.manifest)
    with dg.instance_for_test() as instance:
        job = build_definitions(settings).resolve_job_def("ci_stage")
        instance.add_dynamic_partitions(runs_partitions.name, [run_id])
        result = job.execute_in_process(instance=instance, partition_key=run_id)
    assert result.success
    meta = materialization(result, REQUESTS)
    assert meta["rows_read"] == good.count(b"\n") + 3
    assert meta["rows_read"] == meta["rows_accepted"] + meta["rows_quarantined"]
    assert meta["rows_quarantined"] == 3
    quarantine = warehouse.read("quarantine", [run_id]).sort("line_no")
    assert quarantine["reason"].to_list() == [
        "negative: latency_ms",
        "invalid JSON",
        "invalid JSON",
    ]
    assert quarantine["line_no"].to_list() == [1, 2, 3]
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == EXPECTATIONS]
    assert check.passed


def test_invalid_manifest_is_reported_and_does_not_stop_other_runs(
    settings, store, warehouse, tmp_path
):
    runs = upload_demo_runs(store, tmp_path / "runs", count=2)
    store.put_bytes("raw/checkout/broken-1/requests.ndjson", b"")
    store.put_bytes(
        "raw/checkout/broken-1/run.json",
        b'{"run_id": "broken-1", "suite": "checkout", "scenario": "s", "environment": "e",'
        b' "started_at": "yesterday"}',
    )
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(settings), instance)
    assert tick.run_ids == [r.manifest.run_id for r in runs]
    assert all(r.success for r in tick.results.values())
    assert "broken-1" not in set(warehouse.run_ids("runs"))


def test_explicit_baseline_in_the_manifest_wins(settings, store, warehouse, tmp_path):
    runs = upload_demo_runs(store, tmp_path / "runs", count=3)
    first, last = runs[0].manifest.run_id, runs[-1].manifest
    pinned = last.model_copy(update={"baseline": first})
    store.put_bytes(
        store.run_prefix(last.suite, last.run_id) + "run.json", pinned.model_dump_json().encode()
    )
    with dg.instance_for_test() as instance:
        sense_and_run(build_definitions(settings), instance)
    assert warehouse.read("run_baselines", [last.run_id])["baseline_run_id"].to_list() == [first]


def test_a_run_failing_table_rules_is_marked_invalid_and_blocks_its_verdict(
    settings, store, warehouse, tmp_path
):
    manifest = demo_runs(1)[0].manifest.model_copy(update={"run_id": "empty-1"})
    store.put_bytes("raw/checkout/empty-1/notes.csv", b"this,is\nnot,a,load,test\n")
    store.put_bytes("raw/checkout/empty-1/run.json", manifest.model_dump_json().encode())
    with dg.instance_for_test() as instance:
        job = build_definitions(settings).resolve_job_def("ci_stage")
        instance.add_dynamic_partitions(runs_partitions.name, ["empty-1"])
        result = job.execute_in_process(
            instance=instance, partition_key="empty-1", raise_on_error=False
        )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    run = warehouse.read("runs", ["empty-1"]).row(0, named=True)
    assert run["valid"] is False and "no request or interval data" in run["invalid_reason"]
    # The blocking check stops the downstream assets: no verdict for an invalid run.
    assert warehouse.read("verdicts", ["empty-1"]).height == 0
    assert warehouse.read("quarantine", ["empty-1"])["reason"].to_list() == ["unknown format"]


def test_a_reupload_with_changed_content_replaces_the_run(settings, store, warehouse, tmp_path):
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1)
    run_id = run.manifest.run_id
    prefix = store.run_prefix(run.manifest.suite, run_id)
    with dg.instance_for_test() as instance:
        first = sense_and_run(build_definitions(settings), instance)
        assert warehouse.read("requests", [run_id]).height == len(run.records)

        kept = store.get_bytes(prefix + "requests.ndjson").splitlines(keepends=True)[:100]
        store.put_bytes(prefix + "requests.ndjson", b"".join(kept))
        store.put_bytes(prefix + "run.json", run.manifest.model_dump_json(indent=1).encode())
        second = sense_and_run(build_definitions(settings), instance, cursor=first.cursor)
    assert second.run_ids == [run_id]
    assert warehouse.read("requests", [run_id]).height == 100
    assert warehouse.read("runs", [run_id]).height == 1


def test_a_reupload_that_is_invalid_replaces_the_report_and_withdraws_its_alerts(
    settings, store, warehouse, tmp_path
):
    # The last run regressed (an alert, a report saying REGRESSION); uploaded again with 5 %
    # of its lines broken it is invalid: its old report and alert must not stand.
    runs = upload_demo_runs(store, tmp_path / "runs", count=3)
    last = runs[-1]
    run_id = last.manifest.run_id
    report = settings.reports_root / "runs" / run_id / "summary.md"
    with dg.instance_for_test() as instance:
        first = sense_and_run(build_definitions(settings), instance)
        assert "REGRESSION" in report.read_text()
        alerts = warehouse.read("alerts").filter(pl.col("kind") == "regression")
        assert alerts["status"].to_list() == ["open"]

        folder = last.write(tmp_path / "again")
        lines = (folder / "requests.ndjson").read_text().splitlines(keepends=True)
        broken = ["{broken\n" if i % 20 == 0 else line for i, line in enumerate(lines)]
        (folder / "requests.ndjson").write_text("".join(broken))
        upload_run(store, [folder / "requests.ndjson"], last.manifest)
        second = sense_and_run(build_definitions(settings), instance, cursor=first.cursor)
        # The UI's latest verdicts and report of the run say invalid, not what the first
        # version got, and link the INVALID report.
        for key in (VERDICTS, RUN_REPORT):
            event = instance.get_latest_materialization_event(key)
            assert event.asset_materialization.partition == run_id
            shown = {k: v.value for k, v in event.asset_materialization.metadata.items()}
            assert shown["verdict"] == "invalid" and "INVALID" in shown["summary"]
            assert shown["summary.md"] == str(report)
    assert second.invalid == [run_id]
    assert "INVALID" in report.read_text() and "REGRESSION" not in report.read_text()
    uploaded = store.get_bytes(f"reports/runs/{run_id}/summary.md").decode()
    assert "INVALID" in uploaded
    alert = warehouse.read("alerts").filter(pl.col("kind") == "regression").row(0, named=True)
    assert alert["status"] == "resolved"


def test_the_verdict_rules_file_sets_the_threshold_of_a_suite(settings, store, warehouse, tmp_path):
    # The last demo run's /api/orders is 60 % slower; a suite that only counts doubling
    # (threshold 100 %) gets no regression from it.
    rules = tmp_path / "verdicts.yaml"
    rules.write_text("rules: [{scope: {suites: [checkout]}, threshold: 1.0}]\n")
    runs = upload_demo_runs(store, tmp_path / "runs", count=3)
    with dg.instance_for_test() as instance:
        defs = build_definitions(replace(settings, verdict_rules=rules))
        tick = sense_and_run(defs, instance)
        assert all(result.success for result in tick.results.values())
    verdicts = warehouse.read("verdicts", [runs[-1].manifest.run_id])
    orders = verdicts.filter(
        (pl.col("endpoint") == "/api/orders") & (pl.col("metric") == "latency_p50")
    ).row(0, named=True)
    assert 0.45 < orders["change"] < 0.75 and orders["verdict"] == "ok"


def test_a_configuration_file_that_does_not_parse_fails_its_step_once(
    settings, store, warehouse, tmp_path
):
    # Retrying cannot mend a file: the step fails at once with the file's problem, where the
    # jobs' retry policy used to repeat it three times (7 s of back-off per run).
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1)
    settings.baselines_file.write_text("baselines: [")
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(settings), instance)
        (result,) = tick.results.values()
        assert not result.success
        events = result.all_events
        assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
        (failure,) = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert failure.step_key == "analysis__baseline"
        assert "not valid YAML" in failure.step_failure_data.error.message
    # What the steps before it did stands: the run is ingested.
    assert run.manifest.run_id in set(warehouse.run_ids("runs"))


def test_retention_with_a_baseline_file_that_does_not_parse_fails_once(settings):
    # The nightly job's retention step reads the same file: stopped at once, nothing deleted.
    settings.baselines_file.write_text("baselines: [")
    nightly = build_definitions(settings).resolve_job_def("nightly")
    with dg.instance_for_test() as instance:
        result = nightly.execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=[RETENTION]
        )
    events = result.all_events
    assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    (failure,) = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "not valid YAML" in failure.step_failure_data.error.message
