"""k6 end-of-test summary JSON: ``--summary-export`` and the ``handleSummary(data)`` object.

Both shapes have a ``metrics`` object; each metric entry there is one source record. The
``handleSummary`` shape wraps the statistics (``{type, contains, values, thresholds}``), the
export writes them flat. ``root_group`` (groups, checks) is not read: check results are in the
``checks`` rate metric, and ``options``/``state`` describe the run, not a metric.

``interval_stats`` (one row for the whole run per endpoint; ts null, the ingest knows the run
start)::

    k6 summary                                    canonical
    http_req_duration            -> endpoint      "(all)"
    http_req_duration{name:X}    -> endpoint      X (also {url:X}; other selectors are skipped)
    state.testRunDurationMs / 1000                interval_s (export: http_reqs count / rate)
    trend count, else http_reqs[{name:X}] count   count
    http_req_failed[{name:X}] passes              errors (null when k6 has no such metric)
    avg, min, med, p(90), p(95), p(99), max       mean, min, p50, p90, p95, p99, max

The "(all)" row is always written when ``http_req_duration`` is there: k6 creates a
``{name:X}`` submetric only for a threshold on it, so endpoint rows usually cover a few
endpoints and "(all)" is the only figure for the rest. It is a total, not an endpoint: do not
add it to the endpoint rows.

Errors: ``http_req_failed`` is a k6 *rate* whose sample is 1 for a failed request, and k6
counts non-zero rate samples as ``passes``. So ``passes`` are the failed requests and ``fails``
the good ones (fixture: passes 9, fails 3975, rate 0.00226 for 9 HTTP 500s).

``events``, one per threshold: kind ``threshold_failed``/``threshold_passed``, subject
``"<metric>: <expression>"``, detail ``"k6 summary"``. The two shapes say it oppositely: the
export's ``true`` means the threshold was crossed (failed), handleSummary's ``{"ok": true}``
that it held.

A JSON document has no useful line numbers: a bad metric entry is quarantined on line 0 with
``{name: entry}`` as its raw text; a document that does not parse, as one unit on line 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import (
    ALL_ENDPOINTS,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    Sniff,
    read_json_document,
    reject_document,
)
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits

NAME = "k6_summary"
TOOL = "k6"
# One JSON document, not lines (see formats.iter_file).
DOCUMENT = True
ALL = ALL_ENDPOINTS
ENDPOINT_TAGS = ("name", "url")
STATS = {
    "avg": "mean",
    "min": "min",
    "med": "p50",
    "p(90)": "p90",
    "p(95)": "p95",
    "p(99)": "p99",
    "max": "max",
}
DETAIL = "k6 summary"
# A metric's statistics and its thresholds as (expression, failed).
Entry = tuple[dict[str, float], list[tuple[str, bool]]]


def looks_like(sniff: Sniff) -> bool:
    """A JSON object with k6's top-level ``root_group`` and ``metrics`` keys (both shapes)."""
    head = sniff.head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"{") and b'"root_group"' in head and b'"metrics"' in head


def _selector(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``"m{k:v,k2:v2}"`` -> ("m", (("k", "v"), ("k2", "v2"))), split the way k6 splits it."""
    base, brace, rest = name.partition("{")
    if not brace or not rest.endswith("}"):
        return name, ()
    tags = []
    for part in rest[:-1].split(","):
        key, _, value = part.partition(":")
        tags.append((key.strip(), value.strip().strip("\"'")))
    return base, tuple(tags)


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    for value in values.values():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RowError("wrong type: metric value")
        if not math.isfinite(value):
            raise RowError("not finite: metric value")
    return {key: float(value) for key, value in values.items()}


def _entry(entry: Any) -> Entry:
    """Normalise one metric entry of either shape, or raise RowError."""
    if not isinstance(entry, dict):
        raise RowError("wrong type: metric entry")
    thresholds = entry.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise RowError("wrong type: thresholds")
    results = []
    if isinstance(entry.get("values"), dict):  # handleSummary: {"expr": {"ok": held}}
        values = entry["values"]
        for expression, result in thresholds.items():
            held = result.get("ok") if isinstance(result, dict) else None
            if not isinstance(held, bool):
                raise RowError("wrong type: threshold result")
            results.append((expression, not held))
    else:  # --summary-export: {"expr": crossed}
        values = {key: value for key, value in entry.items() if key != "thresholds"}
        for expression, crossed in thresholds.items():
            if not isinstance(crossed, bool):
                raise RowError("wrong type: threshold result")
            results.append((expression, crossed))
    return _numbers(values), results


def _interval_s(document: dict[str, Any], requests: dict[str, float]) -> float | None:
    state = document.get("state")
    duration_ms = state.get("testRunDurationMs") if isinstance(state, dict) else None
    if isinstance(duration_ms, int | float) and not isinstance(duration_ms, bool):
        return duration_ms / 1000
    # The export has no state, but k6 computes a counter's rate as count / test duration.
    if requests.get("rate") and "count" in requests:
        return requests["count"] / requests["rate"]
    return None


def _stats_rows(document: dict[str, Any], entries: dict[str, Entry]) -> list[dict[str, Any]]:
    metrics = {_selector(name): values for name, (values, _) in entries.items()}
    interval_s = _interval_s(document, metrics.get(("http_reqs", ()), {}))
    rows = []
    for (base, tags), duration in metrics.items():
        if base != "http_req_duration":
            continue
        if not tags:
            endpoint = ALL
        elif len(tags) == 1 and tags[0][0] in ENDPOINT_TAGS:
            endpoint = tags[0][1]
        else:
            continue  # e.g. {expected_response:true}: not an endpoint
        requests = metrics.get(("http_reqs", tags), {})
        failed = metrics.get(("http_req_failed", tags), {})
        count = duration.get("count", requests.get("count"))
        errors = failed.get("passes")
        row = {
            "ts": None,
            "endpoint": endpoint,
            "interval_s": interval_s,
            "count": None if count is None else round(count),
            "errors": None if errors is None else round(errors),
        }
        row.update({column: duration.get(key) for key, column in STATS.items()})
        rows.append(row)
    return rows


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """One summary document -> ``interval_stats`` and threshold ``events`` plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    loaded = read_json_document(stream, quarantine, limits)
    if loaded is None:
        yield from quarantine.flush()
        return
    document, raw = loaded
    metrics = document.get("metrics") if isinstance(document, dict) else None
    if not isinstance(metrics, dict):
        reject_document(quarantine, raw, "missing field: metrics")
        yield from quarantine.flush()
        return
    entries: dict[str, Entry] = {}
    for name, entry in metrics.items():
        accounting.rows_read += 1
        try:
            entries[name] = _entry(entry)
        except RowError as exc:
            quarantine.add(0, str(exc), json.dumps({name: entry}).encode())
            continue
        accounting.rows_accepted += 1
    rows = _stats_rows(document, entries)
    events = [
        {
            "ts": None,
            "kind": "threshold_failed" if failed else "threshold_passed",
            "subject": f"{name}: {expression}",
            "detail": DETAIL,
        }
        for name, (_, thresholds) in entries.items()
        for expression, failed in thresholds
    ]
    if rows:
        yield (
            "interval_stats",
            conform("interval_stats", pl.DataFrame(rows, infer_schema_length=None)),
        )
    if events:
        yield "events", conform("events", pl.DataFrame(events))
    yield from quarantine.flush()
