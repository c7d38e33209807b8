"""Artillery 2 JSON report (``artillery run --output report.json``) -> ``interval_stats``.

The report is ``{"aggregate": {...}, "intermediate": [{...}, ...]}``; every element holds
``counters`` and ``summaries`` for one 10 s period (the aggregate for the whole run). One record
is one (period, endpoint) summary::

    canonical     Artillery
    ts            period (ms epoch; a string in intermediates); for the aggregate firstMetricAt,
                  because its period labels the last 10 s window, not the start of the run
    endpoint      <path> of summaries["plugins.metrics-by-endpoint.response_time.<path>"];
                  "(all)" for summaries["http.response_time"] when the report has no
                  per-endpoint summaries at all (the plugin was not enabled)
    interval_s    (lastMetricAt - firstMetricAt) / 1000, the span the metrics were recorded in
                  (Artillery's own request_rate uses it); 10 when absent or zero
    count         summary count
    errors        sum of the counters "plugins.metrics-by-endpoint.<path>.codes.<status>"
                  ("http.codes.<status>" for "(all)") with status >= 400. Network errors
                  (errors.<code>) are not added: they have no response, are not in ``count`` and
                  are not attributed to an endpoint.
    mean, min, p90, p95, p99, max   the same summary keys; p50 = p50 (or median)

The aggregate is derivable from the intermediates, so its records are checked and counted as
accepted but not stored, unless the intermediates give no records (then it is all there is).
Quarantine ``line_no`` is the 1-based position of the period in ``intermediate``; 0 stands for
the aggregate or the whole document (JSON that does not parse, or is not such a report).
Artillery 1.x reports (``latency`` instead of ``summaries``) are not recognised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
    number,
    optional_int,
    read_json_document,
    reject_document,
)
from metrics_pipeline.formats.limits import DEFAULT_LIMITS, ReadLimits

NAME = "artillery_json"
TOOL = "artillery"
# One JSON document, not lines (see formats.iter_file).
DOCUMENT = True
ENDPOINT_SUMMARY = "plugins.metrics-by-endpoint.response_time."
ENDPOINT_CODES = "plugins.metrics-by-endpoint.{}.codes."
OVERALL_SUMMARY = "http.response_time"
OVERALL_CODES = "http.codes."
OVERALL_ENDPOINT = ALL_ENDPOINTS
DEFAULT_INTERVAL_S = 10.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Artillery writes the aggregate first; its summaries are well inside the 1 MiB sniff.
AGGREGATE_KEY = re.compile(rb'^\s*\{\s*"aggregate"\s*:\s*\{')
SUMMARIES_KEY = re.compile(rb'"summaries"\s*:\s*\{')
STATS = {"mean": "mean", "min": "min", "p90": "p90", "p95": "p95", "p99": "p99", "max": "max"}


def looks_like(sniff: Sniff) -> bool:
    """A JSON object opening with ``"aggregate": {`` that has Artillery 2 ``summaries``."""
    head = sniff.head.removeprefix(b"\xef\xbb\xbf")
    return bool(AGGREGATE_KEY.match(head) and SUMMARIES_KEY.search(head))


def _epoch_ms(value: Any, field: str) -> datetime:
    if value is None:
        raise RowError(f"missing field: {field}")
    try:
        return EPOCH + timedelta(milliseconds=number(value, field))
    except OverflowError:
        raise RowError(f"out of range: {field}") from None


def _optional_number(value: Any, field: str) -> float | None:
    return None if value is None else number(value, field)


def _interval_s(period: dict[str, Any]) -> float:
    first, last = period.get("firstMetricAt"), period.get("lastMetricAt")
    if isinstance(first, int | float) and isinstance(last, int | float) and last > first:
        return (last - first) / 1000.0
    return DEFAULT_INTERVAL_S


def _errors(counters: Any, prefix: str) -> int:
    if not isinstance(counters, dict):
        return 0
    errors = 0
    for key, value in counters.items():
        status = key[len(prefix) :] if key.startswith(prefix) else ""
        if status.isascii() and status.isdigit() and int(status) >= 400:
            errors += optional_int(value, "errors") or 0
    return errors


def to_row(period: dict[str, Any], endpoint: str, summary: Any, aggregate: bool) -> dict:
    """Map one (period, endpoint) summary to an ``interval_stats`` row or raise RowError."""
    if not isinstance(summary, dict):
        raise RowError("summary is not a JSON object")
    count = optional_int(summary.get("count"), "count")
    if count is None:
        raise RowError("missing field: count")
    if count < 0:
        raise RowError("negative: count")
    if aggregate and period.get("firstMetricAt") is not None:
        ts = _epoch_ms(period["firstMetricAt"], "firstMetricAt")
    else:
        ts = _epoch_ms(period.get("period"), "period")
    codes = OVERALL_CODES if endpoint == OVERALL_ENDPOINT else ENDPOINT_CODES.format(endpoint)
    p50 = summary.get("p50", summary.get("median"))
    return {
        "ts": ts,
        "endpoint": endpoint,
        "interval_s": _interval_s(period),
        "count": count,
        "errors": _errors(period.get("counters"), codes),
        "p50": _optional_number(p50, "p50"),
        **{column: _optional_number(summary.get(key), key) for column, key in STATS.items()},
    }


def _summaries(period: dict[str, Any], per_endpoint: bool) -> Iterator[tuple[str, Any]]:
    summaries = period.get("summaries")
    if not isinstance(summaries, dict):
        return
    if not per_endpoint:
        if OVERALL_SUMMARY in summaries:
            yield OVERALL_ENDPOINT, summaries[OVERALL_SUMMARY]
        return
    for key, summary in summaries.items():
        if key.startswith(ENDPOINT_SUMMARY):
            yield key.removeprefix(ENDPOINT_SUMMARY), summary


def _has_endpoint_summaries(period: Any) -> bool:
    summaries = period.get("summaries") if isinstance(period, dict) else None
    return isinstance(summaries, dict) and any(k.startswith(ENDPOINT_SUMMARY) for k in summaries)


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Read the whole report (reports are small) into one ``interval_stats`` batch."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    loaded = read_json_document(stream, quarantine, limits)
    if loaded is None:
        yield from quarantine.flush()
        return
    report, data = loaded
    aggregate = report.get("aggregate") if isinstance(report, dict) else None
    intermediate = report.get("intermediate", []) if isinstance(report, dict) else None
    if not isinstance(aggregate, dict) or not isinstance(intermediate, list):
        reject_document(quarantine, data, "not an Artillery report")
        yield from quarantine.flush()
        return

    periods = [(position, p, False) for position, p in enumerate(intermediate, start=1)]
    periods.append((0, aggregate, True))
    per_endpoint = any(_has_endpoint_summaries(p) for _, p, _ in periods)
    rows = []
    for position, period, is_aggregate in periods:
        label = "aggregate: " if is_aggregate else ""
        # The aggregate comes last: store it only when the intermediates gave no records.
        store = not is_aggregate or accounting.rows_read == 0
        if not isinstance(period, dict):
            accounting.rows_read += 1
            quarantine.add(position, "period is not a JSON object", json.dumps(period).encode())
            continue
        for endpoint, summary in _summaries(period, per_endpoint):
            accounting.rows_read += 1
            try:
                row = to_row(period, endpoint, summary, is_aggregate)
            except RowError as exc:
                raw = {"period": period.get("period"), "endpoint": endpoint, "summary": summary}
                quarantine.add(position, f"{label}{exc}", json.dumps(raw).encode())
                continue
            accounting.rows_accepted += 1
            if store:
                rows.append(row)
    if accounting.rows_read == 0:
        # Nothing to take from it: say so rather than report an empty success.
        accounting.rows_read += 1
        quarantine.add(0, "no response-time summaries", data)
    if rows:
        yield "interval_stats", conform("interval_stats", pl.DataFrame(rows))
    yield from quarantine.flush()
