"""The metrics-pipeline command: compare (a CI gate), ingest, upload and the demo."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.storage import Warehouse

runner = CliRunner()
JSON_KEYS = {
    "endpoint",
    "metric",
    "baseline",
    "candidate",
    "change",
    "ci_low",
    "ci_high",
    "p_value",
    "regression",
}


def slowed_copy(
    source: Path, target: Path, endpoint: str, factor: float, days_earlier: int = 0
) -> Path:
    lines = []
    shift = timedelta(days=days_earlier)
    for line in source.read_text().splitlines():
        record = json.loads(line)
        if record["name"] == endpoint:
            record["response_time"] *= factor
        if days_earlier:  # a run of the same service taken earlier
            record["timestamp"] -= shift.total_seconds()
            moved = datetime.fromisoformat(record["time"]) - shift
            record["time"] = moved.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines.append(json.dumps(record))
    target.write_text("\n".join(lines) + "\n")
    return target


def test_compare_a_fixture_with_itself_finds_no_regression(fixtures_dir):
    locust = fixtures_dir / "locust" / "requests.ndjson"
    result = runner.invoke(app, ["compare", str(locust), str(locust), "--json"])
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.stdout)
    assert verdicts and all(set(v) >= JSON_KEYS for v in verdicts)
    assert not any(v["regression"] for v in verdicts)
    assert {v["endpoint"] for v in verdicts} == {"/", "/api/items", "/api/orders", "/api/slow"}


def test_compare_flags_exactly_the_slowed_endpoint_and_exits_1(fixtures_dir, tmp_path):
    locust = fixtures_dir / "locust" / "requests.ndjson"
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.6)
    result = runner.invoke(app, ["compare", str(locust), str(slow), "--json"])
    assert result.exit_code == 1, result.output
    flagged = [v for v in json.loads(result.stdout) if v["regression"]]
    assert {v["endpoint"] for v in flagged} == {"/api/slow"}
    p50 = next(v for v in flagged if v["metric"] == "latency_p50")
    assert p50["change"] == pytest.approx(0.6, abs=1e-9)
    assert p50["ci_low"] <= 0.6 <= p50["ci_high"]
    assert p50["noise"] == "prior 10% + 0.5 abs."

    table = runner.invoke(app, ["compare", str(locust), str(slow)])
    assert table.exit_code == 1 and "REGRESSION" in table.stdout
    assert f"{locust}->{slow}" in "".join(table.stdout.split())  # in argument order


def test_compare_with_one_baseline_run_weighs_changes_against_the_assumed_run_noise(
    fixtures_dir, tmp_path
):
    # +30 % is within the spread of two runs 10 % noisy each; told that runs vary by 2 %, the
    # same change is a regression.
    locust = fixtures_dir / "locust" / "requests.ndjson"
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.3)
    assumed = runner.invoke(app, ["compare", str(locust), str(slow)])
    assert assumed.exit_code == 0
    assert "one baseline run, so the spread between identical runs is assumed" in assumed.stderr
    assert "or --suite, --scenario and --env to measure it" in assumed.stderr
    # Asked for the combination's history and there is none: said, and not suggested again.
    combination = ["--suite", "s", "--scenario", "b", "--env", "e"]
    unknown = runner.invoke(
        app, ["compare", str(locust), str(slow), *combination], env={"METRICS_HOME": str(tmp_path)}
    )
    assert "no earlier accepted runs of s/b/e in the warehouse" in unknown.stderr
    assert "is assumed" in unknown.stderr and "--suite" not in unknown.stderr
    strict = runner.invoke(app, ["compare", str(locust), str(slow), "--run-noise", "0.02"])
    assert strict.exit_code == 1, strict.output
    other = slowed_copy(locust, tmp_path / "other.ndjson", "/api/slow", 1.02)
    several = runner.invoke(app, ["compare", str(locust), str(other), str(slow)])
    assert several.exit_code in (0, 1), several.output
    assert "is assumed" not in several.stderr


def test_compare_applies_the_verdict_rules_of_the_suite_it_is_told(
    fixtures_dir, tmp_path, monkeypatch
):
    # The same +30 % against one baseline run: the rules file says checkout's runs vary by
    # 2 %, so with --suite checkout it is a regression; an explicit --run-noise wins.
    locust = fixtures_dir / "locust" / "requests.ndjson"
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.3)
    rules = tmp_path / "verdicts.yaml"
    rules.write_text("rules: [{scope: {suites: [checkout]}, run_noise: 0.02}]\n")
    monkeypatch.setenv("METRICS_VERDICT_RULES", str(rules))
    compare = ["compare", str(locust), str(slow)]
    assert runner.invoke(app, compare).exit_code == 0
    assert runner.invoke(app, [*compare, "--suite", "search"]).exit_code == 0
    assert runner.invoke(app, [*compare, "--suite", "checkout"]).exit_code == 1
    assert (
        runner.invoke(app, [*compare, "--suite", "checkout", "--run-noise", "0.1"]).exit_code == 0
    )
    rules.write_text("rules: [{run_noise: -1}]\n")
    broken = runner.invoke(app, compare)
    assert broken.exit_code == 2 and str(rules) in broken.output


def test_compare_takes_several_baseline_runs(fixtures_dir, tmp_path):
    locust = fixtures_dir / "locust" / "requests.ndjson"
    bases = [
        slowed_copy(locust, tmp_path / f"b{i}.ndjson", "/api/slow", f)
        for i, f in enumerate((0.95, 1.0, 1.05, 0.98, 1.02))
    ]
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.5)
    result = runner.invoke(app, ["compare", *map(str, bases), str(slow), "--json"])
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    p50 = next(v for v in rows if v["endpoint"] == "/api/slow" and v["metric"] == "latency_p50")
    # The runs agree within 5 %: the 10 % prior is the floor of their noise.
    assert p50["regression"] and "(at least; " in p50["noise"]


def test_compare_exits_2_when_nothing_is_comparable(fixtures_dir, tmp_path):
    locust = fixtures_dir / "locust" / "requests.ndjson"
    renamed = tmp_path / "other.ndjson"
    records = [json.loads(line) for line in locust.read_text().splitlines()]
    renamed.write_text("".join(json.dumps(r | {"name": "/v2" + r["name"]}) + "\n" for r in records))
    result = runner.invoke(app, ["compare", str(locust), str(renamed)])
    assert result.exit_code == 2
    assert "nothing to compare" in result.output
    assert "MISSING" in result.output
    # Said on stderr too, where a CI log is read: each endpoint the candidate lost.
    assert "missing: /api/slow is in the baseline, not in the candidate" in result.stderr


def canonical_run(
    path: Path, rng: np.random.Generator, *, n: int, scale: float = 1.0, errors: float = 0.0
) -> Path:
    """A run of canonical request lines: endpoints /a and /b, ``n`` requests each, log-normal
    latencies around 50 ms times ``scale``, a share ``errors`` of them HTTP 500, 20 requests
    per second."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = []
    for endpoint in ("/a", "/b"):
        failed = rng.random(n) < errors
        for i, latency in enumerate(50 * scale * rng.lognormal(0, 0.3, n)):
            ts = (t0 + timedelta(seconds=i / 20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            record = {"ts": ts, "endpoint": endpoint, "latency_ms": latency}
            lines.append(json.dumps(record | {"status": 500 if failed[i] else 200}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_calls_an_untestable_candidate_suspect_and_exits_2(tmp_path):
    # Ten times slower, but 15 requests per endpoint: no percentile of it can be tested
    # against the baseline runs' 2,000 requests. Not "ok", not a regression: suspect, and
    # nothing was compared.
    rng = np.random.default_rng(7)
    bases = [canonical_run(tmp_path / f"b{i}.ndjson", rng, n=2000, errors=0.01) for i in range(3)]
    tiny = canonical_run(tmp_path / "tiny.ndjson", rng, n=15, scale=10)
    result = runner.invoke(app, ["compare", *map(str, bases), str(tiny), "--json"])
    # The error rates of 15 requests were tested (the baseline runs have errors): no
    # performance comparison all the same.
    assert result.exit_code == 2, result.output
    rows = {(r["endpoint"], r["metric"]): r for r in json.loads(result.stdout)}
    p50 = rows[("/a", "latency_p50")]
    assert p50["verdict"] == "suspect" and not p50["regression"]
    assert p50["change"] == pytest.approx(9, rel=0.5) and p50["p_value"] is None
    assert "no latency could be tested: the candidate has too few values" in result.stderr
    assert any(r["metric"] == "error_rate" and r["p_adjusted"] is not None for r in rows.values())
    assert "suspect: /a latency_p50" in result.stderr
    table = runner.invoke(app, ["compare", *map(str, bases), str(tiny)])
    assert "SUSPECT" in table.stdout
    assert "nan" not in table.stdout  # the throughput of 15 requests in 0.7 s is "-"


def test_compare_of_runs_too_small_to_test_says_so(tmp_path):
    rng = np.random.default_rng(8)
    runs = [canonical_run(tmp_path / f"r{i}.ndjson", rng, n=15) for i in range(3)]
    result = runner.invoke(app, ["compare", *map(str, runs)])
    assert result.exit_code == 2
    assert "no latency could be tested: too few values in the runs" in result.stderr
    # Every request failed, in every run: error rates alike, no latency at all.
    failed = [canonical_run(tmp_path / f"f{i}.ndjson", rng, n=500, errors=1.0) for i in range(2)]
    result = runner.invoke(app, ["compare", *map(str, failed)])
    assert result.exit_code == 2
    assert "no latency could be tested: no successful request in a run" in result.stderr


def test_compare_does_not_count_whole_machine_rows_as_compared(fixtures_dir, tmp_path):
    # Every endpoint renamed: only the host's cpu and memory rows are shared, and those are
    # reported, never judged.
    locust = fixtures_dir / "locust"
    base, cand = tmp_path / "base", tmp_path / "cand"
    for folder in (base, cand):
        folder.mkdir()
        (folder / "sysmon.ndjson").write_bytes((locust / "sysmon.ndjson").read_bytes())
    (base / "requests.ndjson").write_bytes((locust / "requests.ndjson").read_bytes())
    records = [json.loads(line) for line in (locust / "requests.ndjson").read_text().splitlines()]
    (cand / "requests.ndjson").write_text(
        "".join(json.dumps(r | {"name": "/v2" + r["name"]}) + "\n" for r in records)
    )
    result = runner.invoke(app, ["compare", str(base), str(cand)])
    assert result.exit_code == 2, result.output
    assert "nothing to compare" in result.stderr


def test_compare_names_a_folder_without_result_files(tmp_path, fixtures_dir):
    locust = fixtures_dir / "locust" / "requests.ndjson"
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["compare", str(tmp_path / "empty"), str(locust)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: no request or interval data in {tmp_path / 'empty'}: no result files there"
    )


def test_compare_refuses_a_baseline_run_given_twice(fixtures_dir, tmp_path):
    # Two copies of one run agree perfectly: taken as two runs they would shrink the
    # measured run noise and add a degree of freedom.
    locust = fixtures_dir / "locust" / "requests.ndjson"
    copy = tmp_path / "copy.ndjson"
    copy.write_bytes(locust.read_bytes())
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.4)
    twice = runner.invoke(app, ["compare", str(locust), str(copy), str(slow)])
    assert twice.exit_code == 2
    assert "baseline runs 1 and 2 hold the same data" in twice.stderr
    other = slowed_copy(locust, tmp_path / "other.ndjson", "/api/slow", 1.02)
    itself = runner.invoke(app, ["compare", str(locust), str(other), str(copy)])
    assert itself.exit_code == 0, itself.output
    assert "the candidate holds the same data as a baseline run" in itself.stderr
    alone = runner.invoke(app, ["compare", str(locust), str(copy)])
    assert alone.exit_code == 0 and "holds the same data as a baseline run" in alone.stderr
    # A run's folder and its request file: one run, though only the folder has the system
    # samples (all the tables were compared, so the two passed for two runs).
    run = tmp_path / "run"
    run.mkdir()
    (run / "requests.ndjson").write_bytes(locust.read_bytes())
    (run / "sysmon.ndjson").write_bytes((fixtures_dir / "locust" / "sysmon.ndjson").read_bytes())
    folder_and_file = runner.invoke(app, ["compare", str(run), str(locust), str(slow)])
    assert folder_and_file.exit_code == 2
    assert "baseline runs 1 and 2 hold the same data" in folder_and_file.stderr


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-0.1"])
def test_compare_refuses_a_run_noise_that_is_not_a_finite_spread(fixtures_dir, value):
    locust = str(fixtures_dir / "locust" / "requests.ndjson")
    result = runner.invoke(app, ["compare", locust, locust, "--run-noise", value])
    assert result.exit_code == 2
    assert "finite --run-noise" in result.stderr


def test_compare_says_when_the_runs_hold_different_kinds_of_data(fixtures_dir, tmp_path):
    # Per-request rows on one side, only interval aggregates (Artillery) on the other:
    # nothing to compare, and the message says why; a baseline run of the other kind among
    # runs of the candidate's kind is named as unused, and "one baseline run" counts the
    # runs used.
    locust = fixtures_dir / "locust" / "requests.ndjson"
    artillery = fixtures_dir / "artillery" / "report.json"
    for pair in ((locust, artillery), (artillery, locust)):
        for json_flag in ([], ["--json"]):
            result = runner.invoke(app, ["compare", *map(str, pair), *json_flag])
            assert result.exit_code == 2
            assert "compare runs of the same kind" in result.stderr
            # Only the error: no table (or JSON) of rows without a baseline before it.
            assert result.stdout == ""
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.02)
    mixed = runner.invoke(app, ["compare", str(locust), str(artillery), str(slow), "--json"])
    assert mixed.exit_code == 0, mixed.output
    assert f"baseline 2 ({artillery}) was not used" in " ".join(mixed.stderr.split())
    assert "one baseline run, so the spread" in mixed.stderr
    assert {r["baseline_runs"] for r in json.loads(mixed.stdout) if r["p_adjusted"]} == {
        "baseline 1"
    }


def test_compare_refuses_a_candidate_whose_intervals_share_no_endpoint_with_the_baseline(
    fixtures_dir, tmp_path
):
    # Per-request rows and Locust's default history (the "Aggregated" rows alone) against
    # an interval-only baseline run: nothing per endpoint in common, said before any table.
    source = fixtures_dir / "locust"
    base, cand = tmp_path / "base", tmp_path / "cand"
    base.mkdir(), cand.mkdir()
    history = (source / "locust_stats_history.csv").read_text().splitlines()
    (base / "locust_stats_history.csv").write_text("\n".join(history) + "\n")
    aggregated = [history[0], *(line for line in history[1:] if ",Aggregated," in line)]
    (cand / "locust_stats_history.csv").write_text("\n".join(aggregated) + "\n")
    (cand / "requests.ndjson").write_bytes((source / "requests.ndjson").read_bytes())
    result = runner.invoke(app, ["compare", str(base), str(cand)])
    assert result.exit_code == 2
    assert "compare runs of the same kind" in result.stderr and result.stdout == ""


def test_compare_judges_a_run_with_both_kinds_on_the_kind_its_baseline_has(tmp_path):
    # Locust's own CSVs as the baseline, a candidate folder with per-request rows and the
    # same CSVs: judged on the intervals, and the baseline run counts as used.
    source = Path(__file__).parents[1] / "fixtures" / "real_runs" / "locust"
    base = tmp_path / "base"
    base.mkdir()
    for name in ("locust_stats_history.csv", "locust_stats.csv"):
        (base / name).write_bytes((source / "base_1" / name).read_bytes())
    result = runner.invoke(app, ["compare", str(base), str(source / "slower")])
    assert result.exit_code == 1, result.output
    assert "was not used" not in result.stderr
    assert "one baseline run, so the spread" in result.stderr


def test_compare_titles_the_ci_with_its_level(fixtures_dir, tmp_path):
    # In a process of its own: the table's width is the terminal's, read at start.
    locust = str(fixtures_dir / "locust" / "requests.ndjson")
    command = [str(Path(sys.executable).parent / "metrics-pipeline"), "compare", locust, locust]
    env = os.environ | {"COLUMNS": "300", "METRICS_HOME": str(tmp_path)}

    def table(*options: str, **more: str) -> str:
        done = subprocess.run(
            [*command, *options], env=env | more, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return " ".join(done.stdout.split())

    assert "99.9% CI (+ = worse)" in table("--alpha", "0.001")
    assert "97.5% CI (+ = worse)" in table("--alpha", "0.025")
    rules = tmp_path / "verdicts.yaml"
    # Rows without a CI (an endpoint missing from the candidate) have no level to show.
    every = "[latency_p50, latency_p95, latency_p99, error_rate, throughput]"
    rules.write_text(f"rules: [{{metrics: {every}, alpha: 0.01}}]\n")
    records = [json.loads(line) for line in Path(locust).read_text().splitlines()]
    fewer = tmp_path / "fewer.ndjson"
    fewer.write_text("".join(json.dumps(r) + "\n" for r in records if r["name"] != "/"))
    missing = subprocess.run(
        [*command[:-1], str(fewer)],
        env=env | {"METRICS_VERDICT_RULES": str(rules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "MISSING" in missing.stdout and "99% CI (+ = worse)" in missing.stdout
    rules.write_text("rules: [{metrics: [latency_p95], alpha: 0.001}]\n")
    per_metric = table(METRICS_VERDICT_RULES=str(rules))
    assert "95% CI" not in per_metric and "CI (+ = worse; levels below)" in per_metric
    assert "latency_p95 99.9%" in per_metric and "latency_p50 95%" in per_metric


def test_compare_reports_missing_input_with_exit_2(tmp_path):
    result = runner.invoke(app, ["compare", str(tmp_path / "nope"), str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_ingest_and_upload_use_the_configured_home(fixtures_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    locust = fixtures_dir / "locust"
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "fx-1"]
    result = runner.invoke(app, ["ingest", str(locust / "requests.ndjson"), *args])
    assert result.exit_code == 0, result.output
    warehouse = Warehouse(tmp_path / "warehouse")
    assert warehouse.read("requests", ["fx-1"]).height == 3534
    assert warehouse.read("run_summary", ["fx-1"]).height == 4
    # Ingesting again replaces the partition.
    assert runner.invoke(app, ["ingest", str(locust / "requests.ndjson"), *args]).exit_code == 0
    assert warehouse.read("requests", ["fx-1"]).height == 3534

    result = runner.invoke(app, ["upload", str(locust), *args])
    assert result.exit_code == 0, result.output
    uploaded = tmp_path / "objects" / "loadtests" / "raw" / "shop" / "fx-1"
    assert (uploaded / "run.json").exists() and (uploaded / "requests.ndjson").exists()

    bad = runner.invoke(app, ["upload", str(locust), *args[:-1], "../escape"])
    assert bad.exit_code == 2 and "not allowed" in bad.output


def test_report_writes_the_four_layers_of_an_ingested_run(fixtures_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "fx-2"]
    requests = fixtures_dir / "locust" / "requests.ndjson"
    assert runner.invoke(app, ["ingest", str(requests), *args]).exit_code == 0

    result = runner.invoke(app, ["report", "fx-2"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "reports" / "runs" / "fx-2"
    for name in ("summary.md", "report.html", "report.pdf", "raw.jsonl"):
        assert (folder / name).stat().st_size and name in result.output
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    # The same files went to the bucket's reports/ folder.
    bucket = tmp_path / "objects" / "loadtests" / "reports" / "runs" / "fx-2"
    assert (bucket / "summary.md").read_bytes() == (folder / "summary.md").read_bytes()

    unknown = runner.invoke(app, ["report", "never-ingested"])
    assert unknown.exit_code == 2 and "never-ingested" in unknown.output


@pytest.mark.slow
def test_demo_flags_only_the_slowed_endpoint_and_reruns_without_duplicates(tmp_path):
    # Wide enough that the printed tables keep each cell on one line.
    # The clock frozen on a day far from today: the demo's runs are dated relative to it.
    env = os.environ | {
        "METRICS_HOME": str(tmp_path),
        "COLUMNS": "250",
        "METRICS_NOW": "2031-03-15T12:00:00Z",
    }
    command = [str(Path(sys.executable).parent / "metrics-pipeline"), "demo"]
    counts = []
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "regressions in checkout-20310315-6: /api/orders" in done.stdout
        # The result is not buried: no Dagster step logs, and a closing summary.
        assert " - DEBUG - " not in done.stdout + done.stderr
        summary = done.stdout[done.stdout.index("Summary of checkout-20310315-6") :]
        assert "REGRESSION /api/orders: median latency" in summary and "% worse" in summary
        assert "report.html" in summary and "next:" in summary
        # Runs dated relative to the clock: none is overdue, so no missing_run alert.
        assert "missing_run" not in done.stdout
        # The four report layers of the regressed run exist and their paths are printed.
        reports = tmp_path / "reports" / "runs" / "checkout-20310315-6"
        for name in ("summary.md", "report.html", "report.pdf", "raw.jsonl"):
            assert str(reports / name) in done.stdout and (reports / name).stat().st_size
        assert "REGRESSION: /api/orders" in (reports / "summary.md").read_text()
        # The alerts it would send: no receiver is configured, so each waits in the outbox.
        alerts = done.stdout[done.stdout.index("alerts of checkout-20310315-6") :]
        alerts = alerts[: alerts.index("reports of")]
        regression_rows = [line for line in alerts.splitlines() if "│ regression" in line]
        assert regression_rows and all("/api/orders" in line for line in regression_rows)
        assert all("would send" in line for line in regression_rows)
        # The monitoring files are written under METRICS_HOME.
        assert (tmp_path / "monitoring" / "prometheus" / "prometheus.yml").is_file()
        assert list((tmp_path / "monitoring" / "grafana" / "dashboards").glob("*.json"))
        warehouse = Warehouse(tmp_path / "warehouse")
        counts.append({t: warehouse.read(t).height for t in ("requests", "runs", "verdicts")})
        assert warehouse.read("verdicts").filter(pl.col("regression"))[
            "run_id"
        ].unique().to_list() == ["checkout-20310315-6"]
    assert counts[0] == counts[1] and counts[0]["runs"] == 6


@pytest.mark.slow
def test_demo_judges_only_its_own_runs(tmp_path, monkeypatch):
    # A user tried `upload` first: their run waits in the store. It is not the demo's to
    # judge (a run of another combination could fail the demo, or be judged as one of its own).
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "requests.ndjson").write_text(
        '{"ts": "2031-03-14T02:00:00Z", "endpoint": "/a", "latency_ms": 5}\n'
    )
    args = ["--suite", "checkout", "--scenario", "browse-and-buy", "--env", "staging"]
    mine = runner.invoke(app, ["upload", str(tmp_path / "mine"), *args, "--run-id", "mine-1"])
    assert mine.exit_code == 0, mine.output
    env = os.environ | {"METRICS_NOW": "2031-03-15T12:00:00Z", "COLUMNS": "250"}
    command = [str(Path(sys.executable).parent / "metrics-pipeline"), "demo", "--runs", "3"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mine-1" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr
    warehouse = Warehouse(tmp_path / "warehouse")
    assert "mine-1" not in warehouse.read("runs")["run_id"].to_list()  # left for the sensor
    # Its runs are dated up to the last night: no suite is overdue, no missing_run waits.
    assert "missing_run" not in set(warehouse.read("alerts")["kind"])


def test_run_collects_uploads_and_exits_with_the_commands_code(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    out = tmp_path / "out"
    script = (
        "import json, os, sys, time; os.makedirs(sys.argv[1], exist_ok=True); "
        "open(os.path.join(sys.argv[1], 'r.ndjson'), 'w').write(json.dumps("
        "{'ts': '2031-03-15T12:00:01Z', 'endpoint': '/a', 'latency_ms': 3}) + '\\n'); "
        "time.sleep(0.8); raise SystemExit(4)"
    )
    args = ["run", "--suite", "s", "--scenario", "x", "--env", "e", "--run-id", "c-1"]
    args += [
        "--results",
        str(out),
        "--interval",
        "0.2",
        "--",
        sys.executable,
        "-c",
        script,
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 4, result.output
    uploaded = tmp_path / "objects" / "loadtests" / "raw" / "s" / "c-1"
    # A failed load test that wrote its results is data too (its code in the tag exit_code).
    assert sorted(p.name for p in uploaded.iterdir()) == [
        "r.ndjson",
        "run.json",
        "system-samples.jsonl",
    ]


def test_run_from_a_project_root_uploads_only_what_the_run_wrote(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)  # the default --results is the working folder
    monkeypatch.setenv("METRICS_HOME", str(project / "metrics-data"))
    (project / "tsconfig.json").write_text("{}")  # the project's own, there before the run
    script = (
        "import json, os, time\n"
        "for name in ('results/r.ndjson', 'node_modules/x/package.json', '.cache/c.json',"
        " 'metrics-data/m.ndjson'):\n"
        "    os.makedirs(os.path.dirname(name), exist_ok=True)\n"
        "    open(name, 'w').write(json.dumps({'ts': '2031-03-15T12:00:01Z', 'endpoint': '/a',"
        " 'latency_ms': 3}) + '\\n')\n"
    )
    args = ["run", "--suite", "s", "--scenario", "x", "--env", "e", "--run-id", "p-1"]
    result = runner.invoke(app, [*args, "--interval", "30", "--", sys.executable, "-c", script])
    assert result.exit_code == 0, result.output
    assert "tsconfig.json was not written during this run" in result.stderr
    uploaded = project / "metrics-data" / "objects" / "loadtests" / "raw" / "s" / "p-1"
    assert sorted(p.relative_to(uploaded).as_posix() for p in uploaded.rglob("*")) == [
        "results",
        "results/r.ndjson",
        "run.json",
    ]


def test_run_without_result_files_fails_and_uploads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    args = ["run", "--suite", "s", "--scenario", "x", "--env", "e", "--interval", "30"]
    command = ["--", sys.executable, "-c", "pass"]
    result = runner.invoke(app, [*args, "--results", str(tmp_path / "missing"), *command])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: results folder {tmp_path / 'missing'} does not exist after the command: "
        "nothing uploaded (--results names the folder the tool writes its files to)"
    ]
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, [*args, "--results", str(tmp_path / "results"), *command])
    assert result.exit_code == 2, result.output
    assert "no result file of a known format was written to" in result.stderr
    assert not (tmp_path / "home" / "objects").exists()


def test_upload_ingest_and_run_say_what_is_wrong_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    args = ["--suite", "s", "--scenario", "x", "--env", "e"]
    line = '{"ts": "2026-11-01T00:00:00Z", "endpoint": "/a", "latency_ms": 1}\n'
    (tmp_path / "one.json").write_text(line)
    (tmp_path / "notes.txt").write_text(line)

    def error(*command: str) -> str:
        result = runner.invoke(app, [*command])
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit), result.exception  # no traceback
        [message] = result.stderr.strip().splitlines()
        return message

    missing = str(tmp_path / "missing")
    assert error("upload", missing, *args) == f"error: {missing}: no such file or folder"
    assert "notes.txt is not named like a result file (.ndjson, .jsonl" in error(
        "upload", str(tmp_path / "notes.txt"), *args
    )
    # One result file is a one-file run.
    result = runner.invoke(app, ["upload", str(tmp_path / "one.json"), *args, "--run-id", "one"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "home" / "objects" / "loadtests" / "raw" / "s" / "one"
    assert sorted(p.name for p in run.iterdir()) == ["one.json", "run.json"]

    monkeypatch.setenv("METRICS_STORE", "s4")
    s4 = "error: METRICS_STORE must be 'local' or 's3', not 's4'"
    assert error("upload", str(tmp_path / "one.json"), *args) == s4
    assert error("ingest", str(tmp_path / "one.json"), *args) == s4
    assert error("run", *args, "--", sys.executable, "-c", "pass") == s4


def test_s3_without_credentials_is_one_line_before_the_load_test_runs(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env |= {
        "METRICS_HOME": str(tmp_path / "home"),
        "METRICS_STORE": "s3",
        "METRICS_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # never reached
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance role to ask for
    }
    (tmp_path / "one.json").write_text(
        '{"ts": "2026-11-01T00:00:00Z", "endpoint": "/a", "latency_ms": 1}\n'
    )
    ran = tmp_path / "ran"
    cli = str(Path(sys.executable).parent / "metrics-pipeline")
    args = ["--suite", "s", "--scenario", "x", "--env", "e"]
    for command in (
        ["upload", str(tmp_path / "one.json"), *args],
        ["run", *args, "--", sys.executable, "-c", f"open({str(ran)!r}, 'w')"],
    ):
        done = subprocess.run([cli, *command], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip().splitlines() == [
            "error: no S3 credentials for s3://loadtests at http://127.0.0.1:9: set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or use an instance "
            "role)"
        ]
    assert not ran.exists()


def test_upload_refuses_a_folder_without_a_result_file_of_a_known_format(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    folder = tmp_path / "garbage"
    folder.mkdir()
    (folder / "garbage.json").write_bytes(b"\x00\x93 not a load test")
    args = ["--suite", "s", "--scenario", "x", "--env", "e"]
    result = runner.invoke(app, ["upload", str(folder), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: no result file of a known format in {folder} (1 file(s) of no known format): "
        "nothing uploaded"
    )
    assert not (tmp_path / "home" / "objects").exists()


def test_uploads_started_in_the_same_second_get_their_own_run_ids(
    fixtures_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    stats = (fixtures_dir / "locust" / "locust_stats.csv").read_text()  # no timestamps
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "locust_stats.csv").write_text(stats + "\n" * (name == "b"))
    raw = tmp_path / "home" / "objects" / "loadtests" / "raw" / "s"

    def upload(folder: str, *more: str) -> str:
        args = ["--suite", "s", "--scenario", "x", "--env", "e", *more]
        result = runner.invoke(app, ["upload", str(tmp_path / folder), *args])
        assert result.exit_code == 0, result.output
        [run_id] = re.findall(r"uploaded run (\S+) ", result.output)
        return run_id

    # Files without timestamps start now: two uploads of the same files are two runs.
    first, second = upload("a"), upload("a")
    # Two runs of the suite started in the same second, with other files or another scenario.
    same_second = ["--started-at", "2031-03-15T02:00:00Z"]
    other_files = upload("a", *same_second), upload("b", *same_second)
    other_scenario = upload("a", *same_second[:1], "2031-03-15T02:00:00.5Z", "--scenario", "y")
    ids = {first, second, *other_files, other_scenario}
    assert len(ids) == 5
    assert all(re.fullmatch(r"s-\d{8}T\d{6}-[0-9a-f]{8}", run_id) for run_id in ids)
    assert other_files[0].startswith("s-20310315T020000-")
    assert other_scenario.startswith("s-20310315T020000-")
    assert sorted(p.name for p in raw.iterdir()) == sorted(ids)
    assert all((raw / run_id / "run.json").is_file() for run_id in ids)
    # The same files, started at the same time, are the same run: uploaded again, replaced.
    assert upload("a", *same_second) == other_files[0]


RUN_JSON = {
    "run_id": "checkout-42",
    "suite": "checkout",
    "scenario": "browse",
    "environment": "staging",
    "started_at": "2026-11-01T00:00:00Z",
    "tool": "k6",
    "service_version": "1.4.5",
    "git_sha": "5eed0c1",
    "tags": {"trigger": "nightly"},
    "load_profile": {"vus": 50},
    "baseline": "checkout-41",
    "files": [{"name": "gone.ndjson", "size": 1}],  # of an earlier upload: written anew
    "uploaded_by": "someone@elsewhere",
}


def test_upload_ingest_and_run_keep_the_folders_run_json_and_let_options_override(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "out.ndjson").write_text(
        '{"ts": "2026-11-01T00:00:01Z", "endpoint": "/a", "latency_ms": 1}\n'
    )
    (folder / "run.json").write_text(json.dumps(RUN_JSON))

    result = runner.invoke(app, ["upload", str(folder), "--scenario", "checkout-flow"])
    assert result.exit_code == 0, result.output
    uploaded = tmp_path / "home" / "objects" / "loadtests" / "raw" / "checkout" / "checkout-42"
    stored = json.loads((uploaded / "run.json").read_text())
    unchanged = {k: v for k, v in RUN_JSON.items() if k not in {"scenario", "files", "uploaded_by"}}
    assert stored == stored | unchanged | {"scenario": "checkout-flow"}
    size = (folder / "out.ndjson").stat().st_size
    assert stored["files"] == [{"name": "out.ndjson", "size": size}]
    assert stored["uploaded_by"] != "someone@elsewhere"

    result = runner.invoke(app, ["ingest", str(folder), "--run-id", "checkout-43"])
    assert result.exit_code == 0, result.output
    runs = Warehouse(tmp_path / "home" / "warehouse").read("runs", ["checkout-43"])
    run = runs.row(0, named=True)
    assert (run["suite"], run["scenario"], run["tool"], run["service_version"]) == (
        "checkout",
        "browse",
        "k6",
        "1.4.5",
    )
    assert (run["git_sha"], run["baseline"]) == ("5eed0c1", "checkout-41")

    write = (
        "import json, sys, time; open(sys.argv[1], 'w').write(json.dumps("
        "{'ts': '2031-03-15T12:00:01Z', 'endpoint': '/a', 'latency_ms': 3}) + '\\n')"
    )
    load_test = ["--", sys.executable, "-c", write, str(folder / "new.ndjson")]
    # out.ndjson, of the earlier run, is left as it was: not this run's.
    result = runner.invoke(app, ["run", "--results", str(folder), "--interval", "30", *load_test])
    assert result.exit_code == 0, result.output
    # Each run is a new run: its own id, not the run.json's (which would replace checkout-42).
    (new,) = [p for p in uploaded.parent.iterdir() if p.name not in {"checkout-42", "checkout-43"}]
    stored = json.loads((new / "run.json").read_text())
    assert stored["run_id"] == new.name
    assert [file["name"] for file in stored["files"]] == ["new.ndjson"]
    measured = {"run_id", "started_at", "tags", "load_profile"}
    assert stored == stored | {k: v for k, v in unchanged.items() if k not in measured}
    assert stored["load_profile"]["vus"] == 50
    assert stored["tags"] == {"trigger": "nightly", "collector": "metrics-pipeline run"} | {
        "exit_code": "0"
    }
    assert stored["started_at"] != RUN_JSON["started_at"]


def test_an_invalid_run_json_or_missing_options_are_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "out.ndjson").write_text(
        '{"ts": "2026-11-01T00:00:01Z", "endpoint": "/a", "latency_ms": 1}\n'
    )
    result = runner.invoke(app, ["upload", str(folder), "--suite", "s"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: missing option --scenario, --env (or a run.json in the folder naming it)"
    )
    (folder / "run.json").write_text(json.dumps(RUN_JSON | {"tool": "", "colour": "red"}))
    args = ["--suite", "s", "--scenario", "x", "--env", "e"]
    ran = tmp_path / "ran"
    load_test = ["--", sys.executable, "-c", f"open({str(ran)!r}, 'w')"]
    for command in (
        ["upload", str(folder), *args],
        ["ingest", str(folder), *args],
        ["run", "--results", str(folder), *args, *load_test],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: invalid manifest {folder / 'run.json'}: tool: ")
        assert "colour: Extra inputs are not permitted" in line
    assert not ran.exists()  # refused before the load test
    assert not (tmp_path / "home" / "objects").exists()
    assert not (tmp_path / "home" / "warehouse").exists()


def test_upload_keeps_subfolders_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    line = '{"ts": "2026-11-01T00:00:00Z", "endpoint": "/a", "latency_ms": 1}\n'
    for sub in ("a", "b"):
        (tmp_path / "res" / sub).mkdir(parents=True)
        (tmp_path / "res" / sub / "out.ndjson").write_text(line)
    args = ["upload", str(tmp_path / "res"), "--suite", "s", "--scenario", "x", "--env", "e"]
    result = runner.invoke(app, [*args, "--run-id", "sub-1"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "home" / "objects" / "loadtests" / "raw" / "s" / "sub-1"
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "a/out.ndjson",
        "b/out.ndjson",
        "run.json",
    ]


@pytest.mark.slow
def test_cli_ingest_validates_and_summarises_as_the_pipeline_does(
    fixtures_dir, tmp_path, monkeypatch, settings, store
):
    """The same Artillery upload through ``ingest`` and through the ci_stage job: the same
    run_summary and sketches, validated the same way."""
    import dagster as dg

    from metrics_pipeline.contracts.manifest import RunManifest
    from metrics_pipeline.orchestration.definitions import build_definitions
    from metrics_pipeline.orchestration.partitions import runs_partitions
    from metrics_pipeline.upload.uploader import upload_run

    report = fixtures_dir / "artillery" / "report.json"
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "art-1"]
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "cli"))
    result = runner.invoke(app, ["ingest", str(report), *args])
    assert result.exit_code == 0, result.output
    assert "run art-1 is valid" in result.output
    by_cli = Warehouse(tmp_path / "cli" / "warehouse")

    started = by_cli.read("runs", ["art-1"])["started_at"].item()
    manifest = RunManifest(
        run_id="art-1", suite="shop", scenario="browse", environment="ci", started_at=started
    )
    upload_run(store, [report], manifest)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(runs_partitions.name, ["art-1"])
        job = build_definitions(settings).resolve_job_def("ci_stage")
        assert job.execute_in_process(instance=instance, partition_key="art-1").success
    by_job = Warehouse(settings.warehouse_root)

    for table in ("run_summary", "latency_sketches", "interval_stats"):
        cli_rows, job_rows = by_cli.read(table, ["art-1"]), by_job.read(table, ["art-1"])
        assert cli_rows.height == job_rows.height, table
        assert cli_rows.sort(cli_rows.columns).equals(job_rows.sort(job_rows.columns)), table
    assert by_cli.read("run_summary", ["art-1"]).height == 4
    assert by_cli.read("runs", ["art-1"])["valid"].item() is True
    assert by_job.read("runs", ["art-1"])["valid"].item() is True


def test_cli_ingest_of_a_run_without_data_marks_it_invalid_and_exits_1(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    samples = tmp_path / "samples.ndjson"  # machine samples, but no request or interval
    samples.write_text(
        '{"record": "resources", "ts": "2031-03-15T02:00:01Z", "host": "h", "metric": "cpu_pct",'
        ' "value": 10}\n'
    )
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "empty-1"]
    result = runner.invoke(
        app, ["ingest", str(samples), *args, "--started-at", "2031-03-15T02:00:00Z"]
    )
    assert result.exit_code == 1, result.output
    assert "run empty-1 is invalid" in result.output and "no request or interval data" in (
        result.output
    )
    run = Warehouse(tmp_path / "warehouse").read("runs", ["empty-1"]).row(0, named=True)
    assert run["valid"] is False and "no request or interval data" in run["invalid_reason"]


def test_cli_ingest_without_a_result_file_writes_nothing_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "empty.ndjson").write_text("")
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci"]
    for folder, files in (("empty", ""), ("blank", " (1 file(s) of no known format)")):
        for _ in range(2):  # a retry adds nothing either
            result = runner.invoke(app, ["ingest", str(tmp_path / folder), *args])
            assert result.exit_code == 2, result.output
            assert result.stderr.strip() == (
                f"error: no result file of a known format in {tmp_path / folder}{files}: "
                "nothing ingested"
            )
    assert not (tmp_path / "home" / "warehouse").exists()  # not even opened


def test_compare_measures_the_run_noise_on_the_combinations_earlier_runs(
    fixtures_dir, tmp_path, monkeypatch
):
    # +30 % against one baseline run is within the 10 % prior; the warehouse's earlier runs of
    # the same suite, scenario and environment agree within 1 %, so there it is a regression,
    # and earlier runs 30 % apart keep it within the noise.
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    locust = fixtures_dir / "locust" / "requests.ndjson"
    slow = slowed_copy(locust, tmp_path / "cand.ndjson", "/api/slow", 1.3)
    histories = {"ci": (0.99, 1.0, 1.01, 1.0), "lab": (0.7, 1.0, 1.3)}
    for env, factors in histories.items():
        for i, factor in enumerate(factors):
            earlier = slowed_copy(
                locust, tmp_path / f"{env}{i}.ndjson", "/api/slow", factor, days_earlier=10 - i
            )
            combination = ["--suite", "shop", "--scenario", "browse", "--env", env]
            ingested = runner.invoke(
                app, ["ingest", str(earlier), *combination, "--run-id", f"{env}-{i}"]
            )
            assert ingested.exit_code == 0, ingested.output
    # The files compared may be stored too: they are no noise of their own.
    for run_id, path in (("ci-baseline", locust), ("ci-candidate", slow)):
        combination = ["--suite", "shop", "--scenario", "browse", "--env", "ci"]
        ingested = runner.invoke(app, ["ingest", str(path), *combination, "--run-id", run_id])
        assert ingested.exit_code == 0, ingested.output

    compare = ["compare", str(locust), str(slow), "--json", "--suite", "shop"]
    quiet = runner.invoke(app, [*compare, "--scenario", "browse", "--env", "ci"])
    assert quiet.exit_code == 1, quiet.output
    rows = json.loads(quiet.stdout)
    p50 = next(v for v in rows if v["endpoint"] == "/api/slow" and v["metric"] == "latency_p50")
    assert p50["regression"] and p50["noise"].startswith("history of 4 runs")
    assert not any(v["regression"] for v in rows if v["endpoint"] != "/api/slow")

    noisy = runner.invoke(app, [*compare, "--scenario", "browse", "--env", "lab"])
    assert noisy.exit_code == 0, noisy.output
    p50 = next(
        v
        for v in json.loads(noisy.stdout)
        if v["endpoint"] == "/api/slow" and v["metric"] == "latency_p50"
    )
    assert p50["noise"].startswith("history of 3 runs")

    # Without a history (turned off, or a combination the warehouse has not seen) the prior.
    off = runner.invoke(app, [*compare, "--scenario", "browse", "--env", "ci", "--no-history"])
    assert off.exit_code == 0, off.output
    unseen = runner.invoke(app, [*compare, "--scenario", "browse", "--env", "prod"])
    assert unseen.exit_code == 0, unseen.output
    assert "prior 10%" in next(
        v["noise"] for v in json.loads(unseen.stdout) if v["metric"] == "latency_p50"
    )
    told = runner.invoke(app, [*compare, "--history"])
    assert told.exit_code == 2 and "--scenario" in told.output

    # A warehouse that cannot be read: the prior with a warning, or exit 2 when --history
    # was asked for; never a verdict from an exception.
    monkeypatch.setenv("METRICS_WAREHOUSE", "s3://no-such-bucket/warehouse")
    monkeypatch.setenv("METRICS_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    for_ci = [*compare, "--scenario", "browse", "--env", "ci"]
    unread = runner.invoke(app, for_ci)
    assert unread.exit_code == 0 and "cannot read the history" in unread.stderr
    assert runner.invoke(app, [*for_ci, "--history"]).exit_code == 2


def test_a_configuration_variable_naming_a_missing_file_is_bad_input(fixtures_dir, tmp_path):
    # A gate that fell back to the built-in rules because of a typo would pass what the
    # project's rules fail. In a process of its own: the command's own error handling.
    locust = str(fixtures_dir / "locust" / "requests.ndjson")
    command = [str(Path(sys.executable).parent / "metrics-pipeline"), "compare", locust, locust]
    env = os.environ | {"METRICS_HOME": str(tmp_path)}
    for variable in ("METRICS_VERDICT_RULES", "METRICS_ALERTING", "METRICS_KPI_CATALOG"):
        done = subprocess.run(
            command,
            env=env | {variable: str(tmp_path / "verdicts.yml")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip() == f"error: {variable}={tmp_path / 'verdicts.yml'}: no such file"
    # So is a bad value of another variable, in any command (not only upload, ingest, run).
    done = subprocess.run(
        [command[0], "alerts", "list"],
        env=env | {"METRICS_STORE": "s4"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: METRICS_STORE must be 'local' or 's3', not 's4'"
    shown = runner.invoke(app, ["baseline", "show", "--file", str(tmp_path / "baselines.yml")])
    assert shown.exit_code == 2 and "no baselines file" in shown.stderr


def test_an_unreachable_store_is_one_line_and_keeps_the_load_tests_code(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {
        "METRICS_HOME": str(tmp_path / "home"),
        "METRICS_STORE": "s3",
        "METRICS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "out.ndjson").write_text(
        '{"ts": "2026-11-01T00:00:01Z", "endpoint": "/a", "latency_ms": 1}\n'
    )
    args = ["--suite", "s", "--scenario", "x", "--env", "e"]
    uploaded = runner.invoke(app, ["upload", str(folder), *args])
    assert uploaded.exit_code == 2, uploaded.output
    assert uploaded.stderr.strip().startswith("error: Could not connect to the endpoint URL")
    write = (
        "import json, sys, time; open(sys.argv[1], 'w').write(json.dumps("
        "{'ts': '2031-03-15T12:00:01Z', 'endpoint': '/a', 'latency_ms': 2}) + '\\n'); sys.exit(3)"
    )
    load_test = ["--", sys.executable, "-c", write, str(folder / "new.ndjson")]
    ran = runner.invoke(
        app, ["run", *args, "--results", str(folder), "--interval", "30", *load_test]
    )
    assert ran.exit_code == 3, ran.output  # the load test's own code, not a traceback's 1
    assert "failed: Could not connect to the endpoint URL" in ran.stderr
    assert "nothing uploaded" in ran.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-0.2"])
def test_compare_refuses_a_threshold_no_change_can_pass(fixtures_dir, value):
    # --threshold inf was taken: a gate that can never fail.
    locust = str(fixtures_dir / "locust" / "requests.ndjson")
    result = runner.invoke(app, ["compare", locust, locust, "--threshold", value])
    assert result.exit_code == 2 and "a finite --threshold > 0" in result.stderr
    versions = runner.invoke(app, ["versions", "1.0", "1.1", "--threshold", value])
    assert versions.exit_code == 2 and "a finite --threshold > 0" in versions.stderr
