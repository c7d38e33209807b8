"""Finding completed uploads in the object store: the logic behind ``new_run_sensor``."""

from __future__ import annotations

import json
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
    etag: str
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


def manifest_objects(store: ObjectStore) -> list[ObjectInfo]:
    """Every ``raw/<suite>/<run_id>/run.json``: a run is complete once its manifest exists."""
    return [
        info
        for info in store.list(RAW_PREFIX)
        if info.key.count("/") == 3 and info.key.endswith("/" + MANIFEST)
    ]


def scan_uploads(store: ObjectStore, cursor: str | None) -> Scan:
    """New or replaced manifests since ``cursor``, validated, oldest run first.

    The cursor is ``{"watermark": newest last-modified seen, "recent": {key: etag}}`` where
    ``recent`` holds only manifests within LOOKBACK_S of the watermark, so it stays small however
    many runs the bucket holds, and a re-upload (new etag) is seen again.
    """
    state = json.loads(cursor) if cursor else {"watermark": 0.0, "recent": {}}
    watermark, recent = float(state["watermark"]), dict(state["recent"])
    objects = manifest_objects(store)
    fresh = [
        info
        for info in objects
        if info.last_modified >= watermark - LOOKBACK_S and recent.get(info.key) != info.etag
    ]
    uploads, rejected = [], []
    for info in fresh:
        _, suite, run_id, _ = info.key.split("/")
        try:
            check_name(suite, "suite")
            check_name(run_id, "run_id")
            manifest = RunManifest.parse(store.get_bytes(info.key), source=info.key)
            if (manifest.suite, manifest.run_id) != (suite, run_id):
                raise ManifestError(
                    f"invalid manifest {info.key}: suite/run_id "
                    f"({manifest.suite!r}/{manifest.run_id!r}) must match its folder"
                )
        except (ManifestError, ValueError) as exc:
            rejected.append(Rejected(info.key, str(exc)))
            continue
        uploads.append(
            Upload(suite, run_id, info.key, info.etag, manifest.started_at.timestamp(), manifest)
        )
    new_watermark = max([watermark, *(info.last_modified for info in objects)])
    new_recent = {
        info.key: info.etag for info in objects if info.last_modified >= new_watermark - LOOKBACK_S
    }
    uploads.sort(key=lambda u: (u.started_at, u.run_id))
    return Scan(uploads, rejected, json.dumps({"watermark": new_watermark, "recent": new_recent}))
