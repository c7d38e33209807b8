"""Paired comparisons of two versions over the same scenarios and endpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats
from typer.testing import CliRunner

from metrics_pipeline.analysis.versions import compare_versions
from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.stats import benjamini_hochberg, compare_paired
from metrics_pipeline.storage import Warehouse

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_paired_comparison_against_an_independent_wilcoxon():
    base = np.array([10.0, 20, 35, 50, 80, 120, 9, 14])
    cand = base * np.array([1.25, 1.3, 1.2, 1.28, 1.22, 1.35, 1.27, 1.31])
    result = compare_paired(base, cand)
    ratios = np.log(cand / base)
    assert result.p_value == pytest.approx(stats.wilcoxon(ratios).pvalue)
    assert result.change == pytest.approx(np.exp(np.median(ratios)) - 1)
    assert result.ci_low <= result.change <= result.ci_high
    assert result.regression and result.n_baseline == 8
    # Throughput: lower is worse, so a 20 % drop is +0.25 worse (1/0.8 - 1 in log terms).
    down = compare_paired(base, base * 0.8, higher_is_worse=False)
    assert down.change == pytest.approx(0.2, abs=1e-9)
    with pytest.raises(ValueError, match="differ in length"):
        compare_paired([1.0, 2.0], [1.0])


def version_history(slowdown: float, units: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    run_rows, summary_rows = [], []
    for unit in range(units):
        level = rng.uniform(5, 200)
        for version, factor in (("1.0", 1.0), ("1.1", 1 + slowdown)):
            for repeat in range(2):
                run_id = f"u{unit}-{version}-{repeat}"
                run_rows.append(
                    {
                        "run_id": run_id,
                        "suite": "s",
                        "scenario": f"sc{unit % 4}",
                        "environment": "e",
                        "started_at": T0 + timedelta(hours=unit),
                        "service_version": version,
                        "valid": True,
                    }
                )
                value = level * factor * rng.lognormal(0, 0.03)
                summary_rows.append(
                    {
                        "run_id": run_id,
                        "endpoint": f"/e{unit}",
                        "latency_p50": value,
                        "latency_p95": 2 * value,
                        "throughput_rps": 50.0 * rng.lognormal(0, 0.02),
                    }
                )
    return conform("runs", pl.DataFrame(run_rows)), conform(
        "run_summary", pl.DataFrame(summary_rows)
    )


def test_a_consistent_slowdown_of_the_new_version_is_found_on_latency_only():
    runs, summaries = version_history(0.30)
    table = compare_versions(runs, summaries, "1.0", "1.1")
    pooled = table.filter(pl.col("endpoint").is_null())
    flagged = dict(zip(pooled["metric"], pooled["regression"], strict=True))
    assert flagged == {"latency_p50": True, "latency_p95": True, "throughput_rps": False}
    assert pooled["pairs"].to_list() == [12, 12, 12]
    p50 = pooled.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert p50["change"] == pytest.approx(0.30, abs=0.05)
    # Each endpoint on its own: 2 runs per version, their medians compared.
    units = table.filter(pl.col("endpoint").is_not_null())
    assert units.height == 12 * 3 and set(units["pairs"]) == {2}
    assert not units.filter(pl.col("metric") == "throughput_rps")["regression"].any()
    same = compare_versions(*version_history(0.0, seed=1), "1.0", "1.1")
    assert not same["regression"].any()


def test_one_endpoint_much_slower_is_found_though_the_pooled_median_does_not_move():
    # The demo's case: one run per version, one endpoint of five 60 % slower. The paired test
    # over endpoints sees a median change near 0; the endpoint's own comparison, under the
    # run-noise prior of one baseline run, sees +60 %.
    rows, summaries = [], []
    rng = np.random.default_rng(4)
    for version, hour in (("1.4.4", 0), ("1.4.5", 24)):
        run_id = f"run-{version}"
        rows.append(
            {
                "run_id": run_id,
                "suite": "checkout",
                "scenario": "browse",
                "environment": "staging",
                "started_at": T0 + timedelta(hours=hour),
                "service_version": version,
                "valid": True,
            }
        )
        for i, level in enumerate((12.0, 35.0, 48.0, 9.0, 0.6)):
            slow = 1.6 if version == "1.4.5" and i == 2 else 1.0
            value = level * slow * rng.lognormal(0, 0.03)
            summaries.append(
                {
                    "run_id": run_id,
                    "endpoint": f"/api/e{i}",
                    "latency_p50": value,
                    "latency_p95": 2.5 * value,
                    "throughput_rps": 40.0 * rng.lognormal(0, 0.02),
                }
            )
    table = compare_versions(
        conform("runs", pl.DataFrame(rows)),
        conform("run_summary", pl.DataFrame(summaries)),
        "1.4.4",
        "1.4.5",
    )
    assert not table.filter(pl.col("endpoint").is_null())["regression"].any()
    flagged = table.filter(pl.col("regression"))
    assert sorted(zip(flagged["endpoint"], flagged["metric"], strict=True)) == [
        ("/api/e2", "latency_p50"),
        ("/api/e2", "latency_p95"),
    ]
    orders = flagged.row(0, named=True)
    assert orders["change"] == pytest.approx(0.6, abs=0.1)
    assert orders["ci_low"] > 0 and orders["p_adjusted"] < 0.05


def test_versions_command(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    runs, summaries = version_history(0.30)
    warehouse = Warehouse(tmp_path / "warehouse")
    for run_id in runs["run_id"]:
        warehouse.write_partition("runs", run_id, runs.filter(pl.col("run_id") == run_id))
        warehouse.write_partition(
            "run_summary", run_id, summaries.filter(pl.col("run_id") == run_id)
        )
    result = CliRunner().invoke(app, ["versions", "1.0", "1.1", "--json"])
    assert result.exit_code == 1, result.output
    # Strict JSON (what JSON.parse and jq read): no NaN or Infinity.
    rows = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert {row["metric"] for row in rows if row["regression"]} == {
        "latency_p50",
        "latency_p95",
    }
    missing = CliRunner().invoke(app, ["versions", "1.0", "9.9"])
    assert missing.exit_code == 2 and "no scenario ran under both" in missing.output


def history_of(per_version: dict[str, list[list[float]]]):
    """The runs and run_summary of one combination: per version, one list of per-endpoint
    p50s per run (p95 twice the p50, throughput 40/s), runs a day apart."""
    rows, summaries, k = [], [], 0
    for version, runs in per_version.items():
        for values in runs:
            run_id = f"run-{k}"
            start = T0 + timedelta(days=k)
            rows.append(
                {
                    "run_id": run_id,
                    "suite": "s",
                    "scenario": "x",
                    "environment": "e",
                    "started_at": start,
                    "service_version": version,
                    "valid": True,
                }
            )
            summaries += [
                {
                    "run_id": run_id,
                    "endpoint": f"/e{i}",
                    "latency_p50": value,
                    "latency_p95": 2 * value,
                    "throughput_rps": 40.0,
                }
                for i, value in enumerate(values)
            ]
            k += 1
    return conform("runs", pl.DataFrame(rows)), conform("run_summary", pl.DataFrame(summaries))


def test_a_slowdown_of_every_endpoint_is_not_diluted_by_the_endpoint_rows():
    # Eight endpoints, one run per version, each about 27 % slower: the pooled test is the one
    # that sees it; adjusted together with the 24 endpoint rows it was lost (p adj. 0.105).
    rng = np.random.default_rng(11)
    levels = rng.uniform(5, 200, 8)
    old = list(levels * rng.lognormal(0, 0.02, 8))
    new = list(levels * 1.27 * rng.lognormal(0, 0.02, 8))
    table = compare_versions(*history_of({"1.0": [old], "1.1": [new]}), "1.0", "1.1")
    pooled = table.filter(pl.col("endpoint").is_null())
    assert pooled.filter(pl.col("metric") == "latency_p50")["regression"].item()
    assert pooled["p_adjusted"].to_list() == pytest.approx(
        list(benjamini_hochberg(pooled["p_value"].to_numpy())), nan_ok=True
    )


def test_identical_runs_under_both_versions_are_no_change():
    # Both sides are geometric means over the runs (a median on one side read +44 % here).
    runs = [[10.0], [30.0], [30.0]]
    table = compare_versions(*history_of({"1.0": runs, "1.1": runs}), "1.0", "1.1")
    row = table.filter(pl.col("endpoint").is_not_null() & (pl.col("metric") == "latency_p50"))
    assert row["baseline"].item() == pytest.approx(row["candidate"].item())
    assert row["change"].item() == pytest.approx(0.0, abs=1e-12)


def test_runs_that_agree_exactly_or_one_whole_step_are_no_certainty():
    # Three old runs of 12 ms, days apart, agree exactly: no spread measured, so the prior's
    # floor; whole milliseconds that move one step (4 -> 5 ms, +25 %) are no evidence.
    exact = compare_versions(
        *history_of({"1.0": [[12.0]] * 3, "1.1": [[15.0]]}), "1.0", "1.1"
    ).filter(pl.col("endpoint").is_not_null() & (pl.col("metric") == "latency_p50"))
    assert exact["p_value"].item() > 0.01 and not exact["regression"].item()
    step = compare_versions(
        *history_of({"1.0": [[4.0], [4.0], [4.0]], "1.1": [[5.0]]}), "1.0", "1.1"
    ).filter(pl.col("endpoint").is_not_null() & (pl.col("metric") == "latency_p50"))
    assert not step["regression"].item()
