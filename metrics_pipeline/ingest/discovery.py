"""Finding completed uploads in the object store: the logic behind ``new_run_sensor``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from metrics_pipeline.contracts.manifest import ManifestError, RunManifest, check_name
from metrics_pipeline.formats import MANIFEST_NAME
from metrics_pipeline.storage.objects import (
    NEW_RUNS_PREFIX,
    RAW_PREFIX,
    ObjectInfo,
    ObjectStore,
    marker_bound,
    parse_new_run_marker,
)

# Uploads that land out of order (slow writers, clock skew between writers of a local folder)
# are still seen if they are at most this much older than the newest manifest already seen.
LOOKBACK_S = 300.0
# How often the sensor lists the whole of raw/ (uploads without a marker); between two full
# listings it lists only the recent upload markers.
FULL_SCAN_S = 30.0


@dataclass(frozen=True)
class Upload:
    suite: str
    run_id: str
    key: str
    version: str  # upload_version() of every object under the run's prefix
    started_at: float  # manifest's started_at (epoch) for ordering
    manifest: RunManifest


@dataclass(frozen=True)
class Rejected:
    key: str
    reason: str


@dataclass(frozen=True)
class Scan:
    uploads: list[Upload]
    rejected: list[Rejected]
    cursor: str
    # After a full listing, the key of every run.json in the bucket (a refused upload that
    # is gone no longer needs its alert); None after a listing of the markers alone.
    present: frozenset[str] | None = None


def upload_version(objects: Iterable[ObjectInfo]) -> str:
    """A digest of an upload: SHA-256 over the sorted (key, ETag, size) of its objects.

    Any changed, added or removed file (not only a new ``run.json``) gives a new version, so a
    corrected re-upload is seen and ingested again.
    """
    digest = hashlib.sha256()
    for info in sorted(objects, key=lambda o: o.key):
        digest.update(f"{info.key}\0{info.etag}\0{info.size}\n".encode())
    return digest.hexdigest()[:16]


def runs_in(objects: Iterable[ObjectInfo]) -> dict[str, list[ObjectInfo]]:
    """Objects grouped by run prefix ``raw/<suite>/<run_id>/``, for the prefixes holding a
    ``run.json`` (a run is complete once its manifest exists)."""
    grouped: dict[str, list[ObjectInfo]] = {}
    for info in objects:
        parts = info.key.split("/")
        if len(parts) >= 4:
            grouped.setdefault("/".join(parts[:3]) + "/", []).append(info)
    return {
        prefix: infos
        for prefix, infos in grouped.items()
        if any(info.key == prefix + MANIFEST_NAME for info in infos)
    }


def scan_uploads(
    store: ObjectStore, cursor: str | None, *, full: bool | None = None, now: float | None = None
) -> Scan:
    """New or replaced uploads since ``cursor``, validated, oldest run first.

    Two ways to find them. The cheap one, every call: list the upload markers
    (``new-runs/<time>@<suite>@<run_id>``, written by the uploader after ``run.json``) newer
    than the newest seen minus LOOKBACK_S, and list only the runs of markers not seen before.
    The full one: list every object under ``raw/``, which also finds uploads written without a
    marker (by hand, by another tool); done when ``full`` is True, and when it is None on the
    first call and every FULL_SCAN_S (wall clock ``now``, default the system's) after that.

    The cursor is ``{"watermark": newest last-modified seen, "recent": {manifest key:
    version}, "markers": newest marker time, "seen": [marker keys], "full_at": time of the
    last full listing}``. ``recent`` holds only runs changed within LOOKBACK_S of the
    watermark (rebuilt by each full listing), ``seen`` only the markers within LOOKBACK_S of
    the newest, so the cursor stays small however many runs the bucket holds, and a re-upload
    (new version) is seen again.
    """
    state = json.loads(cursor) if cursor else {}
    watermark, recent = float(state.get("watermark", 0.0)), dict(state.get("recent", {}))
    markers_at, seen = float(state.get("markers", 0.0)), set(state.get("seen", []))
    now = time.time() if now is None else now
    full_at = state.get("full_at")
    if full is None:
        full = full_at is None or not 0 <= now - float(full_at) < FULL_SCAN_S
    since = datetime.fromtimestamp(max(markers_at - LOOKBACK_S, 0.0), UTC)
    markers = {}
    for info in store.list_after(NEW_RUNS_PREFIX, marker_bound(since)):
        parsed = parse_new_run_marker(info.key)
        if parsed is not None:
            markers[info.key] = parsed
    if full:
        runs = runs_in(store.list(RAW_PREFIX))
    else:
        runs = {}
        for key, (_, suite, run_id) in markers.items():
            prefix = store.run_prefix(suite, run_id)
            if key not in seen and prefix not in runs:
                runs.update(runs_in(store.list(prefix)))
    changed = {
        prefix: (max(info.last_modified for info in infos), upload_version(infos))
        for prefix, infos in runs.items()
    }
    uploads, rejected = [], []
    for prefix, (modified, version) in changed.items():
        key = prefix + MANIFEST_NAME
        # A full listing skips runs older than the lookback; a marker vouches for its run.
        if (full and modified < watermark - LOOKBACK_S) or recent.get(key) == version:
            continue
        _, suite, run_id, _ = key.split("/")
        try:
            check_name(suite, "suite")
            check_name(run_id, "run_id")
            manifest = RunManifest.parse(store.get_bytes(key), source=key)
            if (manifest.suite, manifest.run_id) != (suite, run_id):
                raise ManifestError(
                    f"invalid manifest {key}: suite/run_id "
                    f"({manifest.suite!r}/{manifest.run_id!r}) must match its folder"
                )
        except (ManifestError, ValueError) as exc:
            rejected.append(Rejected(key, str(exc)))
            continue
        uploads.append(
            Upload(suite, run_id, key, version, manifest.started_at.timestamp(), manifest)
        )
    new_watermark = max([watermark, *(modified for modified, _ in changed.values())])
    versions = {
        prefix + MANIFEST_NAME: version
        for prefix, (modified, version) in changed.items()
        if modified >= new_watermark - LOOKBACK_S
    }
    new_recent = versions if full else recent | versions
    # A marker from a writer whose clock runs far ahead would hide everyone else's markers.
    new_markers_at = max(
        [
            markers_at,
            *(t for t in (at.timestamp() for at, _, _ in markers.values()) if t < now + LOOKBACK_S),
        ]
    )
    uploads.sort(key=lambda u: (u.started_at, u.run_id))
    state = {
        "watermark": new_watermark,
        "recent": new_recent,
        "markers": new_markers_at,
        "seen": sorted(
            key
            for key, (at, _, _) in markers.items()
            if at.timestamp() >= new_markers_at - LOOKBACK_S
        ),
        "full_at": now if full else full_at,
    }
    present = frozenset(prefix + MANIFEST_NAME for prefix in runs) if full else None
    return Scan(uploads, rejected, json.dumps(state), present)


def full_scan_next(cursor: str | None) -> str | None:
    """``cursor`` with its next scan made a full listing of ``raw/``: for ticks evaluated on
    demand (``metrics-pipeline demo``, ``rebuild``, tests), where finding every upload matters
    more than the cost of one listing."""
    if not cursor:
        return cursor
    state = json.loads(cursor)
    state.pop("full_at", None)
    return json.dumps(state)
