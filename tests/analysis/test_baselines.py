"""Baselines: the IQR rule, dynamic windows, reference values, the YAML file and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from metrics_pipeline.analysis.baselines import (
    BaselineFileError,
    compute_baselines,
    diff_baselines,
    dynamic_baseline,
    iqr_inliers,
    load_baselines,
    pinned_runs,
    save_baselines,
    stale_judgements,
)
from metrics_pipeline.analysis.verdicts import choose_baseline
from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.storage import Warehouse

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_iqr_inliers_match_tukeys_fences_computed_by_hand():
    values = np.array([10.0, 11, 12, 13, 14, 15, 40])
    # numpy's linear percentiles: Q1 = 11.5, Q3 = 14.5, IQR = 3 -> fences [7, 19]
    assert iqr_inliers(values).tolist() == [True] * 6 + [False]
    assert iqr_inliers(np.array([1.0, 100.0, 1000.0])).all()  # too few to judge


def runs_frame(n: int) -> pl.DataFrame:
    return conform(
        "runs",
        pl.DataFrame(
            {
                "run_id": [f"r{i}" for i in range(n)],
                "suite": "s",
                "scenario": "x",
                "environment": "e",
                "started_at": [T0 + timedelta(days=i) for i in range(n)],
                "valid": True,
            }
        ),
    )


def summaries_frame(p50: dict[str, float]) -> pl.DataFrame:
    rows = [
        {"run_id": run, "endpoint": endpoint, "latency_p50": value * scale, "error_rate": 0.01}
        for run, value in p50.items()
        for endpoint, scale in (("/a", 1.0), ("/b", 3.0))
    ]
    return conform("run_summary", pl.DataFrame(rows))


def test_dynamic_baseline_leaves_out_outlier_runs():
    runs = runs_frame(8)
    p50 = {f"r{i}": 10.0 + 0.1 * i for i in range(8)} | {"r6": 30.0}
    chosen = dynamic_baseline(runs, summaries_frame(p50), n=5)
    assert chosen == ["r2", "r3", "r4", "r5", "r7"]


def test_choose_baseline_precedence_explicit_then_pinned_then_dynamic():
    runs = runs_frame(8)
    summaries = summaries_frame({f"r{i}": 10.0 for i in range(8)})
    candidate = runs.row(7, named=True)
    assert choose_baseline(runs, candidate, set(), summaries=summaries) == [
        f"r{i}" for i in range(2, 7)
    ]
    assert choose_baseline(runs, candidate, set(), summaries=summaries, pinned=["r0", "r1"]) == [
        "r0",
        "r1",
    ]
    explicit = candidate | {"baseline": "r3"}
    assert choose_baseline(runs, explicit, set(), summaries=summaries, pinned=["r0"]) == ["r3"]
    # Pinned runs no longer in the warehouse fall back to the rolling window.
    assert choose_baseline(runs, candidate, {"r6"}, summaries=summaries, pinned=["gone"]) == [
        f"r{i}" for i in range(1, 6)
    ]


def test_compute_baselines_takes_the_median_without_outliers():
    runs = runs_frame(6)
    p50 = {"r0": 10.0, "r1": 12.0, "r2": 11.0, "r3": 13.0, "r4": 50.0, "r5": 12.5}
    entries = compute_baselines(runs, summaries_frame(p50), regressed={"r4"}, n=5)
    by_key = {(e.endpoint, e.metric): e for e in entries}
    a = by_key[("/a", "latency_p50")]
    assert a.value == pytest.approx(float(np.median([10.0, 12.0, 11.0, 13.0, 12.5])))
    assert a.runs == ["r0", "r1", "r2", "r3", "r5"]
    assert by_key[("/b", "latency_p50")].value == pytest.approx(3 * a.value)
    assert by_key[("/a", "error_rate")].value == pytest.approx(0.01)


def test_file_round_trip_diff_and_clear_errors(tmp_path):
    runs = runs_frame(5)
    entries = compute_baselines(runs, summaries_frame({f"r{i}": 10.0 for i in range(5)}), set())
    path = tmp_path / "config" / "baselines.yaml"
    save_baselines(path, entries)
    assert load_baselines(path) == entries
    assert diff_baselines(entries, entries) == []
    moved = [e.model_copy(update={"value": e.value * 1.1}) for e in entries[:1]] + entries[1:]
    (change,) = diff_baselines(entries, moved)
    assert change["status"] == "changed" and change["change"] == pytest.approx(0.1)
    assert pinned_runs(entries, "s", "x", "e") == [f"r{i}" for i in range(5)]

    path.write_text("version: 1\nbaselines:\n  - suite: s\n    value: fast\n")
    with pytest.raises(BaselineFileError, match=r"baselines\.0\.value"):
        load_baselines(path)


def test_cli_update_show_and_diff(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    file = tmp_path / "baselines.yaml"
    warehouse = Warehouse(tmp_path / "warehouse")
    runs = runs_frame(5)
    summaries = summaries_frame({f"r{i}": 10.0 + i for i in range(5)})
    for run_id in runs["run_id"]:
        warehouse.write_partition("runs", run_id, runs.filter(pl.col("run_id") == run_id))
        warehouse.write_partition(
            "run_summary", run_id, summaries.filter(pl.col("run_id") == run_id)
        )
    runner = CliRunner()
    assert runner.invoke(app, ["baseline", "diff", "--file", str(file)]).exit_code == 1
    result = runner.invoke(app, ["baseline", "update", "--file", str(file)])
    assert result.exit_code == 0, result.output
    assert load_baselines(file)
    assert runner.invoke(app, ["baseline", "diff", "--file", str(file)]).exit_code == 0
    shown = runner.invoke(app, ["baseline", "show", "--file", str(file)])
    assert shown.exit_code == 0 and "latency_p50" in shown.stdout
    # An update that changes nothing a day later changes no line of the reviewed file (every
    # updated_at was rewritten).
    written = file.read_bytes()
    monkeypatch.setenv("METRICS_NOW", "2031-01-02T00:00:00Z")
    again = runner.invoke(app, ["baseline", "update", "--file", str(file)])
    assert again.exit_code == 0 and "(0 changed)" in again.stdout
    assert file.read_bytes() == written


def test_stale_judgements_are_the_baseline_runs_ingested_again_or_gone():
    h = timedelta(hours=1)
    runs = conform(
        "runs",
        pl.DataFrame(
            {
                "run_id": ["a", "b", "c", "pending"],
                "ingested_at": [T0, T0 + 2 * h, T0, T0 + 3 * h],
            }
        ),
    )
    compared = conform(
        "run_baselines",
        pl.DataFrame(
            {
                "run_id": ["x", "x", "y", "y", "z", "old"],
                "baseline_run_id": ["a", "b", "c", "gone", "pending", "b"],
                "position": [0, 1, 0, 1, 0, 0],
                # b was ingested again since x was judged; "old" recorded no ingest.
                "baseline_ingested_at": [T0, T0 + h, T0, T0, T0, None],
            }
        ),
    )
    stale = stale_judgements(runs, compared, unsettled=["pending"])
    assert stale.to_dicts() == [
        {
            "run_id": "x",
            "baseline_run_id": "b",
            "judged_against": T0 + h,
            "ingested_at": T0 + 2 * h,
        },
        {"run_id": "y", "baseline_run_id": "gone", "judged_against": T0, "ingested_at": None},
    ]
    # Once "pending" is validated, z is judged again too.
    assert stale_judgements(runs, compared)["run_id"].to_list() == ["x", "y", "z"]
