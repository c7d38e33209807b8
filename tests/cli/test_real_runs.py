"""`compare` on real runs of Locust, k6, Artillery and JMeter against a local server with known
injected changes (bench/real_runs/, expectations in tests/fixtures/real_runs/cases.json).

With the three baseline runs: no unchanged or slightly (+8 %) slower run raises an alarm, every
injected regression is found on its endpoint and every injected improvement is labelled. With
one baseline run the 10 % prior decides what is noise: no false alarm, and the large changes
(errors, a slow tail) are still found."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "real_runs"
SPEC = json.loads((ROOT / "cases.json").read_text())
TOOLS = sorted(SPEC["tools"])
ALARMS = {"regression", "trade-off", "missing"}
# With one baseline run, two runs differ by about 14 % under the prior: a +45 % change of one
# endpoint (slower) or -40 % (faster) is ~2.6 of those standard deviations, not significant
# after the Benjamini-Hochberg adjustment over the run's ~20 rows. README "Verdicts" says so.
FOUND_WITH_ONE_RUN = {"errors", "slow_tail"}
runner = CliRunner()
# A row a change calls a regression may also be "suspect": that size, but untested (a tail
# percentile of a run with too few requests beyond it).
SUSPECT_OF = {"regression": {"suspect"}, "improvement": set(), "missing": set()}


def expected_rows(tool: str, case: str) -> dict[tuple[str, str], dict]:
    rows = {(e["endpoint"], e["metric"]): e for e in SPEC["cases"][case]}
    for e in SPEC["tool_exceptions"].get(tool, {}).get(case, []):
        rows[(e["endpoint"], e["metric"])] = e
    return rows


def compare(tool: str, baselines: list[str], candidate: str) -> tuple[int, list[dict]]:
    paths = [str(ROOT / tool / run) for run in (*baselines, candidate)]
    result = runner.invoke(app, ["compare", *paths, "--json"])
    assert result.exit_code in (0, 1), result.output
    # Strict JSON: an unbounded interval or an untested statistic is null, never NaN/Infinity.
    return result.exit_code, json.loads(result.stdout, parse_constant=not_json)


def not_json(name: str):
    pytest.fail(f"{name} in the JSON output")


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("case", sorted(SPEC["cases"]))
@pytest.mark.parametrize("baselines", [3, 1], ids=["three baseline runs", "one baseline run"])
def test_real_runs_get_the_verdicts_their_changes_call_for(tool, case, baselines):
    code, rows = compare(tool, SPEC["baseline_runs"][:baselines], case)
    expected = expected_rows(tool, case)
    got = {(r["endpoint"], r["metric"]): r for r in rows}

    false_alarms = [
        r
        for key, r in got.items()
        if r["verdict"] in ALARMS and expected.get(key, {}).get("verdict") != r["verdict"]
    ]
    assert not false_alarms, false_alarms
    wrong = [
        (key, got[key]["verdict"])
        for key, e in expected.items()
        if key in got and got[key]["verdict"] not in {e["verdict"], "ok"} | SUSPECT_OF[e["verdict"]]
    ]
    assert not wrong, wrong
    if baselines == 3 or case in FOUND_WITH_ONE_RUN:
        # Every required row found, on every tool: also from Artillery's three 10 s
        # aggregates, whose run p95 is that of all their requests.
        missed = [
            (key, got.get(key, {}).get("verdict"))
            for key, e in expected.items()
            if e.get("required", True) and got.get(key, {}).get("verdict") != e["verdict"]
        ]
        assert not missed, missed
    regressions = {e["verdict"] for e in expected.values()} & {"regression"}
    if baselines == 3 or case in FOUND_WITH_ONE_RUN or not regressions:
        assert code == (1 if regressions else 0)


@pytest.mark.parametrize("width", [80, 100, 150])
def test_the_verdict_table_keeps_metrics_and_verdicts_whole_on_narrow_terminals(width):
    from rich.console import Console

    from metrics_pipeline.cli.gate import verdict_table

    _, rows = compare("k6", SPEC["baseline_runs"], "slower")
    # The JSON's nulls are the frame's NaN (a statistic that could not be computed).
    floats = ("baseline", "candidate", "change", "ci_low", "ci_high", "p_value", "p_adjusted")
    verdicts = pl.DataFrame(rows).with_columns(pl.col(*floats).cast(pl.Float64).fill_nan(None))
    verdicts = verdicts.with_columns(pl.col(*floats).fill_null(float("nan")))
    console = Console(width=width, record=True)
    console.print(verdict_table(verdicts, "k6: base runs -> slower", 0.05, console.width))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= width
    words = text.split()
    # latency_p50 cut to "latency..." could be any percentile; every metric and verdict whole.
    assert {"latency_p50", "latency_p95", "error_rate", "throughput"} <= set(words)
    assert words.count("REGRESSION") == 2
    # Each note once: beside its verdict in a wide table, as a numbered footnote in a narrow one.
    assert text.count("whole machine: reported, not judged") == (1 if width < 120 else 3)


def test_runs_of_another_tool_are_named_in_a_warning():
    k6, locust = ROOT / "k6" / "base_1", ROOT / "locust" / "base_1"
    other = runner.invoke(app, ["compare", str(k6), str(locust), "--json"])
    assert "baseline 1 (" in other.stderr and "measured with k6, the candidate with locust" in (
        " ".join(other.stderr.split())
    )
    # By their formats alone (no run.json beside a file), and not between runs of one tool.
    files = [str(k6 / "k6_summary_export.json"), str(locust / "locust_stats.csv")]
    assert "measured with k6" in runner.invoke(app, ["compare", *files]).stderr
    same = runner.invoke(app, ["compare", str(locust), str(ROOT / "locust" / "same_1")])
    assert "measured with" not in same.stderr


def test_locusts_aggregated_history_is_the_runs_total_not_an_endpoint(tmp_path):
    import csv
    import shutil

    # Without --csv-full-history Locust's history holds only its "Aggregated" rows: the run's
    # total, which per-request rows already cover. It was judged as one more endpoint (its
    # requests counted twice, the Benjamini-Hochberg family larger), and reported MISSING
    # from a candidate without the file.
    def run(name: str, history: bool = True) -> str:
        folder = tmp_path / name
        source = name.removesuffix("_no_history").removesuffix("_total")
        shutil.copytree(ROOT / "locust" / source, folder)
        path = folder / "locust_stats_history.csv"
        rows = list(csv.reader(path.read_text().splitlines()))
        total = [rows[0]] + [row for row in rows[1:] if row[rows[0].index("Name")] == "Aggregated"]
        with path.open("w", newline="") as out:
            csv.writer(out).writerows(total)
        if not history:
            path.unlink()
        return str(folder)

    bases = [run(name) for name in ("base_1", "base_2", "base_3")]
    for candidate in (run("slower"), run("slower_no_history", history=False)):
        result = runner.invoke(app, ["compare", *bases, candidate, "--json"])
        assert result.exit_code == 1, result.output
        rows = json.loads(result.stdout)
        assert {row["endpoint"] for row in rows} == {
            "(resources)",
            "/checkout",
            "/health",
            "/items",
            "/search",
        }
        flagged = {(r["endpoint"], r["metric"]) for r in rows if r["verdict"] in ALARMS}
        assert flagged == {("/items", "latency_p50"), ("/items", "latency_p95")}

    # Against baseline runs with the total alone, the totals are what is compared.
    totals = []
    for name in ("base_1_total", "base_2_total"):
        folder = Path(run(name))
        for file in folder.iterdir():
            if file.name not in {"locust_stats_history.csv", "run.json"}:
                file.unlink()
        totals.append(str(folder))
    result = runner.invoke(app, ["compare", *totals, run("same_1"), "--json"])
    assert result.exit_code == 0, result.output
    judged = {(r["endpoint"], r["metric"]) for r in json.loads(result.stdout) if r["p_adjusted"]}
    assert ("(all)", "latency_p50") in judged and ("(all)", "throughput") in judged


def test_rows_and_files_left_out_are_said_and_too_many_refuse_the_verdict(tmp_path):
    import gzip
    import shutil

    # The failures of the "errors" run written in another shape (a field more): quarantined,
    # they took the error-rate regression with them, and the gate passed without a word.
    def run(name: str, bad=lambda i, line: False, extra: dict[str, bytes] | None = None) -> str:
        """A copy of the JMeter run ``name`` (before a "-"), a field added to each line
        ``bad(i, line)`` picks and the files ``extra`` put beside it."""
        folder = tmp_path / name
        shutil.copytree(ROOT / "jmeter" / name.split("-")[0], folder)
        path = folder / "results.jtl.gz"
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        lines = [line + ",extra" if bad(i, line) else line for i, line in enumerate(lines)]
        path.write_bytes(gzip.compress("\n".join([*lines, ""]).encode()))
        for file, data in (extra or {}).items():
            (folder / file).write_bytes(data)
        return str(folder)

    def failures(i: int, line: str) -> bool:
        return line.split(",")[7] == "false"

    bases = [run(name) for name in ("base_1", "base_2", "base_3")]
    hidden = runner.invoke(app, ["compare", *bases, run("errors-hidden", failures)])
    assert hidden.exit_code == 2, hidden.output
    said = " ".join(hidden.stderr.split())
    assert "candidate (" in said and "15 of 1008 rows quarantined, not compared" in said
    assert "wrong number of fields" in said and "1.5% of its rows quarantined" in said

    # One bad row of a thousand: judged, and said; a file of no known format: skipped, said.
    extra = {"notes.csv": b"just,some\nnotes,here\n", "empty.jtl": b""}
    one = runner.invoke(app, ["compare", *bases, run("errors-one", lambda i, line: i == 5, extra)])
    assert one.exit_code == 1, one.output  # the error-rate regression, found
    said = " ".join(one.stderr.split())
    assert "1 of 1008 rows quarantined, not compared" in said
    assert "notes.csv skipped: unknown format" in said and "empty.jtl skipped: empty file" in said
    assert "quarantined" not in runner.invoke(app, ["compare", *bases, run("errors")]).stderr


def test_an_argument_must_hold_one_run_once(tmp_path):
    import gzip
    import shutil

    def copy(tool: str, name: str, to: Path) -> Path:
        shutil.copytree(ROOT / tool / name, to)
        return to

    bases = [str(ROOT / "k6" / name) for name in ("base_1", "base_2")]
    # `gunzip -k` left the request file beside its .gz: every request counted twice, half the
    # baseline's throughput, and an unchanged run was a throughput "regression".
    twice = copy("k6", "base_3", tmp_path / "twice")
    (twice / "k6_out.json").write_bytes(gzip.decompress((twice / "k6_out.json.gz").read_bytes()))
    result = runner.invoke(app, ["compare", *bases, str(twice), str(ROOT / "k6" / "same_1")])
    assert result.exit_code == 2
    assert f"{twice}/k6_out.json and {twice}/k6_out.json.gz hold the same request rows" in " ".join(
        result.stderr.split()
    )

    # A folder of several runs was taken as one run.
    runs = tmp_path / "runs"
    for name in ("base_1", "base_2"):
        copy("jmeter", name, runs / name)
    jmeter = [str(ROOT / "jmeter" / name) for name in ("base_3", "same_1")]
    result = runner.invoke(app, ["compare", str(runs), *jmeter])
    assert result.exit_code == 2
    assert "holds 2 runs (a run.json in each of: base_1, base_2)" in " ".join(result.stderr.split())

    # Two tools' requests in one run: merged, and said.
    mixed = copy("jmeter", "same_2", tmp_path / "mixed")
    shutil.copy(ROOT / "k6" / "same_1" / "k6_out.json.gz", mixed)
    result = runner.invoke(app, ["compare", *jmeter, str(mixed)])
    assert "candidate (" in result.stderr
    assert "holds requests measured with jmeter and k6" in " ".join(result.stderr.split())
