"""Hostile result files: gzip bombs, a line without end, JSON nested
200,000 levels deep, a 5,000-character endpoint, a truncated gzip.

Each costs bounded memory and time and ends in an error of its own file, while the run's
other files are read and their rows kept. The files are generated here, into ``tmp_path``;
the bombs decompress to 5 GiB, more than the address space the ingest may use in the memory
test, so a reader that held one whole would fail there.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from conftest import FIXTURES
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.contracts.tables import RAW_EXCERPT_BYTES
from metrics_pipeline.formats import (
    FileAccounting,
    ReadLimits,
    iter_file,
    read_results,
    unreadable_files,
)
from metrics_pipeline.formats.limits import cap_name, nested_deeper
from metrics_pipeline.ingest.files import ingest_files

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
ROOT = Path(__file__).resolve().parents[2]
TS = "2026-11-23T02:01:57Z"
START = datetime(2026, 11, 23, 2, tzinfo=UTC)
# What the memory test allows the ingest process: a normal ingest peaks at about 450 MB of
# resident memory and 2 GB of address space (numpy, polars and Arrow reserve much they never
# touch), and the bombs are 5 GiB each.
ADDRESS_SPACE = 3 * GIB
PEAK_RSS = 1_500_000_000
DIGEST = re.compile(r"…\[cut, sha256 [0-9a-f]{12}\]$")


def request(endpoint: str = "/a", latency_ms: float = 12.5, **fields) -> bytes:
    """One canonical request line (with its newline)."""
    record = {"ts": TS, "endpoint": endpoint, "latency_ms": latency_ms, "status": 200, **fields}
    return json.dumps(record).encode() + b"\n"


def run_manifest(**fields) -> RunManifest:
    """The manifest of run ``r-1``, started at START, with ``fields`` on top."""
    return RunManifest(
        **{"run_id": "r-1", "suite": "shop", "scenario": "browse", "environment": "ci"},
        started_at=START,
        **fields,
    )


def gzip_bomb(path: Path, head: bytes, unit: bytes, total: int, tail: bytes = b"") -> None:
    """A gzip file that decompresses to ``head``, ``unit`` repeated up to ``total`` bytes, and
    ``tail``: ``unit`` is compressed once and its gzip member written again and again (a gzip
    file may hold many members, which every reader joins), so 5 GiB cost a few MB and
    milliseconds to write, and all of them to read."""
    member = gzip.compress(unit, compresslevel=9, mtime=0)
    with path.open("wb") as out:
        out.write(gzip.compress(head, mtime=0))
        for _ in range(total // len(unit)):
            out.write(member)
        out.write(gzip.compress(tail, mtime=0))


def check_invariant(accounting: list[dict]) -> None:
    for acc in accounting:
        assert acc["rows_read"] == acc["rows_accepted"] + acc["rows_quarantined"], acc
        assert sum(acc["reasons"].values()) == acc["rows_quarantined"], acc


def read_bytes(data: bytes, name: str, limits: ReadLimits = ReadLimits()):
    """(frames by table, accounting dict) of one file read through ``iter_file``."""
    accounting = FileAccounting(file=name)
    parts: dict[str, list[pl.DataFrame]] = {}
    for table, frame in iter_file(io.BytesIO(data), name, accounting, limits):
        parts.setdefault(table, []).append(frame)
    acc = accounting.as_dict()
    check_invariant([acc])
    return {table: pl.concat(frames) for table, frames in parts.items()}, acc


# --- the corpus, ingested together under a memory cap -------------------------------------------

GOOD_ROWS = 200
LONG_ENDPOINT = "/search?q=" + "x" * 4990  # 5,000 characters
# The memory test lowers the limit on a file's size: 5 GiB of valid lines would otherwise be
# read to the end (16 GiB is the default), which is bounded in memory but takes minutes; and
# the one on a document's size below it (256 MiB by default), so that the document bomb meets
# its own limit first.
CORPUS_LIMITS = {"max_file_bytes": 64 * MIB, "max_document_bytes": 16 * MIB}


def write_corpus(folder: Path) -> None:
    """A good file and every hostile shape of the review, each in a file of its own."""
    folder.mkdir()
    good = b"".join(request(latency_ms=i + 0.5) for i in range(GOOD_ROWS))
    (folder / "good.ndjson").write_bytes(good)
    # One huge JSON document: a k6 summary whose padding never ends.
    summary = b'{"root_group": {}, "metrics": {"vus": {"value": 1}}, "padding": "'
    gzip_bomb(folder / "bomb-document.json.gz", summary, b"a" * 4 * MIB, 5 * GIB, b'"}')
    # One 5 GiB line after a good one.
    start = request()[:-1].replace(b'"/a"', b'"')
    gzip_bomb(folder / "bomb-line.ndjson.gz", request() + start, b"a" * 4 * MIB, 5 * GIB)
    # 5 GiB of valid lines.
    lines = request() * (4 * MIB // len(request()))
    gzip_bomb(folder / "bomb-lines.ndjson.gz", b"", lines, 5 * GIB)
    (folder / "deep.json").write_bytes(b"[" * 200_000)
    (folder / "long-name.ndjson").write_bytes(request(LONG_ENDPOINT) * 3 + request())
    packed = gzip.compress(b"".join(request(latency_ms=float(i)) for i in range(20_000)))
    (folder / "truncated.ndjson.gz").write_bytes(packed[: len(packed) // 2])


# Runs in a child process whose address space is capped: ingests every file of the corpus
# into a warehouse and prints the report, the rows stored per file and the peak RSS.
CHILD = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.formats import ReadLimits
from metrics_pipeline.ingest.files import ingest_files
from metrics_pipeline.storage import Warehouse

args = json.loads(sys.argv[1])
warehouse = Warehouse(Path(args["warehouse"]))
manifest = RunManifest(
    run_id="hostile-1", suite="shop", scenario="browse", environment="ci",
    started_at=datetime(2026, 11, 23, 2, tzinfo=UTC),
)
files = [(f.name, lambda f=f: f.open("rb")) for f in sorted(Path(args["folder"]).iterdir())]
report = ingest_files(files, manifest, warehouse, limits=ReadLimits(**args["limits"]))
status = Path("/proc/self/status").read_text().splitlines()
peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
requests = warehouse.read("requests", ["hostile-1"])
print(json.dumps({
    "files": report.files,
    "file_errors": report.file_errors,
    "stored": dict(requests.group_by("source_file").len().iter_rows()),
    "endpoints": sorted(set(requests["endpoint"])),
    "peak_rss": peak_kb * 1024,
}))
"""


def cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_every_bomb_ends_in_its_own_error_in_bounded_memory_and_the_good_rows_are_kept(
    tmp_path,
):
    folder = tmp_path / "run"
    write_corpus(folder)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 100 * MIB  # bombs, not big files
    args = {"folder": str(folder), "warehouse": str(tmp_path / "wh"), "limits": CORPUS_LIMITS}
    # glibc gives each thread an arena of 64 MiB address space; two keep the reservations of
    # the thread pools well inside the cap without changing what is resident.
    env = os.environ | {"MALLOC_ARENA_MAX": "2"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        preexec_fn=cap_address_space,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout)
    files = {f["file"]: f for f in result["files"]}
    check_invariant(result["files"])

    assert result["peak_rss"] < PEAK_RSS, result["peak_rss"]
    errors = {name: f["error"] for name, f in files.items()}
    assert errors == {
        "bomb-document.json.gz": "JSON document larger than 16 MiB (limit max_document_bytes)",
        "bomb-line.ndjson.gz": "line 2 longer than 16 MiB (limit max_line_bytes)",
        "bomb-lines.ndjson.gz": f"stopped after line {files['bomb-lines.ndjson.gz']['rows_read']}"
        ": file larger than 64 MiB decompressed (limit max_file_bytes)",
        "deep.json": "JSON nested deeper than 64 levels (limit max_depth)",
        "good.ndjson": None,
        "long-name.ndjson": None,
        "truncated.ndjson.gz": errors["truncated.ndjson.gz"],
    }
    assert re.fullmatch(
        r"unreadable after line \d+: truncated \(Compressed file ended .*\)",
        errors["truncated.ndjson.gz"],
    )
    assert len(result["file_errors"]) == 5
    assert unreadable_files(result["files"]) == result["file_errors"]

    # The good file whole; of the failed ones what was read before the failure, accounted for.
    stored = result["stored"]
    assert stored["good.ndjson"] == GOOD_ROWS
    assert stored["bomb-line.ndjson.gz"] == 1
    for name in ("bomb-lines.ndjson.gz", "truncated.ndjson.gz", "long-name.ndjson"):
        assert stored[name] == files[name]["rows_accepted"] == files[name]["rows_read"], name
    # 5 GiB of lines were read only up to the limit: at most 64 MiB of them, most of it.
    read_bytes_of_lines = files["bomb-lines.ndjson.gz"]["rows_read"] * len(request())
    assert 32 * MIB < read_bytes_of_lines <= 64 * MIB
    assert 0 < files["truncated.ndjson.gz"]["rows_read"] < 20_000
    for name in ("bomb-document.json.gz", "deep.json"):
        assert (files[name]["rows_read"], files[name]["rows_quarantined"]) == (1, 1), name
        assert name not in stored

    long = [e for e in result["endpoints"] if e.startswith("/search")]
    assert len(long) == 1 and len(long[0]) == 512 and DIGEST.search(long[0])


# --- each limit, reader by reader ---------------------------------------------------------------

SMALL = ReadLimits(
    max_file_bytes=4 * MIB, max_line_bytes=256 * KIB, max_document_bytes=256 * KIB, max_depth=16
)
SYSMON = b'{"timestamp": 1795399313.4, "cpu_percent": 50.0}\n'
JTL_HEADER = b"timeStamp,elapsed,label,responseCode,success\n"
JTL_ROW = b"1795399497158,72,GET /,200,true\n"
LOCUST_HEADER = (FIXTURES / "locust" / "locust_stats.csv").read_bytes().splitlines()[0] + b"\n"
LOCUST_ROW = (FIXTURES / "locust" / "locust_stats.csv").read_bytes().splitlines()[1] + b"\n"
K6_POINT = (
    b'{"type":"Point","metric":"http_req_duration","data":{"time":"2026-11-23T02:01:57Z",'
    b'"value":12.5,"tags":{"name":"/a","status":"200","method":"GET"}}}\n'
)
# (name, lines before the hostile one, the rows those lines give, table)
LINE_FORMATS = {
    "canonical_jsonl": ("r.ndjson", request() * 3, 3, "requests"),
    "k6_ndjson": ("k6.json", K6_POINT * 3, 3, "requests"),
    "sysmon_ndjson": ("sysmon.ndjson", SYSMON * 3, 3, "resources"),
    "jmeter_jtl": ("r.jtl", JTL_HEADER + JTL_ROW * 3, 3, "requests"),
    "locust_csv": ("locust_stats.csv", LOCUST_HEADER + LOCUST_ROW * 3, 3, "interval_stats"),
}


@pytest.mark.parametrize("fmt", sorted(LINE_FORMATS))
def test_a_line_without_end_stops_the_file_after_the_lines_before_it(fmt):
    name, head, rows, table = LINE_FORMATS[fmt]
    endless = b"a" * (10 * SMALL.max_line_bytes)  # no newline, 10 x the limit
    frames, acc = read_bytes(head + endless, name, SMALL)
    assert acc["format"] == fmt
    line_no = head.count(b"\n") + 1
    assert acc["error"] == f"line {line_no} longer than 256 KiB (limit max_line_bytes)"
    assert frames[table].height == rows == acc["rows_accepted"]


@pytest.mark.parametrize("fmt", sorted(LINE_FORMATS))
def test_a_line_of_exactly_the_limit_is_read(fmt):
    name, head, rows, _ = LINE_FORMATS[fmt]
    # A line of max_line_bytes bytes before its newline: garbage, quarantined, not an error.
    line = b"a" * SMALL.max_line_bytes + b"\n"
    _, acc = read_bytes(head + line + head.splitlines(keepends=True)[-1], name, SMALL)
    assert acc["error"] is None
    assert acc["rows_accepted"] == rows + 1 and acc["rows_quarantined"] == 1


def test_the_decompressed_size_is_counted_not_the_compressed_one(tmp_path):
    line = request()
    lines = line * (SMALL.max_file_bytes // len(line) + 1000)  # just over the limit
    packed = gzip.compress(lines)
    assert len(packed) < SMALL.max_file_bytes // 10
    frames, acc = read_bytes(packed, "r.ndjson.gz", SMALL)
    assert acc["error"] == (
        f"stopped after line {acc['rows_read']}: file larger than 4 MiB decompressed "
        "(limit max_file_bytes)"
    )
    assert frames["requests"].height == acc["rows_accepted"] == acc["rows_read"]
    assert acc["rows_read"] * len(line) <= SMALL.max_file_bytes
    # The same content within the limit is read whole; plain files are counted alike.
    exact = line * (SMALL.max_file_bytes // len(line))
    assert read_bytes(gzip.compress(exact), "r.ndjson.gz", SMALL)[1]["error"] is None
    assert read_bytes(exact, "r.ndjson", SMALL)[1]["error"] is None
    assert read_bytes(exact + b" " * len(line), "r.ndjson", SMALL)[1]["error"].startswith(
        "stopped after line"
    )


DOCUMENTS = {
    "k6_summary": (
        b'{"root_group": {}, "metrics": {"vus": {"value": 1}}, "padding": "',
        b'"}',
    ),
    "locust_json": (
        b'[{"name": "/a", "num_requests": 1, "num_failures": 0, "response_times": {"5": 1}, '
        b'"total_response_time": 5, "start_time": 1795399313, "padding": "',
        b'"}]',
    ),
    "artillery_json": (
        b'{"aggregate": {"period": 1795399310000, "summaries": {"http.response_time": '
        b'{"count": 1}}, "padding": "',
        b'"}, "intermediate": []}',
    ),
}


@pytest.mark.parametrize("fmt", sorted(DOCUMENTS))
def test_a_whole_document_is_read_only_up_to_its_limit(fmt):
    head, tail = DOCUMENTS[fmt]
    huge = head + b"a" * (10 * SMALL.max_document_bytes) + tail
    frames, acc = read_bytes(huge, "doc.json", SMALL)
    assert acc["format"] == fmt
    assert acc["error"] == "JSON document larger than 256 KiB (limit max_document_bytes)"
    [(line_no, reason, raw)] = frames["quarantine"].select("line_no", "reason", "raw").rows()
    assert (line_no, reason) == (0, acc["error"])
    assert raw.encode().startswith(head) and len(raw.encode()) <= RAW_EXCERPT_BYTES
    # Within the limit the same document is read.
    small = head + b"a" * 1000 + tail
    frames, acc = read_bytes(small, "doc.json", SMALL)
    assert acc["error"] is None and acc["rows_accepted"] >= 1


@pytest.mark.parametrize("fmt", sorted(DOCUMENTS))
def test_a_document_that_is_not_json_is_the_files_error(fmt):
    head, _ = DOCUMENTS[fmt]
    frames, acc = read_bytes(head + b"a" * 100, "doc.json")  # cut: the string never ends
    assert acc["error"] == "invalid JSON"
    assert frames["quarantine"]["reason"].to_list() == ["invalid JSON"]
    assert unreadable_files([acc]) == ["doc.json: invalid JSON"]


# --- nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [[1], {"b": []}]}', 4),
        (b'{"a": "[[[[[[[[[[[[", "b": "\\"[[[[[[[[["}', 1),  # brackets in strings, an escape
        (b'["\\\\", [[]]]', 3),  # an escaped backslash ends its string
        (b"[" * 40 + b"]" * 40, 40),
        (b"[]" * 1000, 1),
        (b"[" * 200_000, 200_000),
    ],
)
def test_nesting_is_measured_outside_strings(text, depth):
    assert not nested_deeper(text, depth)
    assert nested_deeper(text, depth - 1)


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_a_deep_document_is_refused_before_it_is_parsed():
    frames, acc = read_bytes(b"[" * 200_000, "deep.json")
    assert acc["error"] == "JSON nested deeper than 64 levels (limit max_depth)"
    assert (acc["rows_read"], acc["rows_quarantined"]) == (1, 1)
    assert frames["quarantine"]["reason"].to_list() == [acc["error"]]
    # The same inside a document of a known format: Locust's JSON array.
    head, _ = DOCUMENTS["locust_json"]
    document = head.replace(b'"padding": "', b'"nested": ') + b"[" * 200_000
    _, acc = read_bytes(document, "locust.json")
    assert acc["format"] == "locust_json"
    assert acc["error"] == "JSON nested deeper than 64 levels (limit max_depth)"


@pytest.mark.parametrize(
    ("name", "good", "table"),
    [
        ("r.ndjson", request(), "requests"),
        ("k6.json", K6_POINT, "requests"),
        ("sysmon.ndjson", SYSMON, "resources"),
    ],
)
def test_a_deep_line_is_one_quarantined_record_and_the_file_goes_on(name, good, table):
    record = json.loads(good)
    too_deep = json.dumps(record | {"x": deep(200)}).encode() + b"\n"
    deepest = json.dumps(record | {"x": deep(63)}).encode() + b"\n"  # 64 with the record
    lines = [good, too_deep, b"[" * 200_000 + b"\n", b"  " + too_deep, deepest, good]
    frames, acc = read_bytes(b"".join(lines), name)
    assert acc["error"] is None
    reason = "JSON nested deeper than 64 levels (limit max_depth)"
    quarantined = frames["quarantine"].select("line_no", "reason").rows()
    assert quarantined == [(2, reason), (3, reason), (4, reason)]
    assert acc["rows_accepted"] == 3 and frames[table].height >= 3


# --- names and text -----------------------------------------------------------------------------


def test_a_long_name_is_cut_with_a_marker_and_stays_itself():
    other = LONG_ENDPOINT[:-1] + "y"  # differs only at its end
    slow = {"ts": "2026-11-23 02:01:57Z"}  # no "T": the line takes the per-line path
    lines = [request(LONG_ENDPOINT), request(other), request(LONG_ENDPOINT, **slow)]
    frames, acc = read_bytes(b"".join(lines), "r.ndjson")
    assert acc["error"] is None and acc["rows_accepted"] == 3
    first, second, third = frames["requests"]["endpoint"].to_list()
    assert len(first) == len(second) == 512
    assert first.startswith(LONG_ENDPOINT[:400]) and DIGEST.search(first)
    assert first != second  # the digest keeps them apart
    assert first == third == cap_name(LONG_ENDPOINT, 512)  # the same name in every path


def test_names_and_text_are_cut_in_every_format():
    long = "n" * 5000
    jtl = JTL_HEADER.replace(b"success", b"success,failureMessage")
    jtl += f"1795399497158,72,{long},500,false,{'e' * 10_000}\n".encode()
    frames, _ = read_bytes(jtl, "r.jtl")
    [row] = frames["requests"].rows(named=True)
    assert len(row["endpoint"]) == 512 and DIGEST.search(row["endpoint"])
    assert len(row["error"]) == 4096 and row["error"].endswith("…")

    csv = LOCUST_HEADER + LOCUST_ROW.replace(b",/,", f",{long},".encode())
    frames, _ = read_bytes(csv, "locust_stats.csv")
    assert frames["interval_stats"]["endpoint"].str.len_chars().to_list() == [512]

    sysmon = json.dumps({"timestamp": 1795399313.4, "host": long, "cpu_percent": 1.0})
    frames, _ = read_bytes(sysmon.encode() + b"\n", "sysmon.ndjson")
    assert frames["resources"]["host"].str.len_chars().to_list() == [512]

    summary = {"root_group": {}, "metrics": {f"http_req_duration{{name:{long}}}": {"avg": 1.0}}}
    frames, _ = read_bytes(json.dumps(summary).encode(), "summary.json")
    assert frames["interval_stats"]["endpoint"].to_list() == [cap_name(long, 512)]


# --- damage and configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("r.ndjson.gz", request() * 20_000),
        ("r.jtl.gz", JTL_HEADER + JTL_ROW * 20_000),
        ("summary.json.gz", (FIXTURES / "k6" / "k6_summary_export.json").read_bytes() * 1),
    ],
)
def test_a_truncated_gzip_is_the_files_error_and_the_other_files_are_read(tmp_path, name, data):
    packed = gzip.compress(data)
    (tmp_path / name).write_bytes(packed[: len(packed) * 2 // 3])
    (tmp_path / "good.ndjson").write_bytes(request() * 10)
    parsed = read_results(tmp_path)
    check_invariant(parsed.accounting)
    errors = {acc["file"]: acc["error"] for acc in parsed.accounting}
    assert errors["good.ndjson"] is None
    assert re.match(
        r"unreadable( after line \d+)?: truncated \(Compressed file ended", errors[name]
    )
    assert unreadable_files(parsed.accounting) == [f"{name}: {errors[name]}"]
    assert parsed.requests.filter(pl.col("source_file") == "good.ndjson").height == 10


TEXT_FILES = [
    ("results.jtl", FIXTURES / "jmeter" / "results.jtl"),
    ("k6_out.json", FIXTURES / "k6" / "k6_out.json.gz"),
    ("requests.ndjson", FIXTURES / "locust" / "requests.ndjson"),
    ("locust_stats_history.csv", FIXTURES / "locust" / "locust_stats_history.csv"),
    ("sysmon.ndjson", FIXTURES / "locust" / "sysmon.ndjson"),
]


def _text(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.mark.parametrize(("name", "path"), TEXT_FILES, ids=[name for name, _ in TEXT_FILES])
def test_a_text_file_cut_off_in_a_line_is_truncated_and_its_lines_before_are_kept(
    tmp_path, name, path
):
    # An upload or copy that stopped: the last line is half a record, with no newline. It
    # was only quarantined, and compare judged the run on part of its data (exit 1).
    data = _text(path)
    cut = data.index(b"\n", len(data) * 3 // 5) + 12
    whole_lines = data[:cut].count(b"\n")
    (tmp_path / name).write_bytes(data[:cut])
    parsed = read_results(tmp_path)
    check_invariant(parsed.accounting)
    (acc,) = parsed.accounting
    assert acc["error"] == (
        f"truncated: line {whole_lines + 1}, the last, ends without a newline and is not a "
        "whole record"
    ), acc
    assert unreadable_files(parsed.accounting) == [f"{name}: {acc['error']}"]
    assert acc["rows_accepted"] > 0 and acc["rows_quarantined"] == 1
    result = CliRunner().invoke(app, ["compare", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2 and "truncated: line" in result.stderr

    # Cut at a newline, or a last line that is whole without one: nothing is missing. A bad
    # last line that ends with a newline is a bad row, quarantined as before.
    line_end = data.index(b"\n", len(data) * 3 // 5) + 1
    for whole in (data[:line_end], data[: line_end - 1], data[:line_end] + b"{oops\n"):
        (tmp_path / name).write_bytes(whole)
        assert read_results(tmp_path).accounting[0]["error"] is None


def test_a_whole_last_record_with_a_bad_value_is_only_quarantined(tmp_path):
    # No newline at the end, but a whole record (a negative latency): a bad row, not a cut.
    jtl = (FIXTURES / "jmeter" / "results.jtl").read_bytes().splitlines(keepends=True)
    last = jtl[1].rstrip(b"\r\n").split(b",")
    last[1] = b"-5"
    for eol in (b"\n", b"\r\n"):
        (tmp_path / "r.jtl").write_bytes(b"".join(line.replace(b"\n", eol) for line in jtl[:50]))
        with (tmp_path / "r.jtl").open("ab") as out:
            out.write(b",".join(last))
        (acc,) = read_results(tmp_path).accounting
        assert acc["error"] is None and acc["reasons"] == {"negative: latency_ms": 1}, acc

    # A JSON document that is not the format's (a report without response times) is one
    # quarantined unit whatever its last byte: not "truncated".
    report = json.loads((FIXTURES / "artillery" / "report.json").read_text())
    for period in [report["aggregate"], *report["intermediate"]]:
        period["summaries"] = {k: v for k, v in period["summaries"].items() if "response" not in k}
    (tmp_path / "r.jtl").unlink()
    (tmp_path / "report.json").write_text(json.dumps(report, separators=(",", ":")))
    (acc,) = read_results(tmp_path).accounting
    assert acc["error"] is None or "truncated" not in acc["error"], acc


def test_a_cut_last_line_longer_than_a_read_is_found(tmp_path):
    # The last line is looked for near the end of each read, and in the whole read when it is
    # longer: here 300 KiB of one endpoint name, cut.
    data = request() * 10 + request(endpoint="/" + "x" * (300 * KIB))[: 290 * KIB]
    (tmp_path / "r.ndjson").write_bytes(data)
    (acc,) = read_results(tmp_path).accounting
    assert acc["error"] is not None and acc["error"].startswith("truncated: line 11,"), acc
    assert acc["rows_accepted"] == 10


def test_a_file_that_cannot_be_opened_is_its_own_error(tmp_path, warehouse):
    good = tmp_path / "good.ndjson"
    good.write_bytes(request() * 10)
    gone = tmp_path / "gone.ndjson"  # listed, then removed before it was read
    manifest = run_manifest()
    files = [(path.name, lambda path=path: path.open("rb")) for path in (gone, good)]
    report = ingest_files(files, manifest, warehouse)
    assert report.file_errors == ["gone.ndjson: cannot open: No such file or directory"]
    assert warehouse.read("requests", ["r-1"]).height == 10


@pytest.mark.parametrize(
    "field", ["max_file_bytes", "max_line_bytes", "max_document_bytes", "max_depth"]
)
def test_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=field):
        ReadLimits(**{field: 0})
    with pytest.raises(ValueError, match="max_name_chars"):
        ReadLimits(max_name_chars=10)


def test_a_file_left_beside_its_gzip_makes_the_run_invalid(tmp_path, warehouse):
    # `gunzip -k` keeps both: uploaded together, every request was stored twice and the run
    # was valid (half the throughput per request, every count doubled).
    from metrics_pipeline.ingest.files import validate_run

    folder = tmp_path / "run"
    folder.mkdir()
    lines = [request(latency_ms=10 + i / 7) for i in range(3000)]
    data = b"".join(lines)
    (folder / "r.ndjson").write_bytes(data)
    (folder / "r.ndjson.gz").write_bytes(gzip.compress(data))
    (folder / "other.ndjson").write_bytes(b"".join(lines[:1500]))  # a part: not the same
    manifest = run_manifest()
    files = [(p.name, lambda p=p: p.open("rb")) for p in sorted(folder.iterdir())]
    report = ingest_files(files, manifest, warehouse)
    assert report.file_errors == [
        "r.ndjson.gz: holds the same request rows as r.ndjson: every request would count "
        "twice; upload one of them"
    ]
    validation = validate_run(warehouse, manifest, report.file_errors)
    assert not validation.valid
    (run,) = warehouse.read("runs", ["r-1"]).to_dicts()
    assert (
        run["valid"] is False
        and "holds the same request rows as r.ndjson" in (run["invalid_reason"])
    )

    # Two files of other requests that happen to share their times and latencies: no twins.
    def line(ts: str, endpoint: str, latency_ms: float, status: int = 200) -> bytes:
        return request(endpoint, latency_ms, ts=ts, status=status)

    apart = tmp_path / "apart"
    apart.mkdir()
    first, second = "2026-11-23T02:00:01Z", "2026-11-23T02:00:02Z"
    (apart / "login.ndjson").write_bytes(line(first, "/login", 10) + line(second, "/login", 20))
    (apart / "search.ndjson").write_bytes(
        line(first, "/search", 20, 500) + line(second, "/search", 10, 500)
    )
    files = [(p.name, lambda p=p: p.open("rb")) for p in sorted(apart.iterdir())]
    assert ingest_files(files, manifest, warehouse).file_errors == []
    single = tmp_path / "single"
    single.mkdir()
    (single / "r.ndjson").write_bytes(data)
    files = [("r.ndjson", lambda: (single / "r.ndjson").open("rb"))]
    assert ingest_files(files, manifest, warehouse).file_errors == []


@pytest.mark.parametrize(("bad", "valid"), [(1, True), (3, False)])
def test_a_run_with_more_than_one_percent_of_its_rows_quarantined_is_invalid(
    tmp_path, warehouse, bad, valid
):
    # Failures written in another shape (one field too many, say) were quarantined and the
    # run judged on its successes alone: a valid run, its error rate 0.
    from metrics_pipeline.stages import ci

    lines = [request(latency_ms=10 + i / 7) for i in range(200)]
    lines += [b'{"ts": "2026-11-23T02:01:58Z", "endpoint": "/a", "status": 500,\n'] * bad
    late = request(ts="2030-01-01T00:00:00Z")  # outside the run's window: not a bad row
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "r.ndjson").write_bytes(b"".join(lines) + late * 20)
    manifest = run_manifest(finished_at=datetime(2026, 11, 24, tzinfo=UTC))
    report = ingest_files(
        [("r.ndjson", lambda: (folder / "r.ndjson").open("rb"))], manifest, warehouse
    )
    assert report.rows_quarantined == bad + 20 and report.file_errors == []
    validation = ci.validate(warehouse, report)
    assert validation.valid is valid
    if not valid:
        assert validation.problems == [
            "3 of 203 rows quarantined (1.5%, more than 1%: invalid JSON: 3): the rows left out "
            "may be those that matter"
        ]


def test_a_run_whose_requests_all_lie_outside_its_window_says_so(tmp_path, warehouse):
    # A run.json dated by the upload (its start unknown): every request is "outside the run
    # window", and "no request or interval data" alone hid that the file held 50.
    from metrics_pipeline.stages import ci

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "r.ndjson").write_bytes(b"".join(request(latency_ms=10 + i) for i in range(50)))
    manifest = run_manifest().model_copy(
        update={"started_at": datetime(2026, 12, 1, tzinfo=UTC), "finished_at": None}
    )
    report = ingest_files(
        [("r.ndjson", lambda: (folder / "r.ndjson").open("rb"))], manifest, warehouse
    )
    validation = ci.validate(warehouse, report)
    assert not validation.valid
    assert validation.problems[0] == (
        "all 50 requests lie outside the run's window, 2026-12-01 00:00:00Z to open "
        "(run.json's started_at and finished_at)"
    )
    assert "no request or interval data" in validation.problems


def test_files_of_no_known_format_are_listed_and_the_run_stays_valid(tmp_path, warehouse):
    # An empty file or notes beside the results made a good run invalid ("file not read").
    from metrics_pipeline.stages import ci

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "r.ndjson").write_bytes(b"".join(request(latency_ms=10 + i) for i in range(50)))
    (folder / "empty.jtl").write_bytes(b"")
    (folder / "notes.csv").write_bytes(b"just,some\nnotes,here\n")
    manifest = run_manifest()
    files = [(p.name, lambda p=p: p.open("rb")) for p in sorted(folder.iterdir())]
    report = ingest_files(files, manifest, warehouse)
    assert report.file_errors == []
    notes = {f["file"]: f["error"] for f in report.files if f["error"]}
    assert notes == {"empty.jtl": "empty file", "notes.csv": "unknown format"}
    assert ci.validate(warehouse, report).valid
