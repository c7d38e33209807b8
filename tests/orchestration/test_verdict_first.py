"""Verdict first, documents after: in a ci_stage run the verdict is judged and the alerts
delivered before the report (HTML, PDF) is rendered, whatever the executor."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import upload_demo_runs

from assets.alerting import ALERTS
from assets.analysis import VERDICTS
from assets.capacity import CAPACITY
from assets.reports import RUN_REPORT
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.reports import FILES

pytestmark = pytest.mark.slow
STEPS = {"STEP_START", "STEP_SUCCESS"}


def test_the_report_depends_on_the_alerts(settings):
    """A dependency, not an accident of the in-process order: a process per step or Celery
    keep it too."""
    graph = build_definitions(settings).resolve_asset_graph()
    assert {VERDICTS, ALERTS, CAPACITY} <= graph.get(RUN_REPORT).parent_keys


def test_the_alerts_are_out_before_the_report_is_written(settings, store, tmp_path):
    (run,) = upload_demo_runs(store, tmp_path / "runs", count=1)
    with dg.instance_for_test() as instance:
        tick = sense_and_run(build_definitions(settings), instance)
        result = tick.results[run.manifest.run_id]
        assert result.success
        logs = instance.all_logs(result.run_id)
    steps = [e for e in logs if e.dagster_event and e.dagster_event.event_type_value in STEPS]
    order = [(e.dagster_event.event_type_value, e.step_key) for e in steps]
    alerts_done = order.index(("STEP_SUCCESS", "alerts__alerts"))
    assert order.index(("STEP_SUCCESS", "analysis__verdicts")) < alerts_done
    assert alerts_done < order.index(("STEP_START", "reports__run_report"))
    # The report is the run's last step; its files were written after the alerts went out.
    assert order[-1] == ("STEP_SUCCESS", "reports__run_report")
    # File times against file times (the alerts' snapshot is the alerts step's last write):
    # the kernel's clock, whatever the process's clock says (faketime moves only the latter).
    written = list((settings.warehouse_root / "alerts").rglob("*.parquet"))
    assert written, "the alerts step wrote its snapshot"
    alerts_at = max(p.stat().st_mtime for p in written)
    folder = settings.reports_root / "runs" / run.manifest.run_id
    for name in FILES:
        assert (folder / name).stat().st_mtime >= alerts_at, name
