"""Tests of the JMeter JTL (CSV) and Artillery JSON report adapters, called directly.

Expected values come from independent reading of the fixtures (csv, json, datetime), never
from the adapters' own helpers.
"""

import csv
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import FIXTURES as LOADTEST

from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.formats import artillery_json, jmeter_jtl
from metrics_pipeline.formats.base import FileAccounting, open_maybe_gzip, sniff

JTL = LOADTEST / "jmeter" / "results.jtl"
REPORT = LOADTEST / "artillery" / "report.json"
DEBIAN_COLUMNS = (
    "timeStamp", "elapsed", "label", "responseCode", "responseMessage", "threadName", "dataType",
    "success", "bytes", "grpThreads", "allThreads", "Latency",
)  # fmt: skip
HEADER = "timeStamp,elapsed,label,responseCode,responseMessage,success,failureMessage,bytes"
PLUGIN = "plugins.metrics-by-endpoint.response_time."


def fixture(path: Path) -> Path:
    return path


def parse(adapter, data: bytes) -> tuple[dict[str, pl.DataFrame], FileAccounting]:
    """All batches of one file by table, after checking the accounting invariant."""
    accounting = FileAccounting(file="f")
    parts: dict[str, list[pl.DataFrame]] = {}
    for table, frame in adapter.parse(open_maybe_gzip(io.BytesIO(data)), accounting):
        assert frame.schema == SCHEMAS[table]
        parts.setdefault(table, []).append(frame)
    frames = {table: pl.concat(frames) for table, frames in parts.items()}
    quarantined = frames.get("quarantine", pl.DataFrame())
    assert accounting.format == adapter.NAME
    assert accounting.rows_read == accounting.rows_accepted + accounting.rows_quarantined
    assert quarantined.height == accounting.rows_quarantined == sum(accounting.reasons.values())
    if adapter is jmeter_jtl:
        assert frames.get("requests", pl.DataFrame()).height == accounting.rows_accepted
    return frames, accounting


def claims(adapter, data: bytes) -> bool:
    return adapter.looks_like(sniff(open_maybe_gzip(io.BytesIO(data)), "f"))


# JMeter -------------------------------------------------------------------------------------


def jtl_rows() -> list[dict[str, str]]:
    with fixture(JTL).open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(rows: list[list[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def jtl(*rows: str) -> bytes:
    return "\n".join((HEADER, *rows)).encode() + b"\n"


def test_jtl_fixture_matches_independent_reading():
    expected = jtl_rows()
    frames, acc = parse(jmeter_jtl, JTL.read_bytes())
    requests = frames["requests"]
    assert acc.rows_read == acc.rows_accepted == len(expected) > 3000
    assert acc.rows_quarantined == 0
    assert dict(Counter(requests["endpoint"])) == dict(Counter(r["label"] for r in expected))
    assert requests["ok"].to_list() == [r["success"] == "true" for r in expected]
    assert requests["latency_ms"].to_list() == [float(r["elapsed"]) for r in expected]
    assert requests["status"].to_list() == [int(r["responseCode"]) for r in expected]
    assert requests["bytes_received"].to_list() == [int(r["bytes"]) for r in expected]
    assert requests["line_no"].to_list() == list(range(2, len(expected) + 2))
    first = datetime.fromtimestamp(int(expected[0]["timeStamp"]) / 1000, UTC)
    assert requests["ts"][0] == first
    assert set(requests.filter(pl.col("endpoint") == "POST /api/orders")["method"]) == {"POST"}
    failed = requests.filter(~pl.col("ok"))
    assert failed.height == sum(r["success"] == "false" for r in expected) > 0
    assert set(failed["error"]) == {"Internal Server Error"}
    assert requests.filter(pl.col("ok"))["error"].null_count() == requests["ok"].sum()


def test_headerless_debian_layout_gives_the_same_rows():
    expected = jtl_rows()
    data = write_csv([[row[c] for c in DEBIAN_COLUMNS] for row in expected])
    assert claims(jmeter_jtl, data)
    full, _ = parse(jmeter_jtl, JTL.read_bytes())
    headerless, acc = parse(jmeter_jtl, data)
    assert acc.rows_accepted == len(expected) and acc.rows_quarantined == 0
    assert headerless["requests"]["line_no"][0] == 1
    shared = ["ts", "endpoint", "method", "status", "ok", "latency_ms", "bytes_received", "error"]
    assert headerless["requests"].select(shared).equals(full["requests"].select(shared))


@pytest.mark.parametrize("delimiter", ["\t", "|", ";"])
def test_other_delimiters_give_the_same_rows(delimiter):
    with fixture(JTL).open(newline="") as handle:
        data = write_csv(list(csv.reader(handle)), delimiter)
    assert claims(jmeter_jtl, data)
    full, _ = parse(jmeter_jtl, JTL.read_bytes())
    other, _ = parse(jmeter_jtl, data)
    assert other["requests"].equals(full["requests"])


def test_quoted_fields_with_delimiters_and_newlines():
    frames, acc = parse(
        jmeter_jtl,
        jtl(
            '1795399497158,12,GET /a,503,"Busy, try later",false,,10',
            '1795399497159,13,"GET /b?x=1,2",200,OK,true,,11',
            '1795399497160,14,GET /c,200,OK,false,"Assertion failed:\nline two",12',
            "1795399497161,15,GET /d,200,OK,true,,13",
        ),
    )
    rows = frames["requests"].rows(named=True)
    assert acc.rows_accepted == 4
    assert rows[0]["error"] == "Busy, try later" and rows[0]["status"] == 503
    assert rows[1]["endpoint"] == "GET /b?x=1,2" and rows[1]["error"] is None
    assert rows[2]["error"] == "Assertion failed:\nline two"
    assert [r["line_no"] for r in rows] == [2, 3, 4, 6]


def test_non_http_response_code():
    code = "Non HTTP response code: java.net.ConnectException"
    message = "Non HTTP response message: Connection refused"
    frames, _ = parse(jmeter_jtl, jtl(f"1795399497158,3,GET /a,{code},{message},false,,0"))
    row = frames["requests"].row(0, named=True)
    assert row["status"] is None and row["ok"] is False
    assert code in row["error"] and message in row["error"]


def test_date_format_timestamp():
    frames, _ = parse(
        jmeter_jtl,
        jtl(
            "2026/11/23 02:04:57.158,1,GET /a,200,OK,true,,1",
            "2026-11-23T03:04:57.158+01:00,1,GET /a,200,OK,true,,1",
        ),
    )
    expected = datetime(2026, 11, 23, 2, 4, 57, 158000, tzinfo=UTC)
    assert frames["requests"]["ts"].to_list() == [expected, expected]


def test_bad_rows_are_quarantined_never_raised():
    data = jtl(
        "1795399497158,12,GET /a,200,OK,true,,10",
        "1795399497158,12,GET /a,200",
        "1795399497158,fast,GET /a,200,OK,true,,10",
        "1795399497158,-4,GET /a,200,OK,true,,10",
        "1795399497158,12,GET /a,200,OK,maybe,,10",
        '1795399497158,12,"GET /a,200,OK,true,,10',  # a quote that is never closed
        "1795399497158,12,GET /b,200,OK,true,,10",
        HEADER,  # a repeated header (concatenated files) is not a record
        "1795399497158,12,GET /c,200,OK,true,,10",
        "1795399497158,12,GET /a,2",
    ).removesuffix(b"\n")
    frames, acc = parse(jmeter_jtl, data)
    assert frames["requests"]["endpoint"].to_list() == ["GET /a", "GET /b", "GET /c"]
    assert acc.rows_read == 9
    reasons = frames["quarantine"].select("line_no", "reason").rows()
    assert reasons == [
        (3, "wrong number of fields: expected 8, got 4"),
        (4, "wrong type: latency_ms"),
        (5, "negative: latency_ms"),
        (6, "invalid success: expected true or false"),
        (7, "wrong number of fields: expected 8, got 3"),
        (11, "wrong number of fields: expected 8, got 4"),
    ]


def test_non_utf8_row_is_quarantined_alone():
    data = jtl("1795399497158,12,GET /a,200,OK,true,,10").replace(b"OK", b"\xff\xfe")
    data += b"1795399497159,12,GET /b,200,OK,true,,10\n"
    frames, acc = parse(jmeter_jtl, data)
    assert frames["requests"]["endpoint"].to_list() == ["GET /b"]
    assert acc.reasons == {"not UTF-8": 1}


# Artillery ----------------------------------------------------------------------------------


def report() -> dict:
    return json.loads(fixture(REPORT).read_bytes())


def dumps(value: dict) -> bytes:
    return json.dumps(value, indent=2).encode()


def error_count(counters: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    return sum(v for k, v in counters.items() if (m := pattern.fullmatch(k)) and int(m[1]) >= 400)


def test_report_fixture_rows_and_values_match_the_json():
    doc = report()
    expected = {
        (int(period["period"]), key.removeprefix(PLUGIN)): (period, summary)
        for period in doc["intermediate"]
        for key, summary in period["summaries"].items()
        if key.startswith(PLUGIN)
    }
    aggregate_records = sum(key.startswith(PLUGIN) for key in doc["aggregate"]["summaries"])
    frames, acc = parse(artillery_json, REPORT.read_bytes())
    stats = frames["interval_stats"]
    assert stats.height == len(expected) == 16
    assert acc.rows_read == acc.rows_accepted == len(expected) + aggregate_records
    assert stats["errors"].sum() == 5
    for row in stats.iter_rows(named=True):
        period_ms = int(row["ts"].timestamp() * 1000)
        period, summary = expected[(period_ms, row["endpoint"])]
        assert row["count"] == summary["count"]
        assert row["p50"] == summary["median"]
        for key in ("mean", "min", "p90", "p95", "p99", "max"):
            assert row[key] == summary[key], key
        span = (period["lastMetricAt"] - period["firstMetricAt"]) / 1000
        assert row["interval_s"] == pytest.approx(span)
        prefix = f"plugins.metrics-by-endpoint.{row['endpoint']}.codes."
        assert row["errors"] == error_count(period["counters"], prefix)


def test_string_and_numeric_periods_parse_alike():
    doc = report()
    as_string, _ = parse(artillery_json, dumps(doc))
    for period in doc["intermediate"]:
        period["period"] = int(period["period"])
    as_number, _ = parse(artillery_json, dumps(doc))
    assert as_number["interval_stats"].equals(as_string["interval_stats"])
    assert as_string["interval_stats"]["ts"][0] == datetime(2026, 11, 23, 2, 6, 10, tzinfo=UTC)


def test_report_without_intermediates_stores_the_aggregate():
    aggregate = report()["aggregate"]
    frames, acc = parse(artillery_json, dumps({"aggregate": aggregate, "intermediate": []}))
    stats = frames["interval_stats"]
    plugin = {k.removeprefix(PLUGIN): v for k, v in aggregate["summaries"].items() if PLUGIN in k}
    assert dict(zip(stats["endpoint"], stats["count"], strict=True)) == {
        endpoint: summary["count"] for endpoint, summary in plugin.items()
    }
    assert acc.rows_accepted == len(plugin)
    assert set(stats["ts"]) == {datetime.fromtimestamp(aggregate["firstMetricAt"] / 1000, UTC)}
    assert stats["errors"].sum() == error_count(
        aggregate["counters"], "plugins.metrics-by-endpoint./api/slow.codes."
    )


def test_without_the_endpoint_plugin_the_overall_summary_is_used():
    doc = report()
    for period in [*doc["intermediate"], doc["aggregate"]]:
        period["summaries"] = {k: v for k, v in period["summaries"].items() if PLUGIN not in k}
    frames, _ = parse(artillery_json, dumps(doc))
    stats = frames["interval_stats"]
    assert set(stats["endpoint"]) == {"(all)"}
    assert stats["count"].to_list() == [
        p["summaries"]["http.response_time"]["count"] for p in doc["intermediate"]
    ]
    assert stats["errors"].to_list() == [
        error_count(p["counters"], "http.codes.") for p in doc["intermediate"]
    ]


def test_bad_summary_is_quarantined_with_its_period():
    doc = report()
    doc["intermediate"][1]["summaries"][PLUGIN + "/api/items"]["count"] = "many"
    frames, acc = parse(artillery_json, dumps(doc))
    assert frames["interval_stats"].height == 15
    assert acc.rows_read == 20 and acc.reasons == {"wrong type: count": 1}
    assert frames["quarantine"].select("line_no", "reason").rows() == [(2, "wrong type: count")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "invalid JSON"),
        (b'{"aggregate": [], "intermediate": []}', "not an Artillery report"),
        (b'{"aggregate": {"summaries": {}}, "intermediate": []}', "no response-time summaries"),
    ],
)
def test_unusable_document_is_one_quarantined_unit(data, reason):
    if data is None:
        full = fixture(REPORT).read_bytes()
        data = full[: len(full) // 2]
        assert claims(artillery_json, data)
    frames, acc = parse(artillery_json, data)
    assert "interval_stats" not in frames
    assert (acc.rows_read, acc.rows_quarantined) == (1, 1)
    assert frames["quarantine"].select("line_no", "reason").rows() == [(0, reason)]


# Detection ----------------------------------------------------------------------------------


def loadtest_files() -> list[Path]:
    return sorted(p for p in LOADTEST.rglob("*") if p.is_file()) if LOADTEST.is_dir() else []


@pytest.mark.parametrize("path", loadtest_files(), ids=lambda p: p.relative_to(LOADTEST).as_posix())
def test_each_adapter_claims_only_its_own_fixture(path):
    with path.open("rb") as raw:
        sample = sniff(open_maybe_gzip(raw), path.name)
    assert jmeter_jtl.looks_like(sample) == (path == JTL)
    assert artillery_json.looks_like(sample) == (path == REPORT)


def test_fixtures_for_detection_exist():
    fixture(JTL)
    fixture(REPORT)
    assert len(loadtest_files()) > 2
