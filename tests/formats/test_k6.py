"""Tests of the k6 adapters (``--out json`` NDJSON and the two end-of-test summary shapes).

Expected values are read independently from the real k6 files with gzip/json/re, not with our
code. The adapters are called directly: registering them for detection is done elsewhere.
"""

import gzip
import io
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import FIXTURES

from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.formats import k6_ndjson, k6_summary
from metrics_pipeline.formats.base import (
    FileAccounting,
    UnreadableFileError,
    open_maybe_gzip,
    sniff,
)

K6 = FIXTURES / "k6"
OUT = K6 / "k6_out.json.gz"
EXPORT = K6 / "k6_summary_export.json"
HANDLE = K6 / "k6_handle_summary.json"
STATS = {"avg": "mean", "min": "min", "med": "p50", "p(90)": "p90", "p(95)": "p95"}
STATS |= {"p(99)": "p99", "max": "max"}


def fixture(path: Path) -> Path:
    return path


def parse(module, data: bytes, name: str = "test.json"):
    """All frames of one file by table, and its accounting (checked for the invariant)."""
    accounting = FileAccounting(file=name)
    parts = defaultdict(list)
    for table, frame in module.parse(open_maybe_gzip(io.BytesIO(data)), accounting):
        assert frame.schema == SCHEMAS[table], table
        parts[table].append(frame)
    check_invariant(accounting, parts)
    return {table: pl.concat(frames) for table, frames in parts.items()}, accounting


def check_invariant(accounting: FileAccounting, parts) -> None:
    assert accounting.rows_read == accounting.rows_accepted + accounting.rows_quarantined
    assert sum(accounting.reasons.values()) == accounting.rows_quarantined
    assert sum(f.height for f in parts.get("quarantine", [])) == accounting.rows_quarantined


def quarantined(frames) -> list[tuple[int, str]]:
    return frames["quarantine"].sort("line_no").select("line_no", "reason").rows()


def epoch_ns(rfc3339: str) -> int:
    """Nanoseconds since the epoch of k6's ``2026-11-23T02:03:33.668631679Z``."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", rfc3339)
    assert match, rfc3339
    seconds = int(datetime.fromisoformat(match[1]).replace(tzinfo=UTC).timestamp())
    return seconds * 10**9 + int((match[2] or "0").ljust(9, "0")[:9])


# --- k6 --out json: the real file ----------------------------------------------------------------


@pytest.fixture(scope="module")
def k6_out():
    data = fixture(OUT).read_bytes()
    lines = {
        line_no: json.loads(line)
        for line_no, line in enumerate(gzip.decompress(data).splitlines(), start=1)
        if line.strip()
    }
    frames, accounting = parse(k6_ndjson, data, OUT.name)
    return frames, accounting, lines


def request_lines(lines) -> dict[int, dict]:
    return {
        n: o
        for n, o in lines.items()
        if o["type"] == "Point" and o["metric"] == "http_req_duration"
    }


def test_k6_out_every_line_is_accepted(k6_out):
    _, accounting, lines = k6_out
    assert accounting.format == "k6_ndjson"
    assert accounting.rows_read == accounting.rows_accepted == len(lines) == 44_877
    assert accounting.rows_quarantined == 0


def test_k6_out_one_request_row_per_duration_point(k6_out):
    frames, _, lines = k6_out
    expected = request_lines(lines)
    requests = frames["requests"]
    assert requests.height == len(expected) == 3984
    assert sorted(requests["line_no"]) == sorted(expected)
    by_endpoint = Counter(o["data"]["tags"]["name"] for o in expected.values())
    assert dict(requests["endpoint"].value_counts().rows()) == by_endpoint
    assert set(by_endpoint) == {"index", "items", "slow", "orders"}
    latencies = dict(requests.select("line_no", "latency_ms").rows())
    assert latencies == {n: o["data"]["value"] for n, o in expected.items()}
    assert requests["source_file"].unique().to_list() == [OUT.name]


def test_k6_out_status_ok_and_error_from_tags(k6_out):
    frames, _, lines = k6_out
    rows = {row["line_no"]: row for row in frames["requests"].iter_rows(named=True)}
    for line_no, point in request_lines(lines).items():
        tags, row = point["data"]["tags"], rows[line_no]
        assert (row["method"], row["status"]) == (tags["method"], int(tags["status"]))
        assert row["ok"] == (tags["expected_response"] == "true")
        assert row["error"] == tags.get("error_code")
    failed = frames["requests"].filter(~pl.col("ok"))
    assert failed.select("endpoint", "status", "error").unique().rows() == [("slow", 500, "1500")]
    assert failed.height == 9


def test_k6_out_ts_is_the_request_start(k6_out):
    """k6 stamps HTTP points at the end of the request: the row holds end - duration."""
    frames, _, lines = k6_out
    ts = dict(frames["requests"].select("line_no", pl.col("ts").dt.epoch("us")).rows())
    samples = request_lines(lines)
    slow = next(n for n, o in samples.items() if o["data"]["tags"]["name"] == "slow")
    for line_no in (min(samples), slow, max(samples)):
        data = samples[line_no]["data"]
        start_ns = epoch_ns(data["time"]) - round(data["value"] * 1e6)
        assert abs(ts[line_no] * 1000 - start_ns) <= 1000, line_no  # microsecond precision
    first = samples[min(samples)]["data"]
    assert first["time"] == "2026-11-23T02:03:33.668631679Z" and first["value"] == 0.901948
    assert ts[min(samples)] == epoch_ns("2026-11-23T02:03:33.667729Z") // 1000


def test_k6_out_vus_become_resources(k6_out):
    frames, _, lines = k6_out
    gauges = [
        (o["metric"], o["data"]["value"])
        for o in lines.values()
        if o["type"] == "Point" and o["metric"] in ("vus", "vus_max")
    ]
    resources = frames["resources"]
    assert sorted(resources.select("metric", "value").rows()) == sorted(gauges)
    assert resources["host"].unique().to_list() == ["k6"]


def test_k6_out_batches_are_bounded(monkeypatch):
    monkeypatch.setattr(k6_ndjson, "BATCH_ROWS", 500)
    accounting = FileAccounting(file=OUT.name)
    with fixture(OUT).open("rb") as stream:
        batches = list(k6_ndjson.parse(open_maybe_gzip(stream), accounting))
    assert max(frame.height for _, frame in batches) <= 500
    assert sum(f.height for t, f in batches if t == "requests") == 3984


# --- k6 --out json: bad and unusual input ---------------------------------------------------------


def point(metric="http_req_duration", **data) -> bytes:
    tags = {"name": "slow", "method": "GET", "status": "200", "expected_response": "true"}
    base = {"time": "2026-11-23T02:03:33.668631679Z", "value": 12.5, "tags": tags}
    base.update(data)
    return json.dumps({"metric": metric, "type": "Point", "data": base}).encode()


def declaration(metric: str, kind: str = "trend", contains: str = "time") -> bytes:
    data = {"name": metric, "type": kind, "contains": contains, "thresholds": []}
    return json.dumps({"type": "Metric", "data": data, "metric": metric}).encode()


def test_bad_lines_are_quarantined_with_their_reason():
    no_time = json.loads(point())
    del no_time["data"]["time"]
    no_metric = json.loads(point())
    del no_metric["metric"]
    lines = [
        declaration("http_req_duration"),  # 1
        point(),  # 2
        b"{not json",  # 3
        point(value="12.5"),  # 4
        json.dumps(no_time).encode(),  # 5
        declaration("wait", kind="histogram"),  # 6
        json.dumps({"type": "Sample", "metric": "vus", "data": {}}).encode(),  # 7
        json.dumps(no_metric).encode(),  # 8
        point(value=-1.0),  # 9
        point(time="yesterday"),  # 10
        b"[1, 2]",  # 11
        point()[:60],  # 12: the last line, cut by a killed k6
    ]
    frames, accounting = parse(k6_ndjson, b"\n".join(lines))
    assert accounting.rows_read == 12
    assert accounting.rows_accepted == 2
    assert frames["requests"]["line_no"].to_list() == [2]
    assert quarantined(frames) == [
        (3, "invalid JSON"),
        (4, "wrong type: value"),
        (5, "missing field: time"),
        (6, "unknown metric type"),
        (7, "unknown line type"),
        (8, "missing field: metric"),
        (9, "negative: duration"),
        (10, "invalid timestamp: 'yesterday'"),
        (11, "not a JSON object"),
        (12, "invalid JSON"),
    ]


def test_declared_time_metrics_reject_negative_values_and_gauges_do_not():
    lines = [
        declaration("queue_wait"),
        point("queue_wait", value=-3.0),
        declaration("temperature", kind="gauge", contains="default"),
        point("temperature", value=-3.0),
    ]
    frames, _ = parse(k6_ndjson, b"\n".join(lines))
    assert quarantined(frames) == [(2, "negative: duration")]
    assert frames["resources"].select("metric", "value").rows() == [("k6.temperature", -3.0)]


def test_builtin_points_are_accepted_without_rows_and_custom_ones_are_prefixed():
    lines = [point(metric) for metric in ("http_reqs", "http_req_failed", "checks", "iterations")]
    lines += [point("vus", value=3, tags={}), point("cart_items", value=2, tags=None)]
    frames, accounting = parse(k6_ndjson, b"\n".join(lines))
    assert accounting.rows_accepted == 6
    assert "requests" not in frames
    assert frames["resources"].select("metric", "value").rows() == [
        ("vus", 3.0),
        ("k6.cart_items", 2.0),
    ]


def test_no_response_and_missing_expected_response():
    timeout = {"name": "slow", "method": "GET", "status": "0", "error_code": "1050"}
    tags_404 = {"url": "http://h/x", "method": "GET", "status": "404"}
    lines = [point(tags=timeout), point(tags=tags_404), point(tags={"name": "a", "status": "204"})]
    frames, _ = parse(k6_ndjson, b"\n".join(lines))
    assert frames["requests"].select("endpoint", "status", "ok", "error").rows() == [
        ("slow", None, False, "1050"),
        ("http://h/x", 404, False, None),
        ("a", 204, True, None),
    ]


def test_cut_gzip_keeps_what_was_read(k6_out):
    """A half-uploaded file: the lines before the cut are kept and accounted for, then it raises."""
    _, _, lines = k6_out
    data = fixture(OUT).read_bytes()
    accounting = FileAccounting(file=OUT.name)
    batches = []
    with pytest.raises(UnreadableFileError):
        for batch in k6_ndjson.parse(
            open_maybe_gzip(io.BytesIO(data[: len(data) // 2])), accounting
        ):
            batches.append(batch)
    kept = [n for t, f in batches if t == "requests" for n in f["line_no"]]
    assert 0 < len(kept) < 3984
    assert kept == sorted(request_lines(lines))[: len(kept)]
    assert accounting.rows_read == accounting.rows_accepted + accounting.rows_quarantined


# --- k6 end-of-test summaries --------------------------------------------------------------------


@pytest.fixture(scope="module")
def summaries():
    return {
        path.name: (json.loads(path.read_bytes()), *parse(k6_summary, path.read_bytes(), path.name))
        for path in (fixture(EXPORT), fixture(HANDLE))
    }


def test_summaries_account_for_every_metric_entry(summaries):
    for document, _, accounting in summaries.values():
        assert accounting.format == "k6_summary"
        assert accounting.rows_read == accounting.rows_accepted == len(document["metrics"])


def test_both_summary_shapes_give_the_same_interval_stats(summaries):
    export = summaries[EXPORT.name][1]["interval_stats"].sort("endpoint")
    handle = summaries[HANDLE.name][1]["interval_stats"].sort("endpoint")
    assert export.drop("interval_s").equals(handle.drop("interval_s"))
    # The export has no run duration; count / rate of http_reqs recovers it.
    assert export["interval_s"].to_list() == pytest.approx(handle["interval_s"].to_list())


def test_summary_interval_stats_match_the_json(summaries):
    document, frames, _ = summaries[HANDLE.name]
    metrics = document["metrics"]
    rows = {row["endpoint"]: row for row in frames["interval_stats"].iter_rows(named=True)}
    assert set(rows) == {"(all)", "slow"}
    duration_s = document["state"]["testRunDurationMs"] / 1000
    overall, slow = rows["(all)"], rows["slow"]
    assert overall["count"] == metrics["http_reqs"]["values"]["count"] == 3984
    # http_req_failed is a rate of failed requests: its "passes" are the failures.
    assert overall["errors"] == metrics["http_req_failed"]["values"]["passes"] == 9
    assert slow["count"] == metrics["http_req_duration{name:slow}"]["values"]["count"] == 996
    assert slow["errors"] is None  # k6 has no http_req_failed{name:slow} here
    for row, name in ((overall, "http_req_duration"), (slow, "http_req_duration{name:slow}")):
        assert row["ts"] is None and row["interval_s"] == duration_s
        assert {STATS[k]: v for k, v in metrics[name]["values"].items() if k in STATS} == {
            column: row[column] for column in STATS.values()
        }
    export = json.loads(EXPORT.read_bytes())["metrics"]["http_req_duration{name:slow}"]
    assert slow["p95"] == export["p(95)"]


def test_both_summary_shapes_give_the_same_threshold_events(summaries):
    document, handle, _ = summaries[HANDLE.name]
    export = summaries[EXPORT.name][1]
    expected = {
        (
            "threshold_passed" if result["ok"] else "threshold_failed",
            f"{name}: {expression}",
            "k6 summary",
        )
        for name, metric in document["metrics"].items()
        for expression, result in metric.get("thresholds", {}).items()
    }
    assert len(expected) == 3
    for frames in (handle, export):
        assert set(frames["events"].select("kind", "subject", "detail").rows()) == expected
        assert frames["events"].height == 3


def summary_with(threshold_export, threshold_handle):
    stats = {"avg": 50.0, "p(95)": 70.0, "count": 10}
    export = {"root_group": {}, "metrics": {"http_req_duration": {**stats, **threshold_export}}}
    handle = {
        "root_group": {},
        "metrics": {"http_req_duration": {"type": "trend", "values": stats, **threshold_handle}},
    }
    return json.dumps(export).encode(), json.dumps(handle).encode()


@pytest.mark.parametrize("failed", [True, False])
def test_threshold_booleans_mean_opposite_things(failed):
    export, handle = summary_with(
        {"thresholds": {"p(95)<60": failed}}, {"thresholds": {"p(95)<60": {"ok": not failed}}}
    )
    kind = "threshold_failed" if failed else "threshold_passed"
    for data in (export, handle):
        frames, _ = parse(k6_summary, data)
        assert frames["events"].select("kind", "subject").rows() == [
            (kind, "http_req_duration: p(95)<60")
        ]
        assert frames["interval_stats"].select("endpoint", "count", "p95").rows() == [
            ("(all)", 10, 70.0)
        ]


def test_summary_without_duration_or_requests_leaves_them_null():
    frames, _ = parse(k6_summary, summary_with({}, {})[1])
    row = frames["interval_stats"].row(0, named=True)
    assert (row["interval_s"], row["errors"], row["p99"]) == (None, None, None)


def test_bad_summary_entries_are_quarantined_and_the_rest_kept():
    document = {
        "root_group": {},
        "metrics": {
            "http_req_duration": {"avg": 5.0, "count": 3},
            "vus": "ten",
            "http_reqs": {"count": "3"},
            "checks": {"type": "rate", "values": {"rate": 1}, "thresholds": {"rate>0.9": "yes"}},
        },
    }
    frames, accounting = parse(k6_summary, json.dumps(document).encode())
    assert (accounting.rows_read, accounting.rows_accepted) == (4, 1)
    assert sorted(r for _, r in quarantined(frames)) == [
        "wrong type: metric entry",
        "wrong type: metric value",
        "wrong type: threshold result",
    ]
    assert frames["interval_stats"]["count"].to_list() == [3]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"root_group": {}, "metrics": {"vus": {"value": 1', "invalid JSON"),
        (b'{"root_group": {}, "metrics": []}', "missing field: metrics"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_an_unreadable_summary_is_one_quarantined_unit(data, reason):
    frames, accounting = parse(k6_summary, data)
    assert (accounting.rows_read, accounting.rows_quarantined) == (1, 1)
    [(line_no, got)] = quarantined(frames)
    assert line_no == 0 and got.startswith(reason)


# --- detection -----------------------------------------------------------------------------------


def sniff_file(path: Path):
    with path.open("rb") as stream:
        return sniff(open_maybe_gzip(stream), path.name)


def all_fixtures() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file()) if FIXTURES.is_dir() else []


@pytest.mark.parametrize("path", all_fixtures(), ids=lambda p: p.relative_to(FIXTURES).as_posix())
def test_detection_claims_only_its_own_files(path):
    sample = sniff_file(path)
    assert k6_ndjson.looks_like(sample) == (path == OUT)
    assert k6_summary.looks_like(sample) == (path in (EXPORT, HANDLE))
