"""Uploading a run: result files first, the manifest last (its presence marks the run complete)."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from metrics_pipeline.contracts.manifest import RunManifest, UploadedFile
from metrics_pipeline.formats import MANIFEST_NAME, is_result_file
from metrics_pipeline.storage.objects import ObjectStore, RunIdTakenError, new_run_marker


def uploader_identity() -> str:
    """``user@host``, or the CI job when one is known (``GITHUB_ACTIONS``/``CI_JOB_URL``)."""
    job = os.environ.get("CI_JOB_URL") or (
        f"{os.environ['GITHUB_SERVER_URL']}/{os.environ['GITHUB_REPOSITORY']}/actions/runs/"
        f"{os.environ['GITHUB_RUN_ID']}"
        if os.environ.get("GITHUB_RUN_ID") and os.environ.get("GITHUB_REPOSITORY")
        else None
    )
    if job:
        return job[:256]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:256]


def upload_run(
    store: ObjectStore, files: Iterable[Path], manifest: RunManifest, root: Path | None = None
) -> list[str]:
    """Put ``files`` under ``raw/<suite>/<run_id>/`` then ``run.json``; return the keys.

    Files below ``root`` keep their path relative to it (so ``a/out.json`` and ``b/out.json``
    do not overwrite each other); others are named by their file name.

    Raises ``RunIdTakenError`` when another suite holds a run of the same id. A re-upload of
    a run replaces it exactly: the old ``run.json`` is removed first (the run is
    incomplete, so not ingested, while its files change), objects of the earlier upload that
    this one does not have are deleted, and the new manifest lists this upload's files.

    Last, an empty marker ``new-runs/<time>@<suite>@<run_id>`` announces the upload, so the
    sensor finds it within a second or two by listing only the recent markers (the keys
    returned are the run's; an upload without its marker is still found by the sensor's
    periodic full listing).
    """
    taken = store.find_run(manifest.run_id)
    if taken is not None and taken != manifest.suite:
        # Ingest finds a run by its id alone: two suites' runs of one id would be one run.
        raise RunIdTakenError(
            f"run {manifest.run_id!r} is uploaded in suite {taken!r}: a run id names one run "
            f"across suites; give another --run-id, or remove "
            f"{store.run_prefix(taken, manifest.run_id)} first"
        )
    prefix = store.run_prefix(manifest.suite, manifest.run_id)
    store.delete(prefix + MANIFEST_NAME)
    keys, listed = [], []
    for file in files:
        if not is_result_file(file.name):
            continue
        inside = root is not None and file.is_relative_to(root)
        name = file.relative_to(root).as_posix() if inside else file.name
        store.put_file(prefix + name, file)
        keys.append(prefix + name)
        listed.append(UploadedFile(name=name, size=file.stat().st_size))
    for info in list(store.list(prefix)):
        if info.key not in keys:
            store.delete(info.key)
    manifest = manifest.model_copy(
        update={"files": tuple(listed), "uploaded_by": manifest.uploaded_by or uploader_identity()}
    )
    document = manifest.model_dump_json(indent=2, exclude_none=True)
    store.put_bytes(prefix + MANIFEST_NAME, document.encode())
    keys.append(prefix + MANIFEST_NAME)
    store.put_bytes(new_run_marker(manifest.suite, manifest.run_id, datetime.now(UTC)), b"")
    return keys
