"""`compare` and `ingest` on input that cannot be read whole (a truncated gzip, a line without
end, JSON nested 200,000 deep, a summary that is not JSON): exit 2 with one `error:` line per
such file, never 1 (which a CI gate reads as a regression) and never a traceback."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.storage import Warehouse

runner = CliRunner()
LOCUST = Path(__file__).resolve().parents[1] / "fixtures" / "loadtest" / "locust"
REQUESTS = LOCUST / "requests.ndjson"
MIB = 1 << 20


def truncated_gzip(path: Path) -> None:
    packed = gzip.compress(REQUESTS.read_bytes())
    path.write_bytes(packed[: len(packed) // 2])


def endless_line(path: Path) -> None:
    # 20 MiB without a newline, over the default 16 MiB line limit, in 20 KiB of gzip.
    first = REQUESTS.read_bytes().splitlines(keepends=True)[0]
    path.write_bytes(gzip.compress(first + b'{"name": "' + b"a" * 20 * MIB))


def deep_json(path: Path) -> None:
    path.write_bytes(b"[" * 200_000)


def summary_not_json(path: Path) -> None:
    path.write_bytes(b'{"root_group": {}, "metrics": {"http_req_duration": {"avg": 1')


HOSTILE = {
    "truncated.ndjson.gz": (truncated_gzip, "truncated"),
    "endless.ndjson.gz": (endless_line, "line 2 longer than 16 MiB (limit max_line_bytes)"),
    "deep.json": (deep_json, "JSON nested deeper than 64 levels (limit max_depth)"),
    "summary.json": (summary_not_json, "invalid JSON"),
}


def candidate(tmp_path: Path, hostile: str, slower: float = 1.0) -> Path:
    """A run folder: the Locust requests (latencies times ``slower``) and one hostile file."""
    folder = tmp_path / "candidate"
    folder.mkdir()
    records = [json.loads(line) for line in REQUESTS.read_text().splitlines()]
    for record in records:
        record["response_time"] *= slower
    (folder / "requests.ndjson").write_text("".join(json.dumps(r) + "\n" for r in records))
    write, _ = HOSTILE[hostile]
    write(folder / hostile)
    return folder


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_compare_exits_2_naming_the_file_that_could_not_be_read(tmp_path, hostile):
    folder = candidate(tmp_path, hostile)
    result = runner.invoke(app, ["compare", str(REQUESTS), str(folder), "--json"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # an exit, not an uncaught error
    assert "Traceback" not in result.output
    [line] = error_lines(result.output)
    assert line.startswith(f"error: unreadable input: {folder}/{hostile}: ")
    assert HOSTILE[hostile][1] in line


def test_a_damaged_candidate_is_bad_input_even_when_it_looks_like_a_regression(tmp_path):
    folder = candidate(tmp_path, "truncated.ndjson.gz", slower=1.6)
    assert (
        runner.invoke(app, ["compare", str(REQUESTS), str(folder / "requests.ndjson")]).exit_code
        == 1
    )
    result = runner.invoke(app, ["compare", str(REQUESTS), str(folder)])
    assert result.exit_code == 2, result.output


def test_compare_names_every_damaged_file_of_every_run(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    shutil.copy(REQUESTS, base)
    deep_json(base / "deep.json")
    folder = candidate(tmp_path, "truncated.ndjson.gz")
    result = runner.invoke(app, ["compare", str(base), str(folder)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert [line.split(": ")[2] for line in lines] == [
        f"{base}/deep.json",
        f"{folder}/truncated.ndjson.gz",
    ]


def test_a_file_of_no_known_format_is_reported_not_fatal(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(REQUESTS, folder)
    (folder / "notes.json").write_text('{"comment": "not a result file"}')
    result = runner.invoke(app, ["compare", str(REQUESTS), str(folder), "--json"])
    assert result.exit_code == 0, result.output


def test_ingest_keeps_the_good_files_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    folder = candidate(tmp_path, "truncated.ndjson.gz")
    args = ["--suite", "shop", "--scenario", "browse", "--env", "ci", "--run-id", "bad-1"]
    result = runner.invoke(app, ["ingest", str(folder), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result.output)
    assert line.startswith("error: unreadable input: truncated.ndjson.gz: unreadable after line")
    requests = Warehouse(tmp_path / "home" / "warehouse").read("requests", ["bad-1"])
    by_file = dict(requests.group_by("source_file").len().iter_rows())
    assert by_file["requests.ndjson"] == 3534  # the good file whole
    assert 0 < by_file["truncated.ndjson.gz"] < 3534  # what was read before the damage
