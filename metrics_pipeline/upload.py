"""Uploading a run: result files first, the manifest last (its presence marks the run complete)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from metrics_pipeline.formats import is_result_file
from metrics_pipeline.models import RunManifest
from metrics_pipeline.resources import ObjectStore


def upload_run(store: ObjectStore, files: Iterable[Path], manifest: RunManifest) -> list[str]:
    """Put ``files`` under ``raw/<suite>/<run_id>/`` then ``run.json``; return the keys."""
    prefix = store.run_prefix(manifest.suite, manifest.run_id)
    keys = []
    for file in files:
        if not is_result_file(file.name):
            continue
        key = prefix + file.name
        store.put_file(key, file)
        keys.append(key)
    store.put_bytes(prefix + "run.json", manifest.model_dump_json(indent=2).encode())
    keys.append(prefix + "run.json")
    return keys
