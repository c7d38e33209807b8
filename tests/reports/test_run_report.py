"""The run report's content: summary, document, escaping, chart data size and raw rows."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from helpers import HOSTILE_ENDPOINT, HOSTILE_TAG, hostile_fixture  # noqa: F401 (fixture)

from metrics_pipeline.analysis.verdict_rules import load_verdict_rules
from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.reports import (
    ReportInputError,
    executive_summary,
    gather_run,
    publish,
    raw_tables,
    render_html,
    report_folder,
    run_document,
    write_jsonl,
)
from metrics_pipeline.reports.charts import bucket_seconds, latency_histogram, percentile_timeline
from metrics_pipeline.reports.render import render_print_html, script_json

MARKDOWN_CONTROL = "|*_[]`<>"


@pytest.fixture(scope="module")
def report(hostile):
    warehouse, runs = hostile
    last = runs[-1].manifest
    data = gather_run(warehouse, last.run_id, last.tags)
    return data, executive_summary(data), run_document(data)


def test_summary_names_the_regression_and_says_when_no_sla_was_evaluated(report):
    data, summary, _ = report
    assert data.verdict == "regression"
    assert summary.startswith(f"# Run report: {data.run_id}\n")
    assert "**Verdict: REGRESSION: " in summary
    assert md(HOSTILE_ENDPOINT) in summary.split("## Top regressions")[1]
    assert "**SLA:** no SLA evaluated." in summary
    assert "## Top improvements\n\nNone." in summary
    # The manager's paragraph says what to do.
    assert "Action: hold the release" in summary


def test_markdown_escapes_every_control_character_and_newline(report):
    _, summary, _ = report
    for text in (HOSTILE_ENDPOINT, HOSTILE_TAG):
        assert md(text) in summary
    escaped = md(HOSTILE_ENDPOINT)
    assert "\n" not in escaped
    # Every control character is preceded by a backslash.
    for i, char in enumerate(escaped):
        if char in MARKDOWN_CONTROL:
            assert escaped[i - 1] == "\\", (char, escaped[: i + 1])
    # Outside the escaped names, no raw HTML or unescaped pipe survives in any table row.
    assert re.search(r"(?<!\\)[<>`]", summary) is None
    for line in summary.splitlines():
        if line.startswith("| "):
            assert line.replace("\\|", "").count("|") in {3, 8}, line


def test_a_suspect_run_says_what_could_not_be_tested(report):
    # The same run, had its regression been too few requests to test: the headline is the
    # suspect row, never "no baseline" nor "pass".
    data, _, _ = report
    verdicts = data.verdicts.with_columns(
        verdict=pl.when(pl.col("regression")).then(pl.lit("suspect")).otherwise("verdict"),
        regression=pl.lit(False),
        p_value=pl.when(pl.col("regression")).then(None).otherwise("p_value"),
    )
    suspect = dataclasses.replace(data, verdicts=verdicts)
    assert suspect.verdict == "suspect"
    headline = run_document(suspect).banner.headline
    assert headline.startswith("SUSPECT: ") and "% worse" in headline
    assert "too few values to test" in executive_summary(suspect)


def test_the_report_states_the_rules_the_run_was_judged_by(hostile, tmp_path):
    # The rules set another threshold and alpha for the run's suite: the report says so,
    # with the CI's level in the table header and the text, not the built-in 20 % and 95 %.
    warehouse, runs = hostile
    last = runs[-1].manifest
    rules_file = tmp_path / "verdicts.yaml"
    rules_file.write_text(
        f"rules: [{{scope: {{suites: [{last.suite}]}}, threshold: 0.3, alpha: 0.01}}]\n"
    )
    data = gather_run(warehouse, last.run_id, last.tags, load_verdict_rules(rules_file))
    section = next(s for s in run_document(data).sections if s.id == "comparisons")
    assert "99% CI (+ = worse)" in section.tables[0].columns
    assert "worse by more than 30%" in section.paragraphs[0]
    assert (
        "0.01" in section.paragraphs[0] and "at the verdict's level: 99%" in section.paragraphs[0]
    )
    default = next(
        s
        for s in run_document(gather_run(warehouse, last.run_id)).sections
        if s.id == "comparisons"
    )
    assert "95% CI (+ = worse)" in default.tables[0].columns


def test_banner_names_the_regressed_endpoint_and_its_change(report):
    _, _, document = report
    assert document.banner.level == "regression"
    assert " ".join(HOSTILE_ENDPOINT.split()) in document.banner.headline
    assert "% worse" in document.banner.headline
    assert [s.id for s in document.sections] == [
        "comparisons",
        "distributions",
        "timeline",
        "errors",
        "resources",
        "history",
        "sla",
        "capacity",
        "quality",
    ]


def test_html_and_print_html_escape_names_and_keep_scripts_our_own(report):
    _, _, document = report
    for html in (render_html(document), render_print_html(document)):
        assert "<script>window.pwned" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    html = render_html(document)
    # Only our scripts: the inlined vega-embed bundle, the chart specs and the loader.
    charts = sum(len(s.charts) for s in document.sections)
    assert html.count("<script") == 2 + charts
    assert "http://" not in html.split("<body>")[1] and "https://cdn" not in html
    # Inside the JSON of the specs the name is unicode-escaped.
    assert "\\u003cscript\\u003ewindow.pwned=1\\u003c/script\\u003e" in html


def test_script_json_cannot_close_its_element():
    text = script_json({"endpoint": "</script><script>alert(1)</script>&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"endpoint": "</script><script>alert(1)</script>&"}


def test_unknown_run_is_a_clear_error(hostile):
    warehouse, _ = hostile
    with pytest.raises(ReportInputError, match="'nope' is not in the warehouse"):
        gather_run(warehouse, "nope")


def test_raw_jsonl_tags_every_row_with_its_table(hostile, tmp_path):
    warehouse, runs = hostile
    run_id = runs[-1].manifest.run_id
    path = tmp_path / "raw.jsonl"
    written = write_jsonl(path, raw_tables(warehouse, run_id))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == written
    counts = pl.DataFrame({"table": [line["table"] for line in lines]})["table"].value_counts()
    by_table = dict(counts.iter_rows())
    assert by_table["requests"] == len(runs[-1].records)
    assert (
        by_table["runs"] == 1
        and by_table["verdicts"] == warehouse.read("verdicts", [run_id]).height
    )
    assert by_table["run_summary"] == 5
    request = next(line for line in lines if line["table"] == "requests")
    assert set(request) == {"table", *SCHEMAS["requests"].names()}
    assert any(line.get("endpoint") == HOSTILE_ENDPOINT for line in lines)
    # No table contract has a column that the tag would shadow.
    assert all("table" not in schema for schema in SCHEMAS.values())


def test_publishing_twice_replaces_the_same_files(hostile, tmp_path):
    warehouse, runs = hostile
    run_id = runs[-1].manifest.run_id
    for text in ("first", "second"):
        published = publish(
            tmp_path,
            report_folder("runs", run_id),
            {"summary.md": text.encode()},
            raw_tables(warehouse, run_id),
            None,
        )
    folder = tmp_path / "runs" / run_id
    assert sorted(p.name for p in folder.iterdir()) == ["raw.jsonl", "summary.md"]
    assert published.paths["summary.md"].read_text() == "second"
    with pytest.raises(ValueError, match="not allowed"):
        report_folder("runs", "../etc")


def test_a_million_requests_become_a_few_hundred_chart_points():
    n = 1_000_000
    rng = np.random.default_rng(1)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    requests = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                start, start + timedelta(hours=1), interval="3600us", eager=True, time_zone="UTC"
            )[:n],
            "endpoint": rng.choice(["/a", "/b"], n),
            "ok": rng.random(n) > 0.01,
            "latency_ms": rng.lognormal(3, 0.5, n),
        }
    ).lazy()
    histogram = latency_histogram(requests, requests, ["/a", "/b"])
    assert histogram.height <= 2 * 2 * 40
    shares = histogram.group_by("endpoint", "side").agg(pl.col("share").sum())["share"]
    assert np.allclose(shares.to_numpy(), 1.0)
    every = bucket_seconds(3600)
    assert every == 30
    timeline = percentile_timeline(requests, every)
    assert timeline.height <= 2 * 121
    assert (timeline["p95"] >= timeline["p50"]).all()


def test_bucket_width_grows_with_the_run():
    assert bucket_seconds(60) == 1
    assert bucket_seconds(7200) == 60
    assert bucket_seconds(10**9) == 86400


def test_a_report_made_after_retention_says_the_raw_rows_are_gone(report, hostile):
    # Retention keeps a run's summary and verdicts long after its requests; a report made
    # again then said "No time series in this run" and "0 rows quarantined", as if it had none.
    data, _, _ = report
    assert data.raw_kept
    empty_rows = data.requests.head(0)
    gone = dataclasses.replace(
        data, raw_kept=False, requests=empty_rows, intervals=data.intervals.head(0), quarantined=0
    )
    text = " ".join(p for section in run_document(gone).sections for p in section.paragraphs)
    assert "No time series: the run's raw rows are past retention" in text
    assert "Rows quarantined at ingest: the raw rows are past retention" in text
    assert "No time series in this run." not in text
