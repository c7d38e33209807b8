"""Which files of a folder are a run's result files: tools' and dependencies' folders are not
looked into (a load test run from a project's root)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from metrics_pipeline.formats import earliest_timestamp, result_files

LINE = '{"ts": "2026-11-01T00:00:00Z", "endpoint": "/a", "latency_ms": 1}\n'


def write(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(LINE)


def test_hidden_vendor_and_home_folders_are_not_looked_into(tmp_path: Path) -> None:
    write(
        tmp_path,
        "results/out.ndjson",
        "top.json",
        "node_modules/left-pad/package.json",
        "web/node_modules/x/package.json",
        ".venv/lib/python3.11/site-packages/pkg/data.json",
        "venv/lib/data.json",
        "src/__pycache__/cache.json",
        ".git/info.json",
        ".metrics_home/objects/loadtests/raw/s/r/requests.ndjson",
        "metrics-data/objects/x.ndjson",
        ".hidden.json",  # a hidden file, not a folder: kept
    )
    found = result_files(tmp_path, skip=[tmp_path / "metrics-data"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        ".hidden.json",
        "results/out.ndjson",
        "top.json",
    ]


def test_the_folder_given_is_looked_into_whatever_its_name(tmp_path: Path) -> None:
    write(tmp_path, ".results/out.ndjson", "node_modules/out.ndjson")
    assert result_files(tmp_path / ".results") == [tmp_path / ".results" / "out.ndjson"]
    assert result_files(tmp_path / "node_modules") == [tmp_path / "node_modules" / "out.ndjson"]


def test_a_file_is_itself_and_a_missing_path_an_error(tmp_path: Path) -> None:
    write(tmp_path, "out.ndjson")
    assert result_files(tmp_path / "out.ndjson") == [tmp_path / "out.ndjson"]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        result_files(tmp_path / "missing")


def test_linked_folders_are_not_followed(tmp_path: Path) -> None:
    # A link back to a parent (or to the folder itself) would read the run's files again and
    # again, or never end.
    results = tmp_path / "res"
    results.mkdir()
    (results / "a.ndjson").write_text("{}\n")
    (results / "up").symlink_to(tmp_path)
    (results / "self").symlink_to(results)
    assert result_files(results) == [results / "a.ndjson"]
    # The folder given may itself be a link.
    (tmp_path / "latest").symlink_to(results)
    assert result_files(tmp_path / "latest") == [tmp_path / "latest" / "a.ndjson"]


def test_a_run_is_dated_by_its_first_requests_also_after_a_bad_line(tmp_path: Path) -> None:
    # One line without a time among the first: its quarantine batch comes before the first
    # batch of requests, and a run dated by nothing starts at the upload (every request then
    # lies outside its window).
    lines = [
        f'{{"ts": "2026-11-01T00:00:{s:02d}Z", "endpoint": "/a", "latency_ms": 1}}\n'
        for s in range(30)
    ]
    lines.insert(1, '{"endpoint": "/a", "latency_ms": 5}\n')
    (tmp_path / "requests.ndjson").write_text("".join(lines))
    assert earliest_timestamp([tmp_path / "requests.ndjson"]) == datetime(2026, 11, 1, tzinfo=UTC)
