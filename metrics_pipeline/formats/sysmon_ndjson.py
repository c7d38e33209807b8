"""System monitor samples, one psutil-style JSON object per line -> ``resources``.

Every numeric leaf of a sample becomes one row (ts, host, metric, value)::

    sample                                   metric
    cpu_percent                              cpu_pct
    cpu_percent_percpu[i]                    cpu_pct.<i>
    mem_percent                              mem_pct
    mem_used_bytes, mem_available_bytes      same name
    load1 (load5, ...)                       same name
    proc.<name>.cpu_percent                  proc.<name>.cpu_pct
    proc.<name>.rss_bytes (vms_bytes, ...)   proc.<name>.rss_bytes
    net.<counter>, net_lo.<...>, net_delta.<...>, disk.<...>   the same dotted path

That is: nested objects give dotted names, a key ending in "percent" ends in "pct" instead, and
a list under a key ending in "_percpu" gives one metric per CPU. ts = timestamp (epoch seconds),
else time or ts (ISO 8601); host = a top-level "host" string, else "localhost".

Not metrics: the time fields, elapsed_s (the monitor's own clock), host, pid (an identifier),
strings (a process name), booleans, nulls (a process that has exited) and other lists.
Quarantined: a line that is not a JSON object, has no valid timestamp, has no numeric metric, or
has a non-number under a measurement name (ending in percent, _pct or _bytes, or load<n>).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import polars as pl

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.formats.base import (
    BATCH_ROWS,
    INVALID_JSON,
    LONE_SURROGATE,
    NOT_UTF8,
    Batch,
    FileAccounting,
    Quarantine,
    RowError,
    Sniff,
    encodable,
    number,
    numbered_lines,
    parse_timestamp,
)
from metrics_pipeline.formats.limits import (
    DEFAULT_LIMITS,
    ReadLimits,
    cap_row,
    depth_reason,
    nested_deeper,
)

NAME = "sysmon_ndjson"
# System samples: no requests, no tool's timing.
TOOL = ""
TS_KEYS = ("timestamp", "time", "ts")
NOT_METRICS = {*TS_KEYS, "elapsed_s", "host"}
MEASUREMENT = re.compile(r"(percent|_pct|_bytes)$|^load\d*$")
PER_CPU = "_percpu"


def looks_like(sniff: Sniff) -> bool:
    """One of the first lines is an object with a timestamp and a CPU or memory percentage."""
    return any(
        ("cpu_percent" in record or "mem_percent" in record)
        and any(key in record for key in TS_KEYS)
        for record in sniff.json_objects()
    )


def _metric_name(key: str) -> str:
    return key.removesuffix("percent") + "pct" if key.endswith("percent") else key


def _value(name: str, key: str, value: Any) -> Iterator[tuple[str, float]]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        yield name, number(value, name)
    elif value is not None and MEASUREMENT.search(key):
        raise RowError(f"wrong type: {name}")


def _metrics(sample: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in sample.items():
        if (not prefix and key in NOT_METRICS) or key == "pid":
            continue
        if isinstance(value, dict):
            yield from _metrics(value, f"{prefix}{_metric_name(key)}.")
        elif isinstance(value, list) and key.endswith(PER_CPU):
            name = prefix + _metric_name(key.removesuffix(PER_CPU))
            for cpu, item in enumerate(value):
                yield from _value(f"{name}.{cpu}", key.removesuffix(PER_CPU), item)
        else:
            yield from _value(prefix + _metric_name(key), key, value)


def to_rows(sample: Any) -> list[dict[str, Any]]:
    """One decoded line -> its ``resources`` rows, or RowError."""
    if not isinstance(sample, dict):
        raise RowError("not a JSON object")
    ts = parse_timestamp(next((sample[k] for k in TS_KEYS if sample.get(k) is not None), None))
    host = sample.get("host")
    host = host if isinstance(host, str) and host else "localhost"
    rows = [
        {"ts": ts, "host": host, "metric": metric, "value": value}
        for metric, value in _metrics(sample)
    ]
    if not rows:
        raise RowError("no numeric metrics")
    if not all(encodable(row) for row in rows):
        raise RowError(LONE_SURROGATE)
    return rows


def parse(
    stream: BinaryIO, accounting: FileAccounting, limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Batch]:
    """Stream samples into ``resources`` batches of at most BATCH_ROWS rows plus quarantine."""
    accounting.format = NAME
    quarantine = Quarantine(accounting)
    rows: list[dict[str, Any]] = []
    try:
        for line_no, raw in numbered_lines(stream, accounting.file, limits):
            accounting.rows_read += 1
            if nested_deeper(raw, limits.max_depth):
                quarantine.add(line_no, depth_reason(limits), raw)
                continue
            try:
                sample = to_rows(json.loads(raw.decode("utf-8-sig")))
                rows.extend(cap_row("resources", row, limits) for row in sample)
            except UnicodeDecodeError:
                quarantine.add(line_no, NOT_UTF8, raw)
                continue
            except RowError as exc:
                quarantine.add(line_no, str(exc), raw)
                continue
            except (ValueError, RecursionError):
                quarantine.add(line_no, INVALID_JSON, raw)
                continue
            accounting.rows_accepted += 1
            while len(rows) >= BATCH_ROWS:
                yield _batch(rows[:BATCH_ROWS])
                rows = rows[BATCH_ROWS:]
                yield from quarantine.flush()
    finally:
        # Also on a corrupt stream: what was read before the damage is kept and accounted for.
        if rows:
            yield _batch(rows)
        yield from quarantine.flush()


def _batch(rows: list[dict[str, Any]]) -> Batch:
    return "resources", conform("resources", pl.DataFrame(rows, infer_schema_length=None))
