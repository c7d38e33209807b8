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


def read_through(*paths: Path) -> None:
    """Read ``paths`` once, so that the engines a benchmark compares all find them in the page
    cache: an input reused from an earlier session may be on disk only, and the engine that
    runs first would pay the disk for both (DuckDB took 3.0 s for a 1 GB file read from disk,
    2.1 s right after, 2026-12-07)."""
    for path in paths:
        with open(path, "rb") as stream:
            while stream.read(16 << 20):
                pass
