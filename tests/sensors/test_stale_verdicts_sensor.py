"""stale_verdicts_sensor: a baseline run uploaded again has the runs judged against it judged
again, once, by the CI stage's own job."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest
from conftest import upload_demo_runs
from dagster._core.test_utils import create_run_for_test
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import RUN_KEY_TAG, SENSOR_NAME_TAG, sense_and_run
from metrics_pipeline.upload.uploader import upload_run
from sensors.baselines import REJUDGED

pytestmark = pytest.mark.slow
SENSOR = "stale_verdicts_sensor"


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance):
    with dg.build_sensor_context(
        instance_ref=instance.get_ref(), definitions=defs, resources=defs.resources
    ) as context:
        return defs.resolve_sensor_def(SENSOR).evaluate_tick(context)


def orders_p50(warehouse, run_id: str) -> dict:
    verdicts = warehouse.read("verdicts", [run_id])
    return verdicts.filter(
        (pl.col("endpoint") == "/api/orders") & (pl.col("metric") == "latency_p50")
    ).row(0, named=True)


def test_a_baseline_run_uploaded_again_has_its_candidates_judged_again(
    settings, store, warehouse, tmp_path, monkeypatch
):
    # The candidate's /api/orders is 60 % slower than the baseline run's: a regression, until
    # the baseline run is uploaded again with that endpoint as slow (it had been measured
    # against a cache, say). The candidate's verdict must then follow the rows that exist.
    base, candidate = upload_demo_runs(store, tmp_path / "runs", count=2)
    base_id, candidate_id = base.manifest.run_id, candidate.manifest.run_id
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        first = sense_and_run(defs, instance)
        assert all(result.success for result in first.results.values())
        assert orders_p50(warehouse, candidate_id)["verdict"] == "regression"
        alerts = warehouse.read("alerts")
        assert set(alerts.filter(pl.col("kind") == "regression")["status"]) == {"open"}
        assert evaluate(defs, instance).skip_message  # nothing stale yet

        corrected = base.write(tmp_path / "corrected") / "requests.ndjson"
        records = [json.loads(line) for line in corrected.read_text().splitlines()]
        for record in records:
            if record["endpoint"] == "/api/orders":
                record["latency_ms"] *= 1.6
        corrected.write_text("".join(json.dumps(record) + "\n" for record in records))
        upload_run(store, [corrected], base.manifest)
        again = sense_and_run(defs, instance, cursor=first.cursor)
        assert again.run_ids == [base_id] and again.results[base_id].success

        # `check` names the stale run and why, and does not fail for it.
        monkeypatch.setenv("METRICS_HOME", str(settings.home))
        checked = CliRunner().invoke(app, ["check"])
        assert checked.exit_code == 0, checked.output
        assert f"{candidate_id}: baseline run {base_id} as ingested at" in checked.output

        # While a job of the baseline run (or of the candidate) is queued or under way, the
        # candidate waits: the baseline run's new version is valid before its job has made
        # its verdicts, which decide whether it is a baseline run at all.
        busy = create_run_for_test(
            instance,
            job_name="ci_stage",
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": base_id},
        )
        assert "1 wait for jobs under way" in evaluate(defs, instance).skip_message
        instance.report_run_canceled(busy)

        tick = evaluate(defs, instance)
        (request,) = tick.run_requests
        assert request.partition_key == candidate_id
        assert set(request.asset_selection) == set(REJUDGED)
        assert base_id in request.run_key
        result = defs.resolve_job_def("ci_stage").execute_in_process(
            instance=instance,
            partition_key=candidate_id,
            asset_selection=request.asset_selection,
            tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR},
        )
        assert result.success
        rejudged = orders_p50(warehouse, candidate_id)
        assert rejudged["verdict"] == "ok" and abs(rejudged["change"]) < 0.15
        # Its regression alerts came from the old rows: the clean verdicts resolve them. The
        # run is as slow as before in absolute terms: its SLA breach stays open.
        status = dict(warehouse.read("alerts").group_by("kind").agg("status").iter_rows())
        assert set(status["regression"]) == {"resolved"} and status["sla_breach"] == ["open"]
        recorded = warehouse.read("run_baselines", [candidate_id]).row(0, named=True)
        now = warehouse.read("runs", [base_id]).row(0, named=True)
        assert recorded["baseline_ingested_at"] == now["ingested_at"]
        # Judged again once: nothing is stale any more, and the run key is spent.
        assert evaluate(defs, instance).skip_message
        assert "judged against" not in CliRunner().invoke(app, ["check"]).output

        # Retention took the candidate's requests (it keeps verdicts far longer): judged
        # again, it would have none and lose its verdicts. It is listed, not requested.
        warehouse.delete_partition("requests", candidate_id)
        upload_run(store, [base.write(tmp_path / "third") / "requests.ndjson"], base.manifest)
        third = sense_and_run(defs, instance, cursor=again.cursor)
        assert third.run_ids == [base_id]
        assert "still has its raw rows" in evaluate(defs, instance).skip_message
        listed = CliRunner().invoke(app, ["check"]).output
        assert f"{candidate_id}: baseline run {base_id}" in listed and "past retention" in listed
        assert orders_p50(warehouse, candidate_id) == rejudged
