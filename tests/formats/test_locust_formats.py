"""Tests of the Locust CSV / --json adapters and the psutil-style system monitor adapter.

Expected values are read independently from the real files with csv/json, not with our code.
The adapters are called directly: registering them for detection is done elsewhere.
"""

import csv
import gzip
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import FIXTURES

from metrics_pipeline.contracts.tables import SCHEMAS
from metrics_pipeline.formats import locust_csv, locust_json, sysmon_ndjson
from metrics_pipeline.formats.base import (
    FileAccounting,
    UnreadableFileError,
    open_maybe_gzip,
    sniff,
)

LOCUST = FIXTURES / "locust"
ADAPTERS = (locust_csv, locust_json, sysmon_ndjson)
OWNER = {
    "locust_stats.csv": "locust_csv",
    "locust_stats_history.csv": "locust_csv",
    "locust_failures.csv": "locust_csv",
    "locust_exceptions.csv": "locust_csv",
    "locust_stdout.json": "locust_json",
    "sysmon.ndjson": "sysmon_ndjson",
}
PERCENTILES = {"p50": "50%", "p90": "90%", "p95": "95%", "p99": "99%"}
STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def fixture(name: str) -> Path:
    return LOCUST / name


def parse(module, data: bytes, name: str = "test"):
    """All frames of one file by table, and its accounting (checked for the invariant)."""
    accounting = FileAccounting(file=name)
    parts = defaultdict(list)
    for table, frame in module.parse(open_maybe_gzip(io.BytesIO(data)), accounting):
        assert frame.schema == SCHEMAS[table], table
        parts[table].append(frame)
    check_invariant(accounting, parts)
    assert accounting.format == module.NAME
    return {table: pl.concat(frames) for table, frames in parts.items()}, accounting


def check_invariant(accounting: FileAccounting, parts) -> None:
    assert accounting.rows_read == accounting.rows_accepted + accounting.rows_quarantined
    assert sum(accounting.reasons.values()) == accounting.rows_quarantined
    assert sum(f.height for f in parts.get("quarantine", [])) == accounting.rows_quarantined


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def reasons(tables) -> list[tuple[int, str]]:
    return tables["quarantine"].sort("line_no").select("line_no", "reason").rows()


# --- detection ---------------------------------------------------------------------------------


def all_fixtures() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file()) if FIXTURES.is_dir() else []


@pytest.mark.parametrize("path", all_fixtures(), ids=lambda p: p.name)
def test_looks_like_claims_exactly_its_own_fixtures(path):
    with path.open("rb") as stream:
        sample = sniff(open_maybe_gzip(stream), path.name)
    claims = {adapter.NAME for adapter in ADAPTERS if adapter.looks_like(sample)}
    assert claims == ({OWNER[path.name]} if path.name in OWNER else set())


def test_fixtures_are_present():
    for name in OWNER:
        fixture(name)
    assert len(all_fixtures()) > len(OWNER)  # the other tools' files are checked as well


def test_looks_like_needs_content_not_a_name():
    empty = sniff(open_maybe_gzip(io.BytesIO(b"")), "locust_stats.csv")
    assert not any(adapter.looks_like(empty) for adapter in ADAPTERS)
    # Quirk: the second of --json/--json-file is "[]"; only the name can tell it is Locust's.
    assert locust_json.looks_like(sniff(open_maybe_gzip(io.BytesIO(b"[]\n")), "locust.json"))
    assert not locust_json.looks_like(sniff(open_maybe_gzip(io.BytesIO(b"[]\n")), "other.json"))


# --- _stats.csv --------------------------------------------------------------------------------


def test_stats_rows_and_values_equal_the_file():
    path = fixture("locust_stats.csv")
    expected = csv_rows(path)
    tables, acc = parse(locust_csv, path.read_bytes())
    assert acc.rows_read == acc.rows_accepted == len(expected) == 5
    endpoints = [r for r in expected if not (r["Type"] == "" and r["Name"] == "Aggregated")]
    stats = tables["interval_stats"]
    assert stats.height == len(endpoints) == len(expected) - 1
    assert stats["ts"].is_null().all() and stats["interval_s"].is_null().all()
    by_endpoint = {row["endpoint"]: row for row in stats.iter_rows(named=True)}
    for r in endpoints:
        row = by_endpoint[r["Name"]]
        assert row["count"] == int(r["Request Count"])
        assert row["errors"] == int(r["Failure Count"])
        assert row["mean"] == float(r["Average Response Time"])
        assert row["min"] == float(r["Min Response Time"])
        assert row["max"] == float(r["Max Response Time"])
        for key, column in PERCENTILES.items():
            assert row[key] == float(r[column])
    assert by_endpoint["/api/slow"]["errors"] == 12


def test_stats_bad_rows_are_quarantined_and_quoted_commas_kept():
    data = (
        "\n".join(
            [
                STATS_HEADER,
                'GET,"/search?q=a,b",10,1,5,5.5,1.0,9.0,10,1,0,5,6,6,7,8,9,9,9,9,9,9',
                "GET,/short,10,1",
                "GET,/bad,ten,1,5,5.5,1.0,9.0,10,1,0,5,6,6,7,8,9,9,9,9,9,9",
                "GET,/na,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A",
                "",
                ",,,,,,,,,,,,,,,,,,,,,",
                "GET,/neg,-1,0,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1,1,1",
            ]
        ).encode()
        + b"\nGET,/\xff,1,0,1,1,1,1,1,1,0,1,1,1,1,1,1,1,1,1,1,1\n"
    )
    tables, acc = parse(locust_csv, data)
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (6, 2, 4)
    assert reasons(tables) == [
        (3, "wrong number of fields: expected 22, got 4"),
        (4, "wrong type: Request Count"),
        (8, "negative: Request Count"),
        (9, "not UTF-8"),
    ]
    rows = {r["endpoint"]: r for r in tables["interval_stats"].iter_rows(named=True)}
    assert rows["/search?q=a,b"]["count"] == 10 and rows["/search?q=a,b"]["p99"] == 9.0
    assert rows["/na"]["count"] == 0
    assert all(rows["/na"][key] is None for key in ("mean", "min", "max", *PERCENTILES))


def test_crlf_bom_and_unterminated_quote():
    row = "GET,/a,1,0,1,1,1,1,1,1,0,1,1,1,1,1,1,1,1,1,1,1"
    data = ("\ufeff" + STATS_HEADER + "\r\n" + row + '\r\nGET,"/open,1,0\r\n').encode()
    tables, acc = parse(locust_csv, data)
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (2, 1, 1)
    assert tables["interval_stats"]["endpoint"].to_list() == ["/a"]
    assert tables["quarantine"]["line_no"].to_list() == [3]


def test_unknown_csv_header_is_an_unreadable_file():
    accounting = FileAccounting(file="x.csv")
    with pytest.raises(UnreadableFileError, match=r"x\.csv: not a Locust CSV header"):
        list(locust_csv.parse(io.BytesIO(b"a,b\n1,2\n"), accounting))
    assert accounting.rows_read == 0


# --- _stats_history.csv ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history():
    path = fixture("locust_stats_history.csv")
    return csv_rows(path), parse(locust_csv, path.read_bytes())


def test_history_counts(history):
    expected, (tables, acc) = history
    assert acc.rows_read == acc.rows_accepted == len(expected) == 146
    endpoint_rows = [r for r in expected if r["Name"] != "Aggregated"]
    assert tables["interval_stats"].height == len(endpoint_rows) == 116


def test_history_counts_are_per_interval_and_add_up_to_the_totals(history):
    expected, (tables, _) = history
    last = {r["Name"]: r for r in expected}  # the file is in time order
    sums = tables["interval_stats"].group_by("endpoint").agg(pl.sum("count"), pl.sum("errors"))
    for endpoint, count, errors in sums.rows():
        assert count == int(last[endpoint]["Total Request Count"])
        assert errors == int(last[endpoint]["Total Failure Count"])
    assert sums["count"].sum() == int(last["Aggregated"]["Total Request Count"]) == 3451


def test_history_row_values(history):
    expected, (tables, _) = history
    slow = [r for r in expected if r["Name"] == "/api/slow"]
    before, now = slow[-2], slow[-1]
    n0, n1 = int(before["Total Request Count"]), int(now["Total Request Count"])
    sum0 = float(before["Total Average Response Time"]) * n0
    sum1 = float(now["Total Average Response Time"]) * n1
    row = (
        tables["interval_stats"]
        .filter(pl.col("endpoint") == "/api/slow")
        .sort("ts")
        .row(-1, named=True)
    )
    assert row["ts"] == datetime.fromtimestamp(int(now["Timestamp"]), tz=UTC)
    assert row["interval_s"] == int(now["Timestamp"]) - int(before["Timestamp"]) == 1
    assert row["count"] == n1 - n0
    assert row["errors"] == int(now["Total Failure Count"]) - int(before["Total Failure Count"])
    assert row["mean"] == pytest.approx((sum1 - sum0) / (n1 - n0), rel=1e-9)
    assert row["min"] is None
    assert row["max"] == float(now["100%"])
    for key, column in PERCENTILES.items():
        assert row[key] == float(now[column])


def test_history_zero_percentiles_without_a_window_are_null(history):
    expected, (tables, _) = history
    # 1795399313: requests counted, every percentile 0 although no request was under 0.5 ms.
    first = [r for r in expected if r["Timestamp"] == "1795399313" and r["Name"] != "Aggregated"]
    assert first and all(r["50%"] == "0" and float(r["Total Min Response Time"]) > 1 for r in first)
    ts = datetime.fromtimestamp(1795399313, tz=UTC)
    rows = tables["interval_stats"].filter(pl.col("ts") == ts)
    assert rows.height == len(first)
    assert rows.select("p50", "p90", "p95", "p99", "max").null_count().row(0) == (len(first),) * 5
    assert rows["count"].to_list() == [int(r["Total Request Count"]) for r in first]


def test_history_without_full_history_keeps_the_aggregated_rows():
    path = fixture("locust_stats_history.csv")
    lines = path.read_text().splitlines(keepends=True)
    data = "".join(lines[:1] + [line for line in lines[1:] if ",,Aggregated," in line])
    tables, acc = parse(locust_csv, data.encode())
    assert acc.rows_read == acc.rows_accepted == 30
    stats = tables["interval_stats"]
    assert stats.height == 30 and set(stats["endpoint"]) == {"(all)"}
    assert stats["count"].sum() == 3451 and stats["errors"].sum() == 12


def test_history_of_only_zero_aggregated_rows_is_kept():
    header = fixture("locust_stats_history.csv").read_text().splitlines()[0]
    zero = ",0,,Aggregated,0,0" + ",N/A" * 11 + ",0,0,0,0.0,0,0,0"
    data = "\n".join([header, f"1795399312{zero}", f"1795399313{zero}"]).encode()
    tables, acc = parse(locust_csv, data)
    assert acc.rows_accepted == 2
    assert tables["interval_stats"]["interval_s"].to_list() == [None, 1.0]
    assert set(tables["interval_stats"]["endpoint"]) == {"(all)"}


def test_history_bad_rows(history):
    header = fixture("locust_stats_history.csv").read_text().splitlines()[0]
    good = "1795399313,10,GET,/,0,0" + ",5" * 11 + ",11,0,3,4.5,2.1,10.6,17.0"
    data = "\n".join(
        [header, good, good.replace("1795399313", "soon"), "1795399314,10,GET,/", good]
    ).encode()
    tables, acc = parse(locust_csv, data)
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (4, 2, 2)
    assert reasons(tables) == [
        (3, "wrong type: Timestamp"),
        (4, "wrong number of fields: expected 24, got 4"),
    ]
    # The repeated row counts nothing new.
    assert tables["interval_stats"]["count"].to_list() == [11, 0]


def test_batches_are_bounded(monkeypatch):
    monkeypatch.setattr(locust_csv, "BATCH_ROWS", 7)
    data = fixture("locust_stats_history.csv").read_bytes()
    accounting = FileAccounting(file="h.csv")
    heights = [f.height for _, f in locust_csv.parse(open_maybe_gzip(io.BytesIO(data)), accounting)]
    assert max(heights) <= 7 and sum(heights) == 116


def test_corrupt_gzip_keeps_the_rows_before_the_damage():
    header, body = fixture("locust_stats_history.csv").read_text().split("\n", 1)
    # More than the 1 MiB read buffer, so lines are read before the damage is reached.
    data = gzip.compress((header + "\n" + body * 60).encode())
    accounting = FileAccounting(file="h.csv.gz")
    frames = []
    with pytest.raises(UnreadableFileError, match=r"h\.csv\.gz: unreadable after line \d+"):
        for _, frame in locust_csv.parse(open_maybe_gzip(io.BytesIO(data[:-40])), accounting):
            frames.append(frame)
    assert accounting.rows_read == accounting.rows_accepted > 146
    assert sum(f.height for f in frames) > 0


# --- _failures.csv and _exceptions.csv ---------------------------------------------------------


def test_failures_become_events():
    path = fixture("locust_failures.csv")
    expected = csv_rows(path)
    tables, acc = parse(locust_csv, path.read_bytes())
    assert acc.rows_read == acc.rows_accepted == len(expected) == 1
    (row,) = tables["events"].iter_rows(named=True)
    r = expected[0]
    assert row["kind"] == "request_failures"
    assert row["subject"] == f"{r['Method']} {r['Name']}" == "GET /api/slow"
    assert row["detail"] == f"{r['Occurrences']} x {r['Error']}"
    assert row["ts"] == datetime(2026, 11, 23, 2, 1, 57, tzinfo=UTC)


def test_header_only_exceptions_file():
    tables, acc = parse(locust_csv, fixture("locust_exceptions.csv").read_bytes())
    assert tables == {} and acc.rows_read == 0 and acc.error is None


def test_exceptions_with_multiline_tracebacks():
    long = "x" * 5000
    data = (
        "Count,Message,Traceback,Nodes\n"
        '3,"ValueError(\'a, b\')","Traceback (most recent call last):\n  File ""x.py"", line 1\n'
        'ValueError: a, b\n",local\n'
        f'1,KeyError,"{long}",local\n'
        "many,KeyError,tb,local\n"
        f'1,Huge,"{"y" * 200_000}",local\n'
    ).encode()
    tables, acc = parse(locust_csv, data)
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (4, 2, 2)
    # The first record is lines 2-5. The csv module refuses fields above 128 KiB.
    assert reasons(tables) == [
        (7, "wrong type: Count"),
        (8, "invalid CSV: field larger than field limit (131072)"),
    ]
    first, second = tables["events"].iter_rows(named=True)
    assert first["kind"] == "exception" and first["ts"] is None
    assert first["subject"] == "ValueError('a, b')"
    assert first["detail"] == '3 x Traceback (most recent call last):\n  File "x.py", line 1\n' + (
        "ValueError: a, b\n"
    )
    assert len(second["detail"].encode()) == 4096 and second["detail"].startswith("1 x xxx")


# --- --json ------------------------------------------------------------------------------------


def locust_percentile(histogram: dict[str, int], num_requests: int, percent: float) -> float:
    """Locust's calculate_response_time_percentile, written out from its source."""
    num_of_request = int(num_requests * percent)
    processed = 0
    for response_time in sorted((float(k) for k in histogram), reverse=True):
        processed += histogram[next(k for k in histogram if float(k) == response_time)]
        if num_requests - processed <= num_of_request:
            return response_time
    return 0


def test_json_rows_equal_the_file():
    path = fixture("locust_stdout.json")
    expected = json.loads(path.read_text())
    tables, acc = parse(locust_json, path.read_bytes())
    assert acc.rows_read == acc.rows_accepted == len(expected) == 4
    rows = {r["endpoint"]: r for r in tables["interval_stats"].iter_rows(named=True)}
    assert len(rows) == len(expected)
    for entry in expected:
        row = rows[entry["name"]]
        assert row["ts"] == datetime.fromtimestamp(entry["start_time"], tz=UTC)
        assert row["interval_s"] == pytest.approx(
            entry["last_request_timestamp"] - entry["start_time"]
        )
        assert row["count"] == entry["num_requests"]
        assert row["errors"] == entry["num_failures"]
        assert row["mean"] == pytest.approx(entry["total_response_time"] / entry["num_requests"])
        assert row["min"] == entry["min_response_time"]
        assert row["max"] == entry["max_response_time"]
        n = sum(entry["response_times"].values())
        assert n == entry["num_requests"]
        for key, p in {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}.items():
            assert row[key] == locust_percentile(entry["response_times"], n, p), key
    assert sum(r["count"] for r in rows.values()) == 3534


def test_json_percentiles_on_a_small_histogram():
    # Sorted values: 10 x18, 20, 100 (n = 20). Rank floor(p * n) + 1: p50 -> 11th = 10,
    # p90 -> 19th = 20, p95 -> 20th = 100, p99 -> 20th (capped) = 100.
    assert locust_json.percentile({10.0: 18, 20.0: 1, 100.0: 1}, 0.5) == 10
    assert locust_json.percentile({10.0: 18, 20.0: 1, 100.0: 1}, 0.9) == 20
    assert locust_json.percentile({100.0: 1, 10.0: 18, 20.0: 1}, 0.95) == 100
    assert locust_json.percentile({10.0: 18, 20.0: 1, 100.0: 1}, 0.99) == 100
    # Four values 1..4: the median is the 3rd (Locust's rule), not the 2nd (classic nearest rank).
    assert locust_json.percentile({1.0: 1, 2.0: 1, 3.0: 1, 4.0: 1}, 0.5) == 3
    assert locust_json.percentile({}, 0.5) is None


def test_json_entry_through_parse():
    entry = {
        "name": "/x",
        "method": "GET",
        "start_time": 1795399312.5,
        "last_request_timestamp": 1795399322.5,
        "num_requests": 5,
        "num_none_requests": 1,
        "num_failures": 2,
        "total_response_time": 40.0,
        "min_response_time": 4.0,
        "max_response_time": 16.0,
        "response_times": {"4": 1, "8": 1, "12": 1, "16": 1},
    }
    tables, _ = parse(locust_json, json.dumps([entry]).encode())
    row = tables["interval_stats"].row(0, named=True)
    assert (row["count"], row["errors"], row["interval_s"], row["mean"]) == (5, 2, 10.0, 10.0)
    assert (row["p50"], row["p90"], row["p95"], row["p99"]) == (12.0, 16.0, 16.0, 16.0)


def test_json_bad_entries_and_documents():
    good = {"name": "/a", "start_time": 1795399312, "num_requests": 0, "num_failures": 0}
    data = json.dumps(
        [
            {**good, "response_times": {}},
            {**good, "num_requests": "many"},
            7,
            {**good, "response_times": {"x": 1}},
            {"name": "/b", "start_time": 1795399312, "num_failures": 0},
        ]
    )
    tables, acc = parse(locust_json, data.encode())
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (5, 1, 4)
    assert reasons(tables) == [
        (2, "wrong type: num_requests"),
        (3, "not a JSON object"),
        (4, "wrong type: response_times"),
        (5, "missing field: num_requests"),
    ]
    row = tables["interval_stats"].row(0, named=True)
    assert row["count"] == 0 and row["mean"] is None and row["p50"] is None

    truncated = fixture("locust_stdout.json").read_bytes()[:3000]
    tables, acc = parse(locust_json, truncated)
    assert (acc.rows_read, acc.rows_quarantined) == (1, 1)
    assert reasons(tables) == [(0, "invalid JSON")]
    tables, acc = parse(locust_json, b'{"name": "/a"}')
    assert reasons(tables) == [(0, "not a JSON array")] and acc.rows_read == 1
    tables, acc = parse(locust_json, b"[]")
    assert tables == {} and acc.rows_read == 0


# --- sysmon.ndjson -----------------------------------------------------------------------------


def numeric_leaves(value, key="") -> int:
    """Independent count of the metric values in one sample (see the adapter's docstring)."""
    if key in ("timestamp", "time", "elapsed_s", "pid"):
        return 0
    if isinstance(value, dict):
        return sum(numeric_leaves(v, k) for k, v in value.items())
    if isinstance(value, list):
        return len(value) if key == "cpu_percent_percpu" else 0
    return int(isinstance(value, int | float) and not isinstance(value, bool))


@pytest.fixture(scope="module")
def sysmon():
    path = fixture("sysmon.ndjson")
    samples = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return samples, parse(sysmon_ndjson, path.read_bytes())


def test_sysmon_every_line_is_accepted(sysmon):
    samples, (tables, acc) = sysmon
    assert acc.rows_read == acc.rows_accepted == len(samples) == 31
    assert tables["resources"].height == sum(numeric_leaves(s) for s in samples) == 677


def test_sysmon_values(sysmon):
    samples, (tables, _) = sysmon
    resources = tables["resources"]
    assert set(resources["host"]) == {"localhost"}
    first = samples[0]
    ts = datetime.fromtimestamp(first["timestamp"], tz=UTC)
    values = dict(resources.filter(pl.col("ts") == ts).select("metric", "value").rows())
    assert values["cpu_pct"] == first["cpu_percent"]
    assert values["mem_pct"] == first["mem_percent"]
    assert values["mem_used_bytes"] == first["mem_used_bytes"]
    assert values["load1"] == first["load1"]
    for cpu, value in enumerate(first["cpu_percent_percpu"]):
        assert values[f"cpu_pct.{cpu}"] == value
    server = first["proc"]["server"]
    assert values["proc.server.cpu_pct"] == server["cpu_percent"]
    assert values["proc.server.rss_bytes"] == server["rss_bytes"]
    assert values["net.bytes_recv"] == first["net"]["bytes_recv"]
    assert values["net_delta.lo_bytes_sent"] == first["net_delta"]["lo_bytes_sent"]
    assert "proc.server.pid" not in values and "elapsed_s" not in values
    # The last sample was taken after the server exited: "proc": {"server": null}.
    assert samples[-1]["proc"] == {"server": None}
    last = resources.filter(pl.col("ts") == resources["ts"].max())
    assert not last["metric"].str.starts_with("proc.").any()


def test_sysmon_bad_lines_are_quarantined():
    good = {"timestamp": 1795399313.4, "cpu_percent": 50.0, "host": "web-1"}
    lines = [
        json.dumps(good),
        json.dumps({**good, "cpu_percent": "high"}),
        '{"timestamp": 1795399313.4, "cpu_per',
        json.dumps({"cpu_percent": 1.0}),
        json.dumps({"timestamp": 1795399313.4, "note": "hello"}),
        json.dumps([good]),
        '{"timestamp": 1795399313.4, "cpu_percent": NaN}',
        json.dumps({**good, "proc": {"db": {"rss_bytes": "1 GB"}}}),
        json.dumps({"time": "2026-11-23T02:01:53Z", "mem_percent": 3, "disk": {"read_bytes": 9}}),
        '{"timestamp": 1795399313.4, "cpu_percent": 5, "host": "web-\\ud800"}',
    ]
    tables, acc = parse(sysmon_ndjson, ("\n".join(lines) + "\n").encode())
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (10, 2, 8)
    assert reasons(tables) == [
        (2, "wrong type: cpu_pct"),
        (3, "invalid JSON"),
        (4, "missing field: ts"),
        (5, "no numeric metrics"),
        (6, "not a JSON object"),
        (7, "not finite: cpu_pct"),
        (8, "wrong type: proc.db.rss_bytes"),
        (10, "not UTF-8: a lone surrogate escape in a text"),
    ]
    rows = tables["resources"].select("host", "metric", "value").rows()
    assert rows == [
        ("web-1", "cpu_pct", 50.0),
        ("localhost", "mem_pct", 3.0),
        ("localhost", "disk.read_bytes", 9.0),
    ]


def test_sysmon_batches_are_bounded(monkeypatch):
    monkeypatch.setattr(sysmon_ndjson, "BATCH_ROWS", 5)
    data = fixture("sysmon.ndjson").read_bytes()
    accounting = FileAccounting(file="s.ndjson")
    heights = [f.height for _, f in sysmon_ndjson.parse(io.BytesIO(data), accounting)]
    assert max(heights) <= 5 and sum(heights) == 677
