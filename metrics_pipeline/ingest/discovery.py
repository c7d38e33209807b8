"""Finding completed uploads in the object store: the logic behind ``new_run_sensor``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from metrics_pipeline.contracts.manifest import ManifestError, RunManifest, check_name
from metrics_pipeline.storage.objects import RAW_PREFIX, ObjectInfo, ObjectStore

MANIFEST = "run.json"
# Uploads that land out of order (slow writers, clock skew between writers of a local folder)
# are still seen if they are at most this much older than the newest manifest already seen.
LOOKBACK_S = 300.0


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
        if any(info.key == prefix + MANIFEST for info in infos)
    }


def scan_uploads(store: ObjectStore, cursor: str | None) -> Scan:
    """New or replaced uploads since ``cursor``, validated, oldest run first.

    The cursor is ``{"watermark": newest last-modified seen, "recent": {manifest key:
    version}}`` where ``recent`` holds only runs changed within LOOKBACK_S of the watermark, so
    it stays small however many runs the bucket holds, and a re-upload (new version) is seen
    again.
    """
    state = json.loads(cursor) if cursor else {"watermark": 0.0, "recent": {}}
    watermark, recent = float(state["watermark"]), dict(state["recent"])
    runs = runs_in(store.list(RAW_PREFIX))
    changed = {
        prefix: (max(info.last_modified for info in infos), upload_version(infos))
        for prefix, infos in runs.items()
    }
    uploads, rejected = [], []
    for prefix, (modified, version) in changed.items():
        key = prefix + MANIFEST
        if modified < watermark - LOOKBACK_S or recent.get(key) == version:
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
    new_recent = {
        prefix + MANIFEST: version
        for prefix, (modified, version) in changed.items()
        if modified >= new_watermark - LOOKBACK_S
    }
    uploads.sort(key=lambda u: (u.started_at, u.run_id))
    return Scan(uploads, rejected, json.dumps({"watermark": new_watermark, "recent": new_recent}))
