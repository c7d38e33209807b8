"""Which code a benchmark measured: the commit, and a digest of uncommitted changes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_state(path: str = "metrics_pipeline") -> str:
    """``<short sha>``, plus ``+ uncommitted changes in <path> (diff sha1 ...)`` when ``path``
    differs from HEAD; ``unknown`` without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "diff", "HEAD", "--", path], cwd=ROOT, capture_output=True
        ).stdout
    except OSError:
        return "unknown"
    if not diff:
        return head
    digest = hashlib.sha1(diff).hexdigest()[:10]
    return f"{head} + uncommitted changes in {path} (diff sha1 {digest})"
