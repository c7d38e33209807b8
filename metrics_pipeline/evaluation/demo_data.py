"""Realistic synthetic load-test runs for the demo and the tests.

Latencies are log-normal per endpoint with rare slow outliers (GC pauses, cold caches), about
1 % errors, a little run-to-run drift, and optionally one endpoint made slower.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from metrics_pipeline.common.clock import system_now
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.formats import MANIFEST_NAME


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    median_ms: float
    sigma: float  # log-normal shape: the spread of the body of the distribution
    rps: float
    bytes: int


ENDPOINTS = (
    # A sub-millisecond health endpoint: its relative noise is large, its absolute one tiny.
    Endpoint("/health", "GET", 0.6, 0.35, 20, 15),
    Endpoint("/api/items", "GET", 12.0, 0.45, 40, 1123),
    Endpoint("/api/search", "GET", 35.0, 0.55, 15, 4096),
    Endpoint("/api/orders", "POST", 48.0, 0.40, 10, 214),
    Endpoint("/api/cart", "GET", 9.0, 0.50, 25, 640),
)
OUTLIER_RATE = 0.005
ERROR_RATE = 0.01
RUN_DRIFT = 0.03  # run-to-run variation of the median on a shared machine


def generate_requests(
    started_at: datetime,
    *,
    duration_s: float = 60.0,
    seed: int = 0,
    slow: dict[str, float] | None = None,
) -> list[dict]:
    """Per-request records in the canonical NDJSON shape, in completion order.

    ``slow`` maps endpoint names to a latency factor (1.3 = 30 % slower).
    """
    rng = np.random.default_rng(seed)
    slow = slow or {}
    records = []
    for endpoint in ENDPOINTS:
        n = int(endpoint.rps * duration_s)
        offsets = np.sort(rng.uniform(0, duration_s, n))
        drift = 1 + rng.normal(0, RUN_DRIFT)
        factor = slow.get(endpoint.name, 1.0) * drift
        latency = rng.lognormal(np.log(endpoint.median_ms * factor), endpoint.sigma, n)
        outliers = rng.random(n) < OUTLIER_RATE
        latency[outliers] *= rng.uniform(5, 20, outliers.sum())
        failed = rng.random(n) < ERROR_RATE
        for offset, ms, fail in zip(offsets, latency, failed, strict=True):
            ts = started_at + timedelta(seconds=float(offset), milliseconds=float(ms))
            records.append(
                {
                    "ts": ts.isoformat().replace("+00:00", "Z"),
                    "endpoint": endpoint.name,
                    "method": endpoint.method,
                    "status": 500 if fail else 200,
                    "latency_ms": round(float(ms), 3),
                    "bytes_received": 0 if fail else endpoint.bytes,
                    "error": "500 Internal Server Error" if fail else None,
                }
            )
    records.sort(key=lambda r: r["ts"])
    return records


@dataclass(frozen=True)
class DemoRun:
    manifest: RunManifest
    records: list[dict]

    def write(self, folder: Path) -> Path:
        """Write ``requests.ndjson`` and ``run.json`` into ``folder/<run_id>``."""
        target = folder / self.manifest.run_id
        target.mkdir(parents=True, exist_ok=True)
        with (target / "requests.ndjson").open("w") as out:
            out.writelines(json.dumps(r) + "\n" for r in self.records)
        (target / MANIFEST_NAME).write_text(self.manifest.model_dump_json(indent=2))
        return target


def last_nightly_start(now: datetime) -> datetime:
    """The latest 02:00 UTC at least an hour before ``now``: when the last demo run started.

    Always between 1 and 25 hours before ``now``: inside a 24 h cadence plus its grace, and a
    day later still in the past.
    """
    day = (now.astimezone(UTC) - timedelta(hours=3)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return day + timedelta(hours=2)


def demo_runs(
    count: int = 6,
    *,
    suite: str = "checkout",
    slowed_endpoint: str = "/api/orders",
    slowdown: float = 1.6,
    duration_s: float = 60.0,
    now: datetime | None = None,
) -> list[DemoRun]:
    """``count`` nightly runs of one combination; the last one has ``slowed_endpoint`` slower.

    The runs are dated relative to ``now`` (default: the system clock), so they always fall
    inside the SLA windows and the expected-run cadence: see `last_nightly_start`.
    """
    first_start = last_nightly_start(now or system_now()) - timedelta(days=count - 1)
    runs = []
    for i in range(count):
        started = first_start + timedelta(days=i)
        is_last = i == count - 1
        manifest = RunManifest(
            run_id=f"{suite}-{started:%Y%m%d}-{i + 1}",
            suite=suite,
            scenario="browse-and-buy",
            environment="staging",
            started_at=started,
            finished_at=started + timedelta(seconds=duration_s),
            tool="custom",
            service_version=f"1.4.{i}",
            git_sha=f"{(0x5EED + i) * 2654435761 % 16**12:012x}",
            tags={"trigger": "nightly"},
            load_profile={
                "vus": 50,
                "target_rps": sum(e.rps for e in ENDPOINTS),
                "duration_s": duration_s,
            },
        )
        records = generate_requests(
            started,
            duration_s=duration_s,
            seed=1000 + i,
            slow={slowed_endpoint: slowdown} if is_last else None,
        )
        runs.append(DemoRun(manifest, records))
    return runs
