"""The report assets as Dagster runs them: the CI stage writes the run's four layers, the
weekly job the week's, locally and in the bucket."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from helpers import HOSTILE_ENDPOINT, HOSTILE_TAG, renamed, small_runs

from assets.reports import RUN_REPORT, WEEKLY_REPORT
from metrics_pipeline.common.text import md
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.reports import FILES
from metrics_pipeline.upload.uploader import upload_run

pytestmark = pytest.mark.slow


def materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_ci_stage_and_weekly_job_write_every_layer(settings, store, tmp_path):
    runs = renamed(small_runs(3), "/api/orders", HOSTILE_ENDPOINT, {"note": HOSTILE_TAG})
    for run in runs:
        upload_run(store, [run.write(tmp_path / "runs") / "requests.ndjson"], run.manifest)
    last = runs[-1].manifest.run_id
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(defs, instance)
        assert all(result.success for result in tick.results.values())
        weekly = defs.resolve_job_def("weekly").execute_in_process(instance=instance)
        assert weekly.success
        # A week mistyped in the Launchpad fails with why, once (it was retried 3 times).
        typo = defs.resolve_job_def("weekly").execute_in_process(
            instance=instance,
            asset_selection=[WEEKLY_REPORT],
            run_config={"ops": {"reports__weekly_report": {"config": {"week": "2026-45"}}}},
            raise_on_error=False,
        )
        (failure,) = typo.get_step_failure_events()
        assert "not an ISO week" in failure.step_failure_data.error.message
        assert not typo.filter_events(
            lambda e: e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        )

    folder = settings.reports_root / "runs" / last
    for name in FILES:
        local = (folder / name).read_bytes()
        assert local, name
        assert store.get_bytes(f"reports/runs/{last}/{name}") == local
    summary = (folder / "summary.md").read_text()
    assert "**Verdict: REGRESSION: " in summary and md(HOSTILE_ENDPOINT) in summary
    html = (folder / "report.html").read_text()
    assert "<script>window.pwned" not in html and "&lt;script&gt;window.pwned" in html
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    tables = {json.loads(line)["table"] for line in (folder / "raw.jsonl").open()}
    assert {"runs", "requests", "run_summary", "verdicts"} <= tables

    # The UI shows the same escaped summary, and where the files are.
    meta = materialization(tick.results[last], RUN_REPORT)
    assert meta["summary"] == summary and meta["verdict"] == "regression"
    assert meta["report.pdf"] == str(folder / "report.pdf")
    assert meta["bucket_prefix"] == f"reports/runs/{last}"

    # Every run got its report; the first one says it has no baseline.
    first = settings.reports_root / "runs" / runs[0].manifest.run_id / "summary.md"
    assert "NO BASELINE" in first.read_text()

    week = materialization(weekly, WEEKLY_REPORT)["week"]
    weekly_folder = settings.reports_root / "weekly" / week
    assert all((weekly_folder / name).stat().st_size > 0 for name in FILES)
    assert store.head(f"reports/weekly/{week}/report.pdf") is not None
    assert "regression(s) opened" in (weekly_folder / "summary.md").read_text()
