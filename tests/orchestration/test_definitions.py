"""The code location loads: every job, sensor and schedule resolves, in process and via CLI."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from metrics_pipeline.orchestration.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[2]


def test_every_job_sensor_and_schedule_resolves(settings):
    defs = build_definitions(settings)
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs()} >= {"ci_stage"}
    for sensor in repo.sensor_defs:
        # The alert sensors watch runs and the outbox; they start no job.
        if sensor.has_jobs:
            assert sensor.job_name in {job.name for job in repo.get_all_jobs()}
    assert {"alert_delivery_sensor", "alert_on_run_failure"} <= {s.name for s in repo.sensor_defs}
    for schedule in repo.schedule_defs:
        assert schedule.job_name in {job.name for job in repo.get_all_jobs()}
    groups = {node.group_name for node in repo.asset_graph.asset_nodes}
    assert groups == {"ingest", "warehouse", "analysis", "outputs"}
    assert set(defs.resources) == {
        "object_store",
        "warehouse",
        "baselines",
        "verdict_rules",
        "alerting",
        "reports",
        "clock",
    }
    assert dg.AssetKey(["analysis", "verdicts"]) in repo.asset_graph.get_all_asset_keys()


def test_every_asset_and_check_says_what_it_is(settings):
    repo = build_definitions(settings).get_repository_def()
    for node in repo.asset_graph.asset_nodes:
        assert node.description, node.key
    checks = list(repo.asset_graph.asset_check_keys)
    assert checks
    for key in checks:
        assert repo.asset_graph.get_check_spec(key).description, key


def test_settings_passed_in_reach_the_executors_and_schedules(settings, monkeypatch):
    """Nothing reads the environment behind the composition root's back."""
    monkeypatch.setenv("METRICS_EXECUTOR", "in_process")
    monkeypatch.setenv("METRICS_NIGHTLY_CRON", "0 3 * * *")
    chosen = dataclasses.replace(
        settings, executor="multiprocess", nightly_cron="30 1 * * *", timezone="Europe/Paris"
    )
    repo = build_definitions(chosen).get_repository_def()
    for job in repo.get_all_jobs():
        if not job.name.startswith("__"):
            assert job.executor_def.name == "multiprocess", job.name
    nightly = repo.get_schedule_def("nightly_schedule")
    assert nightly.cron_schedule == "30 1 * * *" and nightly.execution_timezone == "Europe/Paris"


@pytest.mark.slow
def test_workspace_validates_with_the_dagster_cli(tmp_path):
    env = os.environ | {"METRICS_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
