"""The bulk path of the NDJSON adapters (Arrow over blocks of lines) gives exactly what the
per-line path gives (``json.loads`` and the adapter's ``to_row``), on lines a differential fuzz
found where they parted; and no line makes either path raise."""

from __future__ import annotations

import gzip
import io
import json
import math
import random

import pytest
from conftest import FIXTURES

from metrics_pipeline.formats import canonical_jsonl, k6_ndjson
from metrics_pipeline.formats.base import FileAccounting, RowError

TS = b'"ts":"2024-01-01T00:00:00Z"'
GOOD = b"{" + TS + b',"endpoint":"/good","latency_ms":5}'
K6_GOOD = (
    b'{"type":"Point","metric":"http_req_duration","data":{"time":"2024-01-01T00:00:00Z",'
    b'"value":5,"tags":{"name":"/good","status":"200"}}}'
)


def bulk(adapter, data: bytes) -> tuple[list[tuple], list[tuple[int, str]]]:
    """(accepted rows as (table, line_no, endpoint or metric, value as repr), quarantine)
    of the adapter's parse."""
    accounting = FileAccounting("f")
    rows, quarantine = [], []
    for table, frame in adapter.parse(io.BytesIO(data), accounting):
        if table == "quarantine":
            quarantine += [(r["line_no"], r["reason"]) for r in frame.iter_rows(named=True)]
        elif table == "requests":
            rows += [
                (table, r["line_no"], r["endpoint"], repr(r["latency_ms"]))
                for r in frame.iter_rows(named=True)
            ]
        else:  # rows without a line number: their values only
            rows += [
                (table, None, r["metric"], repr(r["value"])) for r in frame.iter_rows(named=True)
            ]
    assert accounting.rows_read == accounting.rows_accepted + accounting.rows_quarantined
    return sorted(rows, key=repr), sorted(quarantine)


def each_line(to_row, data: bytes) -> tuple[list[tuple], list[tuple[int, str]]]:
    """(line number, table, row) of every line ``json.loads`` and ``to_row`` accept with a
    row, and the quarantine with the reasons of ``ndjson_blocks._complete``: what the bulk
    path must equal."""
    rows, quarantine = [], []
    for line_no, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            result = to_row(json.loads(raw.decode("utf-8-sig")))
        except RowError as exc:
            quarantine.append((line_no, str(exc)))
            continue
        except ValueError:
            quarantine.append((line_no, "invalid JSON"))
            continue
        if result is not None:
            rows.append((line_no, *result))
    return rows, sorted(quarantine)


def per_line(to_row, data: bytes) -> tuple[list[tuple], list[tuple[int, str]]]:
    """:func:`bulk`'s view of :func:`each_line`."""
    rows, quarantine = each_line(to_row, data)
    out = []
    for line_no, table, row in rows:
        value = row["latency_ms"] if table == "requests" else row["value"]
        name = row["endpoint"] if table == "requests" else row["metric"]
        out.append((table, line_no if table == "requests" else None, name, repr(float(value))))
    return sorted(out, key=repr), quarantine


def on_a(fields: bytes) -> bytes:
    """A request line for endpoint /a with ``fields`` after the timestamp and endpoint."""
    return b"{" + TS + b',"endpoint":"/a",' + fields + b"}"


def among_good(line: bytes, good: bytes = GOOD) -> bytes:
    """``line`` between 300 good lines on each side: a range Arrow reads in bulk."""
    return b"\n".join([good] * 300 + [line] + [good] * 300) + b"\n"


CANONICAL_LINES = {
    # Tokens Arrow reads as numbers and json.loads refuses, where nothing else looks.
    "Inf in an unknown field": on_a(b'"latency_ms":5,"x":Inf'),
    "-Inf in an unknown field": on_a(b'"latency_ms":5,"x":[-Inf]'),
    "-NaN in an unknown field": on_a(b'"latency_ms":5,"x":{"a":-NaN}'),
    "-Inf in an alias that loses": on_a(b'"latency_ms":5,"response_time":-Inf'),
    "Infinity (json.loads takes it)": on_a(b'"latency_ms":5,"x":Infinity'),
    "an integer of 4,400 digits": on_a(b'"latency_ms":5,"x":1' + b"0" * 4400),
    # The integer -0 is 0 in Python, -0.0 in Arrow.
    "integer -0": on_a(b'"latency_ms":-0'),
    "float -0.0": on_a(b'"latency_ms":-0.0'),
    "-0 in an alias": on_a(b'"response_time":-0'),
}


@pytest.mark.parametrize("line", CANONICAL_LINES.values(), ids=CANONICAL_LINES.keys())
def test_canonical_bulk_path_equals_the_per_line_path(line):
    data = among_good(line)
    assert bulk(canonical_jsonl, data) == per_line(canonical_jsonl.to_row, data)


def test_an_object_across_a_newline_does_not_shift_the_rows_onto_other_lines():
    # Arrow reads the first object on into the second line, and the third line holds two
    # objects: as many rows as lines, each on the wrong line. Every line in between is good.
    split = on_a(b'"latency_ms":1,"x":')[:-1]
    rest = b'{"y":1}}'
    two = on_a(b'"latency_ms":3') + on_a(b'"latency_ms":4')
    data = b"\n".join([GOOD] * 200 + [split, rest] + [GOOD] * 500 + [two] + [GOOD] * 200) + b"\n"
    rows, quarantine = bulk(canonical_jsonl, data)
    assert (rows, quarantine) == per_line(canonical_jsonl.to_row, data)
    assert [line for line, _ in quarantine] == [201, 202, 703]
    assert {endpoint for _, _, endpoint, _ in rows} == {"/good"}


def test_a_name_with_the_letters_of_inf_stays_on_the_bulk_path():
    # Arrow skips fields outside the schema, so a line holding "Inf" where a value starts
    # goes line by line; "/userInfo" in a name or an unknown field is no such token.
    from metrics_pipeline.formats.ndjson_blocks import _block, parse_block

    lines = [on_a(b'"latency_ms":5,"page":"/userInfo","x":"-NaNa"')] * 500
    data = b"\n".join(lines) + b"\n"
    frames, slow = parse_block(_block(data, 1), canonical_jsonl._parse_options)
    assert slow == [] and sum(frame.height for frame in frames) == 500
    assert bulk(canonical_jsonl, data) == per_line(canonical_jsonl.to_row, data)


K6_LINES = {
    "-NaN in an unknown field": K6_GOOD[:-1] + b',"x":-NaN}',
    "integer -0 value": K6_GOOD.replace(b'"value":5', b'"value":-0'),
    "Inf in an unknown tag": K6_GOOD.replace(b'"status":"200"', b'"status":"200","x":Inf'),
    # Request points are read twice, the second time with their tags: what that reading
    # cannot take goes line by line, and a line that is no request is read without its tags.
    "a tag given twice": K6_GOOD.replace(b'"name":"/good"', b'"name":"/good","name":"/last"'),
    "a status that is a number": K6_GOOD.replace(b'"status":"200"', b'"status":500'),
    "tags that are an array": K6_GOOD.replace(b'{"name":"/good","status":"200"}', b"[1]"),
    "a request name in a second tags object": K6_GOOD.replace(
        b'"value":5,', b'"value":5,"t":{"tags":{"name":"/other"}},'
    ),
    "tags that are text, not a request": K6_GOOD.replace(
        b"http_req_duration", b"http_reqs"
    ).replace(b'{"name":"/good","status":"200"}', b'"x"'),
    "a duration that names a request": K6_GOOD.replace(
        b"http_req_duration", b"http_req_blocked"
    ).replace(b'"name":"/good"', b'"name":"/good","name":7'),
}


@pytest.mark.parametrize("line", K6_LINES.values(), ids=K6_LINES.keys())
def test_k6_bulk_path_equals_the_per_line_path(line):
    data = among_good(line, K6_GOOD)
    assert bulk(k6_ndjson, data) == per_line(k6_ndjson._Parser().to_row, data)


BAD = {
    # (adapter, line, reason): each raised out of the file before, on both paths.
    "a list as record": (canonical_jsonl, b'{"record":[],' + TS + b"}", "unknown record: []"),
    "a latency of 400 digits": (
        canonical_jsonl,
        b"{" + TS + b',"endpoint":"/a","latency_ms":1' + b"0" * 400 + b"}",
        "out of range: latency_ms",
    ),
    "epoch seconds of 400 digits": (
        canonical_jsonl,
        b'{"ts":1' + b"0" * 400 + b',"endpoint":"/a","latency_ms":5}',
        "invalid timestamp: out of range",
    ),
    "before the first UTC instant": (
        canonical_jsonl,
        b'{"ts":"0001-01-01T00:00:00+01:00","endpoint":"/a","latency_ms":5}',
        "invalid timestamp: out of range",
    ),
    "a lone surrogate": (
        canonical_jsonl,
        b"{" + TS + b',"endpoint":"/a\\ud800","latency_ms":5}',
        "not UTF-8: a lone surrogate escape in a text",
    ),
    "k6 tags that are text": (
        k6_ndjson,
        K6_GOOD.replace(b'{"name":"/good","status":"200"}', b'"x"'),
        "wrong type: tags",
    ),
    "k6 value of 400 digits": (
        k6_ndjson,
        K6_GOOD.replace(b'"value":5', b'"value":1' + b"0" * 400),
        "out of range: value",
    ),
    "k6 duration of millennia": (
        k6_ndjson,
        K6_GOOD.replace(b'"value":5', b'"value":1e300'),
        "out of range: data.time minus value",
    ),
}


@pytest.mark.parametrize(("adapter", "line", "reason"), BAD.values(), ids=BAD.keys())
def test_a_line_either_path_raised_on_is_quarantined_with_its_reason(adapter, line, reason):
    good = GOOD if adapter is canonical_jsonl else K6_GOOD
    rows, quarantine = bulk(adapter, among_good(line, good))
    assert quarantine == [(301, reason)]
    assert len(rows) == 600 and all(not math.isnan(float(value)) for *_, value in rows)


# Edits of real k6 lines where the two readings of a request point (without and with its tags)
# could part from json.loads: tag types, keys given twice, tags in the wrong place, metric
# names that make a line a request or not, values and times.
K6_EDITS = [
    (b'"status":"200"', b'"status":200'),
    (b'"status":"200"', b'"status":null'),
    (b'"status":"200"', b'"status":{"a":1}'),
    (b'"status":"200"', b'"status":"0"'),
    (b'"status":"200"', b'"status":"abc"'),
    (b'"name":"/items"', b'"name":"/items","name":"/dup"'),
    (b'"name":"/items"', b'"name":5'),
    (b'"name":"/items"', b'"name":""'),
    (b'"url":"/items"', b'"url":null'),
    (b'"group":""', b'"group":Inf'),
    (b'"group":""', b'"group":NaN'),
    (b'"expected_response":"true"', b'"expected_response":true'),
    (b'"expected_response":"true"', b'"expected_response":"maybe"'),
    (b'"tags":{', b'"tags":"x","t":{'),
    (b'"tags":{', b'"tags":{"tags":1,'),
    (b'"method":"GET"', b'"method":["GET"]'),
    (b'"value":', b'"value":-'),
    (b'"value":', b'"value":"1'),
    (b'"metric":"http_reqs"', b'"metric":"http_req_duration"'),
    (b'"metric":"http_req_duration"', b'"metric":"http_reqs"'),
    (b'"data":{', b'"data":{"tags":{"name":"/first"},'),
    (b"}}}", b'},"tags":{"name":"/z"}}}'),
    (b'"time":"', b'"time":"x'),
]
REQUEST_COLUMNS = ("ts", "endpoint", "method", "status", "ok", "latency_ms", "error")


def _value(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else repr(value)


def _k6_rows_bulk(data: bytes) -> tuple[list[tuple], list[tuple]]:
    accounting, rows, quarantine = FileAccounting("f"), [], []
    for table, frame in k6_ndjson.parse(io.BytesIO(data), accounting):
        for r in frame.iter_rows(named=True):
            if table == "quarantine":
                quarantine.append((r["line_no"], r["reason"]))
            elif table == "requests":
                rows.append((r["line_no"], *(_value(r[c]) for c in REQUEST_COLUMNS)))
            else:
                rows.append((table, *(_value(r[c]) for c in ("ts", "metric", "value"))))
    return sorted(rows, key=repr), sorted(quarantine)


def _k6_rows_per_line(data: bytes) -> tuple[list[tuple], list[tuple]]:
    rows, quarantine = each_line(k6_ndjson._Parser().to_row, data)
    out = []
    for line_no, table, row in rows:
        if table == "requests":
            row["latency_ms"] = float(row["latency_ms"])
            out.append((line_no, *(_value(row[c]) for c in REQUEST_COLUMNS)))
        else:
            out.append((table, *(_value(row[c]) for c in ("ts", "metric")), repr(row["value"])))
    return sorted(out, key=repr), quarantine


def test_k6_bulk_path_equals_the_per_line_path_on_edited_real_lines():
    # Seeded: 40 blocks of 800 lines of a real k6 run with 1-6 edited lines each, every
    # column of every row compared (a differential fuzz of 900 blocks found no difference).
    real = gzip.decompress(
        (FIXTURES.parent / "real_runs" / "k6" / "base_1" / "k6_out.json.gz").read_bytes()
    )
    lines = [line for line in real.split(b"\n") if line][:800]
    # Most edits on request points, the lines read twice.
    requests = [i for i, line in enumerate(lines) if b'"metric":"http_req_duration"' in line]
    rng = random.Random(2026)
    for _ in range(40):
        block = list(lines)
        for _ in range(rng.randint(1, 6)):
            i = rng.choice(requests) if rng.random() < 0.7 else rng.randrange(len(block))
            before, after = rng.choice(K6_EDITS)
            block[i] = block[i].replace(before, after, 1)
        data = b"\n".join(block) + b"\n"
        assert _k6_rows_bulk(data) == _k6_rows_per_line(data)


@pytest.mark.parametrize("levels", [63, 64, 65])
def test_one_deep_line_among_flat_ones_is_measured(levels):
    # A block of flat records skips counting each line's brackets; a line nested deeper than
    # the limit (64) must still go line by line, and be refused for its depth there.
    from metrics_pipeline.formats.ndjson_blocks import _block, _bulk_candidates

    deep = on_a(b'"latency_ms":5,"x":' + b'{"a":' * (levels - 1) + b"1" + b"}" * (levels - 1))
    block = _block(among_good(deep), 1)
    candidates = _bulk_candidates(block, max_depth=64)
    assert candidates.sum() == 600 + (levels <= 64)
    assert not candidates[300] if levels > 64 else candidates[300]
