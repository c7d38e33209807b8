"""Files replaced whole, readable like any file the user writes (reports were mode 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from metrics_pipeline.common.files import replace_bytes, replace_file
from metrics_pipeline.storage.objects import LocalObjectStore


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaced_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "reports" / "summary.md"
        replace_bytes(target, b"# report\n")
        assert target.read_bytes() == b"# report\n" and mode(target) == 0o644
        store = LocalObjectStore(root=str(tmp_path / "bucket"))
        store.put_bytes("raw/s/r/run.json", b"{}")
        assert mode(tmp_path / "bucket" / "raw" / "s" / "r" / "run.json") == 0o644
        os.umask(0o077)
        replace_bytes(target, b"private\n")
        assert mode(target) == 0o600  # a stricter umask is respected
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.html"
    replace_bytes(target, b"old")

    def broken(stream):
        stream.write(b"half")
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError):
        replace_file(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
