"""Tests of the per-request NDJSON adapter through read_results / iter_file, with accounting.

Expected values are computed independently (plain json, datetime) rather than with our code.
"""

import gzip
import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import FIXTURES

from metrics_pipeline.contracts.tables import CANONICAL_TABLES, SCHEMAS
from metrics_pipeline.formats import FileAccounting, canonical_jsonl, iter_file, read_results

LOCUST_REQUESTS = FIXTURES / "locust" / "requests.ndjson"
EXCERPT_LIMIT = 4096
TEN_MB = 10 * 1024 * 1024
DROP = object()  # record(field=DROP) leaves the field out


def record(**fields) -> bytes:
    base = {"ts": "2026-11-23T02:01:57Z", "endpoint": "/a", "latency_ms": 5.0}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not DROP}).encode()


GOOD = record()


def ndjson(*lines: bytes, final_newline: bool = True) -> bytes:
    return b"\n".join(lines) + (b"\n" if final_newline else b"")


def read_one(tmp_path: Path, data: bytes, name: str = "results.ndjson"):
    path = tmp_path / name
    path.write_bytes(data)
    parsed = read_results(path)
    assert len(parsed.accounting) == 1
    return parsed, parsed.accounting[0]


def check_invariant(parsed) -> None:
    """rows_read == accepted + quarantined per file, and the frames hold exactly those rows."""
    for acc in parsed.accounting:
        assert acc["rows_read"] == acc["rows_accepted"] + acc["rows_quarantined"], acc
        assert sum(acc["reasons"].values()) == acc["rows_quarantined"], acc
    assert parsed.requests.height == sum(a["rows_accepted"] for a in parsed.accounting)
    assert parsed.quarantine.height == sum(a["rows_quarantined"] for a in parsed.accounting)
    for table in CANONICAL_TABLES:
        assert getattr(parsed, table).schema == SCHEMAS[table], table


def quarantined(parsed) -> list[tuple[int, str]]:
    return parsed.quarantine.sort("line_no").select("line_no", "reason").rows()


# --- the real Locust request-hook file ---------------------------------------------------------


@pytest.fixture(scope="module")
def locust():
    expected = {}
    with LOCUST_REQUESTS.open("rb") as stream:
        for line_no, line in enumerate(stream, start=1):
            if line.strip():
                expected[line_no] = json.loads(line)
    return read_results(LOCUST_REQUESTS), expected


def test_locust_every_line_is_accepted(locust):
    parsed, expected = locust
    check_invariant(parsed)
    (acc,) = parsed.accounting
    assert acc["format"] == "canonical_jsonl"
    assert acc["error"] is None
    assert acc["rows_read"] == len(expected)
    assert acc["rows_accepted"] == len(expected)
    assert acc["rows_quarantined"] == 0
    assert parsed.requests["line_no"].sort().to_list() == sorted(expected)
    assert set(parsed.requests["source_file"]) == {"requests.ndjson"}


def test_locust_counts_per_endpoint(locust):
    parsed, expected = locust
    independent = Counter(rec["name"] for rec in expected.values())
    ours = dict(parsed.requests.group_by("endpoint").len().iter_rows())
    assert ours == dict(independent)


def test_locust_fields_match_line_by_line(locust):
    parsed, expected = locust
    rows = {row["line_no"]: row for row in parsed.requests.iter_rows(named=True)}
    not_ok = 0
    for line_no, rec in expected.items():
        row = rows[line_no]
        failed = rec["status"] >= 400 or rec["exception"] is not None
        not_ok += failed
        assert row["ok"] is (not failed), line_no
        assert row["latency_ms"] == rec["response_time"], line_no
        assert row["endpoint"] == rec["name"], line_no
        assert row["method"] == rec["method"], line_no
        assert row["status"] == rec["status"], line_no
        assert row["bytes_received"] == rec["response_length"], line_no
        assert row["error"] == rec["exception"], line_no
        instant = datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert row["ts"] == instant, line_no
    assert not_ok > 0  # the fixture does contain failures, so the check above means something


# --- accounting of bad lines --------------------------------------------------------------------


BAD_LINE_CASES = {
    "invalid-json-middle": (b'{"ts": "2026-11-23T02:01:57Z", oops}', "invalid JSON"),
    "json-array": (
        b'[{"ts": "2026-11-23T02:01:57Z", "endpoint": "/a", "latency_ms": 1}]',
        "object",
    ),
    "json-number": (b"42", "object"),
    "latency-abc": (record(latency_ms="abc"), "latency_ms"),
    "status-x": (record(status="x"), "status"),
    "ok-yes": (record(ok="yes"), "ok"),
    "latency-negative": (record(latency_ms=-1.5), "latency_ms"),
    "latency-nan": (GOOD.replace(b"5.0", b"NaN"), "latency_ms"),
    "latency-infinity": (GOOD.replace(b"5.0", b"Infinity"), "latency_ms"),
    "latency-minus-infinity": (GOOD.replace(b"5.0", b"-Infinity"), "latency_ms"),
    "latency-bool": (record(latency_ms=True), "latency_ms"),
    "missing-endpoint": (record(endpoint=DROP), "endpoint"),
    "empty-endpoint": (record(endpoint=""), "endpoint"),
    "missing-latency": (record(latency_ms=DROP), "latency_ms"),
    "missing-ts": (record(ts=DROP), "ts"),
    "bad-ts": (record(ts="yesterday"), "timestamp"),
    "status-out-of-range": (record(status=1000), "status"),
    "not-utf8": (record(endpoint="/caf\u00e9").replace(b"\\u00e9", b"\xe9"), "UTF-8"),
}


@pytest.mark.parametrize("bad, fragment", BAD_LINE_CASES.values(), ids=BAD_LINE_CASES.keys())
def test_bad_line_is_quarantined_with_reason_and_line_number(tmp_path, bad, fragment):
    parsed, acc = read_one(tmp_path, ndjson(GOOD, b"", GOOD, bad, GOOD))
    check_invariant(parsed)
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (4, 3, 1)
    assert acc["error"] is None
    [(line_no, reason)] = quarantined(parsed)
    assert line_no == 4  # physical line number, the blank line 2 counts
    assert fragment in reason
    assert acc["reasons"] == {reason: 1}
    row = parsed.quarantine.row(0, named=True)
    assert row["source_file"] == "results.ndjson"
    assert row["raw"] == bad.decode("utf-8", errors="replace")
    assert parsed.requests["line_no"].to_list() == [1, 3, 5]


def test_truncated_last_line_is_quarantined(tmp_path):
    data = ndjson(GOOD, GOOD, GOOD)[:-20]
    parsed, acc = read_one(tmp_path, data)
    check_invariant(parsed)
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (3, 2, 1)
    assert quarantined(parsed) == [(3, "invalid JSON")]


def test_last_line_without_newline_is_accepted(tmp_path):
    parsed, acc = read_one(tmp_path, ndjson(GOOD, GOOD, final_newline=False))
    check_invariant(parsed)
    assert acc["rows_accepted"] == 2


def test_crlf_line_endings(tmp_path):
    parsed, acc = read_one(tmp_path, GOOD + b"\r\n" + GOOD + b"\r\n")
    check_invariant(parsed)
    assert acc["rows_accepted"] == 2


def test_unknown_extra_fields_are_accepted(tmp_path):
    extra = record(user_count=20, context={"k": [1, 2]}, url="http://x/a", note=None)
    parsed, acc = read_one(tmp_path, ndjson(GOOD, extra))
    check_invariant(parsed)
    assert (acc["rows_accepted"], acc["rows_quarantined"]) == (2, 0)
    assert parsed.requests["endpoint"].to_list() == ["/a", "/a"]


def test_endpoint_falls_back_to_url(tmp_path):
    parsed, _ = read_one(tmp_path, ndjson(GOOD, record(endpoint=DROP, url="http://h/api/x")))
    check_invariant(parsed)
    assert parsed.requests["endpoint"].to_list() == ["/a", "http://h/api/x"]


def test_ten_megabyte_garbage_line_is_quarantined_with_a_bounded_excerpt(tmp_path):
    huge = b"x" * TEN_MB
    parsed, acc = read_one(tmp_path, ndjson(GOOD, huge, GOOD))
    check_invariant(parsed)
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (3, 2, 1)
    [raw] = parsed.quarantine["raw"].to_list()
    assert len(raw.encode()) <= EXCERPT_LIMIT
    assert raw == "x" * EXCERPT_LIMIT


def test_ten_megabyte_valid_record_is_accepted(tmp_path):
    huge = record(padding="y" * TEN_MB)
    parsed, acc = read_one(tmp_path, ndjson(GOOD, huge, GOOD))
    check_invariant(parsed)
    assert acc["rows_accepted"] + acc["rows_quarantined"] == 3
    for raw in parsed.quarantine["raw"]:
        assert len(raw.encode()) <= EXCERPT_LIMIT


def test_file_of_one_ten_megabyte_line_does_not_crash(tmp_path):
    parsed, acc = read_one(tmp_path, b"{" + b"z" * TEN_MB + b"\n")
    check_invariant(parsed)
    assert acc["rows_accepted"] == 0
    assert acc["rows_quarantined"] == 1
    for raw in parsed.quarantine["raw"]:
        assert len(raw.encode()) <= EXCERPT_LIMIT


def test_excerpt_of_a_non_utf8_line_is_at_most_4096_bytes(tmp_path):
    parsed, acc = read_one(tmp_path, ndjson(GOOD, b"\xff" * TEN_MB, GOOD))
    check_invariant(parsed)
    assert acc["reasons"] == {"not UTF-8": 1}
    [raw] = parsed.quarantine["raw"].to_list()
    assert len(raw.encode()) <= EXCERPT_LIMIT


# --- whole-file problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, name",
    [(b"", "empty.ndjson"), (b"\n \n\r\n", "blank.ndjson"), (gzip.compress(b""), "e.ndjson.gz")],
    ids=["zero-bytes", "blank-lines", "empty-gzip"],
)
def test_empty_file_is_reported_not_accepted(tmp_path, data, name):
    parsed, acc = read_one(tmp_path, data, name)
    check_invariant(parsed)
    assert acc["error"] == "empty file"
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (0, 0, 0)
    assert parsed.requests.height == 0


def test_unknown_format_is_one_quarantined_unit(tmp_path):
    csv = b"Type,Name,Request Count\nGET,/api/slow,1554\n,Aggregated,3451\n"
    parsed, acc = read_one(tmp_path, csv, "locust_stats.csv")
    check_invariant(parsed)
    assert acc["error"] == "unknown format"
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (1, 0, 1)
    row = parsed.quarantine.row(0, named=True)
    assert row["reason"] == "unknown format"
    assert row["line_no"] == 0
    assert row["source_file"] == "locust_stats.csv"
    assert row["raw"] == csv.decode()
    assert parsed.requests.height == 0


def test_gzip_gives_the_same_rows_as_plain(tmp_path):
    lines = [record(ts=f"2026-11-23T02:01:{i:02d}Z", latency_ms=i + 0.5) for i in range(60)]
    data = ndjson(*lines[:30], b"{broken", *lines[30:])
    plain, plain_acc = read_one(tmp_path, data, "r.ndjson")
    packed, packed_acc = read_one(tmp_path, gzip.compress(data), "r.ndjson.gz")
    check_invariant(packed)
    for key in ("format", "rows_read", "rows_accepted", "rows_quarantined", "reasons", "error"):
        assert packed_acc[key] == plain_acc[key], key
    assert packed.requests.drop("source_file").equals(plain.requests.drop("source_file"))
    assert packed.quarantine.drop("source_file").equals(plain.quarantine.drop("source_file"))
    assert set(packed.requests["source_file"]) == {"r.ndjson.gz"}


def many_lines(n: int = 5000) -> bytes:
    return ndjson(*(record(latency_ms=float(i)) for i in range(n)))


@pytest.mark.parametrize(
    "damage",
    [
        lambda gz: gz[: len(gz) // 2],
        lambda gz: gz[:-8] + b"\x00" * 8,
        lambda gz: gz[:-3],
    ],
    ids=["truncated-half", "bad-crc", "truncated-trailer"],
)
def test_corrupt_gzip_keeps_what_was_read_and_reports_error(tmp_path, damage):
    data = many_lines()
    parsed, acc = read_one(tmp_path, damage(gzip.compress(data)), "r.ndjson.gz")
    check_invariant(parsed)
    assert acc["error"]
    assert "unreadable" in acc["error"]
    # What was kept is a correct prefix of the file.
    kept = parsed.requests["latency_ms"].to_list()
    assert kept == [float(i) for i in range(len(kept))]


def test_gzip_with_a_bad_header_is_reported(tmp_path):
    parsed, acc = read_one(tmp_path, b"\x1f\x8b" + b"\xff" * 100, "r.ndjson.gz")
    check_invariant(parsed)
    assert acc["error"]
    assert acc["rows_accepted"] == 0


def test_gzip_with_garbage_after_the_header_does_not_raise(tmp_path):
    header = gzip.compress(many_lines())[:10]
    parsed, acc = read_one(tmp_path, header + b"\xff" * 5000, "r.ndjson.gz")
    check_invariant(parsed)
    assert acc["error"]
    assert acc["rows_accepted"] == 0


# --- first-line format detection --------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [b'{"ts": "2026-11-23T02:0', record(latency_ms=DROP)],
    ids=["truncated-first-line", "first-line-without-latency"],
)
def test_bad_first_line_does_not_hide_the_rest_of_the_file(tmp_path, first):
    parsed, acc = read_one(tmp_path, ndjson(first, GOOD, GOOD))
    check_invariant(parsed)
    assert acc["format"] == "canonical_jsonl"
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (3, 2, 1)


def test_valid_first_record_longer_than_8_kib_is_recognised(tmp_path):
    long_first = record(error="Traceback ... " + "x" * 20_000)
    parsed, acc = read_one(tmp_path, ndjson(long_first, GOOD, GOOD))
    check_invariant(parsed)
    assert acc["format"] == "canonical_jsonl"
    assert acc["rows_accepted"] == 3


def test_utf8_bom_does_not_quarantine_the_first_record(tmp_path):
    parsed, acc = read_one(tmp_path, b"\xef\xbb\xbf" + ndjson(GOOD, GOOD))
    check_invariant(parsed)
    assert (acc["rows_accepted"], acc["rows_quarantined"]) == (2, 0)


# --- timestamps and field names -----------------------------------------------------------------

INSTANT = datetime(2026, 11, 23, 2, 1, 57, 742568, tzinfo=UTC)

TIMESTAMPS = {
    "epoch-seconds-float": ("ts", 1795399317.742568, INSTANT),
    "epoch-seconds-int": ("ts", 1795399317, INSTANT.replace(microsecond=0)),
    "epoch-millis": ("ts", 1795399317742, INSTANT.replace(microsecond=742000)),
    "locust-timestamp-key": ("timestamp", 1795399317.742568, INSTANT),
    "iso-zulu": ("ts", "2026-11-23T02:01:57.742568Z", INSTANT),
    "iso-nanoseconds": ("ts", "2026-11-23T02:01:57.742568123Z", INSTANT),
    "iso-plus-0530": ("ts", "2026-11-23T07:31:57.742568+05:30", INSTANT),
    "iso-nanoseconds-plus-0530": ("ts", "2026-11-23T07:31:57.742568999+05:30", INSTANT),
    "iso-minus-0800": ("ts", "2026-11-22T18:01:57.742568-08:00", INSTANT),
    "iso-naive-is-utc": ("ts", "2026-11-23T02:01:57.742568", INSTANT),
    "iso-no-fraction": ("time", "2026-11-23T02:01:57+00:00", INSTANT.replace(microsecond=0)),
    "iso-millis": ("time", "2026-11-23T07:31:57.742+05:30", INSTANT.replace(microsecond=742000)),
}


@pytest.mark.parametrize("key, value, expected", TIMESTAMPS.values(), ids=TIMESTAMPS.keys())
def test_timestamp_parses_to_the_utc_instant(tmp_path, key, value, expected):
    line = json.dumps({key: value, "name": "/a", "response_time": 1.0}).encode()
    parsed, acc = read_one(tmp_path, ndjson(line))
    check_invariant(parsed)
    assert acc["rows_accepted"] == 1, parsed.quarantine["reason"].to_list()
    assert parsed.requests["ts"][0] == expected


@pytest.mark.parametrize("value", [1e20, 1e16], ids=["1e20", "1e16"])
def test_out_of_range_epoch_is_quarantined_as_a_timestamp_problem(tmp_path, value):
    parsed, acc = read_one(tmp_path, ndjson(GOOD, record(ts=value)))
    check_invariant(parsed)
    assert acc["rows_accepted"] == 1
    [(line_no, reason)] = quarantined(parsed)
    assert line_no == 2
    assert "timestamp" in reason


@pytest.mark.parametrize("field", ["bytes_received", "bytes_sent"])
def test_integer_overflow_is_quarantined(tmp_path, field):
    parsed, acc = read_one(tmp_path, ndjson(GOOD, record(**{field: 10**20})))
    check_invariant(parsed)
    assert (acc["rows_accepted"], acc["rows_quarantined"]) == (1, 1)


def test_canonical_field_names(tmp_path):
    lines = [
        record(
            ts="2026-11-23T02:01:57.5Z",
            endpoint="/orders",
            method="POST",
            status=201,
            latency_ms=12.25,
            bytes_received=51,
            bytes_sent=17,
        ),
        record(endpoint="/orders", status=503, error="timeout", latency_ms=3000),
        record(endpoint="/items", ok=False, status=200),
        record(endpoint="/items", ok=True, error=""),
    ]
    parsed, acc = read_one(tmp_path, ndjson(*lines))
    check_invariant(parsed)
    assert acc["rows_accepted"] == 4
    rows = parsed.requests.sort("line_no").to_dicts()
    assert rows[0] == {
        "run_id": None,
        "ts": datetime(2026, 11, 23, 2, 1, 57, 500000, tzinfo=UTC),
        "endpoint": "/orders",
        "method": "POST",
        "status": 201,
        "ok": True,
        "latency_ms": 12.25,
        "bytes_received": 51,
        "bytes_sent": 17,
        "error": None,
        "source_file": "results.ndjson",
        "line_no": 1,
    }
    assert (rows[1]["ok"], rows[1]["error"], rows[1]["status"]) == (False, "timeout", 503)
    assert rows[2]["ok"] is False  # an explicit flag wins over a good status
    assert (rows[3]["ok"], rows[3]["error"]) == (True, None)


def test_locust_field_names(tmp_path):
    line = json.dumps(
        {
            "timestamp": 1795399313.251347,
            "time": "2026-11-23T02:01:53.251347Z",
            "name": "/api/orders",
            "method": "POST",
            "url": "http://127.0.0.1:8090/api/orders",
            "response_time": 10.519,
            "response_length": 51,
            "status": 500,
            "exception": "500 Server Error",
            "user_count": 10,
        }
    ).encode()
    parsed, _ = read_one(tmp_path, ndjson(line))
    check_invariant(parsed)
    row = parsed.requests.row(0, named=True)
    assert row["ts"] == datetime(2026, 11, 23, 2, 1, 53, 251347, tzinfo=UTC)
    assert row["endpoint"] == "/api/orders"
    assert row["latency_ms"] == 10.519
    assert row["bytes_received"] == 51
    assert row["error"] == "500 Server Error"
    assert row["ok"] is False


# --- iter_file and folders ----------------------------------------------------------------------


def test_iter_file_streams_bounded_batches(monkeypatch):
    monkeypatch.setattr(canonical_jsonl, "BATCH_ROWS", 2)
    data = ndjson(*(record(latency_ms=float(i)) for i in range(5)), b"nope")
    acc = FileAccounting(file="s.ndjson")
    batches = list(iter_file(io.BytesIO(data), "s.ndjson", acc))
    sizes = [(table, frame.height) for table, frame in batches if table == "requests"]
    assert sizes == [("requests", 2), ("requests", 2), ("requests", 1)]
    quarantine = [frame for table, frame in batches if table == "quarantine"]
    assert sum(f.height for f in quarantine) == 1
    assert (acc.rows_read, acc.rows_accepted, acc.rows_quarantined) == (6, 5, 1)
    assert acc.format == "canonical_jsonl"
    latencies = pl.concat(f for t, f in batches if t == "requests")["latency_ms"].to_list()
    assert latencies == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_iter_file_on_an_empty_stream_sets_error_and_yields_nothing():
    acc = FileAccounting(file="e.ndjson")
    assert list(iter_file(io.BytesIO(b""), "e.ndjson", acc)) == []
    assert acc.error == "empty file"


def test_folder_gives_one_accounting_entry_per_file_and_skips_run_json(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "run.json").write_text(
        json.dumps({"run_id": "r1", "suite": "s", "scenario": "x", "environment": "e"})
    )
    (tmp_path / "a.ndjson").write_bytes(ndjson(GOOD, GOOD, b"{bad"))
    (tmp_path / "b.jsonl").write_bytes(ndjson(record(endpoint="/b")))
    (tmp_path / "sub" / "c.ndjson.gz").write_bytes(gzip.compress(ndjson(GOOD, GOOD, GOOD)))
    (tmp_path / "stats.csv").write_bytes(b"Type,Name\nGET,/a\n")
    (tmp_path / "notes.txt").write_bytes(GOOD)
    parsed = read_results(tmp_path)
    check_invariant(parsed)
    by_file = {acc["file"]: acc for acc in parsed.accounting}
    assert sorted(by_file) == ["a.ndjson", "b.jsonl", "stats.csv", "sub/c.ndjson.gz"]
    assert by_file["a.ndjson"]["rows_accepted"] == 2
    assert by_file["a.ndjson"]["rows_quarantined"] == 1
    assert by_file["b.jsonl"]["rows_accepted"] == 1
    assert by_file["sub/c.ndjson.gz"]["rows_accepted"] == 3
    assert by_file["stats.csv"]["error"] == "unknown format"
    assert parsed.requests.height == 6
    assert dict(parsed.requests.group_by("source_file").len().iter_rows()) == {
        "a.ndjson": 2,
        "b.jsonl": 1,
        "sub/c.ndjson.gz": 3,
    }
    assert sorted(parsed.quarantine["source_file"]) == ["a.ndjson", "stats.csv"]


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_results(tmp_path / "nope")


def test_resources_events_and_kpi_records_go_to_their_tables(tmp_path):
    lines = [
        {
            "record": "resources",
            "ts": "2026-11-01T02:00:00Z",
            "host": "web-1",
            "metric": "cpu_pct",
            "value": 71.5,
        },
        {"record": "resources", "ts": 1793498400, "metric": "mem_pct", "value": 40},
        {"record": "events", "ts": "2026-11-01T02:00:05Z", "kind": "oom_kill", "subject": "api-1"},
        {
            "record": "kpi_points",
            "ts": "2026-11-01",
            "metric": "signups",
            "value": 42,
            "dims": {"plan": "pro", "region": "eu"},
        },
        {"ts": "2026-11-01T02:00:01Z", "endpoint": "/a", "latency_ms": 2.5},
        {"record": "resources", "ts": "2026-11-01T02:00:00Z", "metric": "cpu_pct", "value": "high"},
        {"record": "events", "ts": "2026-11-01T02:00:00Z"},
        {"record": "kpi_points", "ts": "2026-11-01", "metric": "x", "value": 1, "dims": {"a": 1}},
        {"record": "weather", "ts": "2026-11-01"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    parsed = read_results(path)
    (acc,) = parsed.accounting
    assert (acc["rows_read"], acc["rows_accepted"], acc["rows_quarantined"]) == (9, 5, 4)
    assert acc["format"] == "canonical_jsonl"
    assert parsed.resources.select("host", "metric", "value").rows() == [
        ("web-1", "cpu_pct", 71.5),
        ("localhost", "mem_pct", 40.0),
    ]
    assert parsed.resources["ts"][1] == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    assert parsed.events.select("kind", "subject").rows() == [("oom_kill", "api-1")]
    assert parsed.kpi_points["dims"].to_list() == ['{"plan": "pro", "region": "eu"}']
    assert parsed.requests.height == 1
    assert sorted(parsed.quarantine["reason"]) == [
        "missing field: kind",
        "unknown record: weather",
        "wrong type: dims (an object of strings)",
        "wrong type: value",
    ]
