"""Uploading a run: result files first, the manifest last (its presence marks the run complete)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.formats import is_result_file
from metrics_pipeline.storage.objects import ObjectStore


def upload_run(
    store: ObjectStore, files: Iterable[Path], manifest: RunManifest, root: Path | None = None
) -> list[str]:
    """Put ``files`` under ``raw/<suite>/<run_id>/`` then ``run.json``; return the keys.

    Files below ``root`` keep their path relative to it (so ``a/out.json`` and ``b/out.json``
    do not overwrite each other); others are named by their file name.
    """
    prefix = store.run_prefix(manifest.suite, manifest.run_id)
    keys = []
    for file in files:
        if not is_result_file(file.name):
            continue
        inside = root is not None and file.is_relative_to(root)
        key = prefix + (file.relative_to(root).as_posix() if inside else file.name)
        store.put_file(key, file)
        keys.append(key)
    store.put_bytes(prefix + "run.json", manifest.model_dump_json(indent=2).encode())
    keys.append(prefix + "run.json")
    return keys
