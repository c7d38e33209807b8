"""The local object store and its key rules (the S3 one is tested against a real server)."""

from __future__ import annotations

import pytest

from metrics_pipeline.storage.objects import LocalObjectStore, UnsafeKeyError, check_key


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "raw/../../x", "raw/./x", "raw//x", "raw/a\x00b", "raw\\a", ".."]
)
def test_unsafe_keys_are_rejected(key, tmp_path):
    with pytest.raises(UnsafeKeyError, match="not allowed"):
        check_key(key)
    store = LocalObjectStore(root=str(tmp_path))
    with pytest.raises(UnsafeKeyError):
        store.put_bytes(key, b"x")
    assert not any(tmp_path.parent.glob("x"))


def test_shell_metacharacters_are_only_names(tmp_path):
    # A key is never given to a shell; such characters are just bytes of a file name.
    store = LocalObjectStore(root=str(tmp_path))
    store.put_bytes("raw/s/r/$(touch pwned);`id`.ndjson", b"x")
    assert [o.key for o in store.list("raw/")] == ["raw/s/r/$(touch pwned);`id`.ndjson"]
    assert not (tmp_path / "pwned").exists()


def test_local_store_lists_heads_finds_runs_and_replaces_atomically(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    store.put_bytes("raw/checkout/r1/requests.ndjson", b"a" * 5)
    store.put_bytes("raw/checkout/r1/run.json", b"{}")
    store.put_bytes("raw/search/r2/requests.ndjson", b"b")  # no manifest yet: incomplete
    assert [o.key for o in store.list("raw/checkout/")] == [
        "raw/checkout/r1/requests.ndjson",
        "raw/checkout/r1/run.json",
    ]
    assert store.list_folders("raw/") == ["checkout", "search"]
    assert store.find_run("r1") == "checkout" and store.find_run("r2") is None
    before = store.head("raw/checkout/r1/requests.ndjson")
    store.put_bytes("raw/checkout/r1/requests.ndjson", b"changed!")
    after = store.head("raw/checkout/r1/requests.ndjson")
    assert after.size == 8 and after.etag != before.etag
    assert store.get_bytes("raw/checkout/r1/requests.ndjson") == b"changed!"
    # No temporary upload files are left behind or listed.
    assert sorted(p.name for p in (tmp_path / "raw/checkout/r1").iterdir()) == [
        "requests.ndjson",
        "run.json",
    ]
