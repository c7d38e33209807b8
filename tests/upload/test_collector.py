"""The collector behind ``metrics-pipeline run``: real commands, a real local object store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.formats import read_results
from metrics_pipeline.ingest.files import ingest_from_store, validate_run
from metrics_pipeline.storage.objects import LocalObjectStore, parse_new_run_marker
from metrics_pipeline.upload import collector
from metrics_pipeline.upload.collector import (
    SAMPLES_NAME,
    NoResultsError,
    SystemSampler,
    collect_run,
    run_and_collect,
    tree_usage,
)

MB = 1024 * 1024
PYTHON = Path(sys.executable).name

# The load test: writes canonical request lines into the results folder (argv[1]), and starts a
# worker that holds 50 MB and burns CPU for a second. The root process is a bare interpreter
# (~10 MB), so a tree RSS of 40 MB or more shows that descendants are measured.
LOAD_TEST = """
import json, subprocess, sys, time
from datetime import datetime, timezone
with open(sys.argv[1] + "/requests.ndjson", "w") as out:
    for _ in range(5):
        ts = datetime.now(timezone.utc).isoformat()
        out.write(json.dumps({"ts": ts, "endpoint": "/a", "latency_ms": 3}) + "\\n")
WORKER = '''
import time
ballast = b"x" * (50 * 1024 * 1024)
while time.process_time() < 1.0:  # one CPU-second of work, however crowded the machine
    pass
time.sleep(1.5)
'''
subprocess.run([sys.executable, "-c", WORKER], check=True)
"""


@dataclass(frozen=True)
class RecordingStore(LocalObjectStore):
    """A local store that remembers the order of its writes."""

    puts: list[str] = field(default_factory=list)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        super().put_bytes(key, data)

    def put_file(self, key: str, path: Path) -> None:
        self.puts.append(key)
        super().put_file(key, path)


def test_run_uploads_results_samples_and_manifest_last(tmp_path: Path) -> None:
    store = RecordingStore(root=str(tmp_path / "store"))
    results = tmp_path / "results"
    results.mkdir()

    code, manifest, keys = collect_run(
        store,
        [sys.executable, "-c", LOAD_TEST, str(results)],
        suite="checkout",
        scenario="smoke",
        environment="ci",
        results_dir=results,
        interval=0.5,
    )

    assert code == 0
    prefix = f"raw/checkout/{manifest.run_id}/"
    # <suite>-<start, UTC>-<8 random hex digits>: runs started in the same second differ.
    assert re.fullmatch(
        f"checkout-{manifest.started_at:%Y%m%dT%H%M%S}-[0-9a-f]{{8}}", manifest.run_id
    )
    expected = [prefix + "requests.ndjson", prefix + SAMPLES_NAME, prefix + "run.json"]
    assert keys == expected
    # The manifest, which marks the run complete, came last; then the marker announcing it.
    assert store.puts[:-1] == expected
    assert parse_new_run_marker(store.puts[-1])[1:] == ("checkout", manifest.run_id)
    assert sorted(info.key for info in store.list(prefix)) == sorted(expected)
    assert list(results.iterdir()) == [results / "requests.ndjson"]  # samples not put there

    stored = RunManifest.parse(store.get_bytes(prefix + "run.json"))
    assert stored.model_copy(update={"files": None, "uploaded_by": None}) == manifest
    assert [f.name for f in stored.files] == ["requests.ndjson", SAMPLES_NAME]
    assert stored.uploaded_by  # user@host, or the CI job
    assert stored.tool == PYTHON
    assert stored.tags == {"collector": "metrics-pipeline run", "exit_code": "0"}
    assert stored.finished_at is not None and stored.finished_at > stored.started_at
    assert stored.load_profile.duration_s >= 2.5

    parsed = read_results(Path(store.root) / prefix)
    assert parsed.requests.height == 5
    by_file = {acc["file"]: acc for acc in parsed.accounting}
    samples = by_file[SAMPLES_NAME]
    assert samples["format"] == "canonical_jsonl"
    assert samples["rows_read"] == samples["rows_accepted"] > 0
    assert samples["rows_quarantined"] == 0
    resources = parsed.resources
    assert {"cpu_pct", "mem_pct", "mem_used_bytes", "proc_rss_bytes", "proc_cpu_pct"} <= set(
        resources["metric"]
    )
    assert resources["ts"].min() >= stored.started_at
    assert resources["ts"].max() <= stored.finished_at

    def peak(metric: str) -> float:
        return resources.filter(resources["metric"] == metric)["value"].max()

    assert peak("proc_rss_bytes") >= 40 * MB
    # The worker does one CPU-second of work: the samples' CPU share integrated over their
    # intervals counts it (at least half of it: the first and last partial intervals may be
    # missed), on a quiet or a crowded machine alike.
    cpu = resources.filter(resources["metric"] == "proc_cpu_pct").sort("ts")
    seconds = cpu["ts"].diff().dt.total_microseconds().fill_null(0) / 1e6
    assert (cpu["value"] / 100 * seconds).sum() >= 0.5


# The test clock of the runs whose load test writes records of 2031-03-15 12:00:01.
RUN_AT = datetime(2031, 3, 15, 12, tzinfo=UTC)
# Writes a result file, a dependency's package.json and a file into the pipeline's home, all
# below the folder argv[1] (a project's root, the default --results of `run`).
PROJECT_TEST = """
import json, os, sys
root = sys.argv[1]
line = json.dumps({"ts": "2031-03-15T12:00:01Z", "endpoint": "/a", "latency_ms": 3})
for name in ("out/requests.ndjson", "node_modules/pkg/package.json", "home/objects/x.ndjson"):
    os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    with open(os.path.join(root, name), "w") as out:
        out.write(line + "\\n")
"""


def test_only_result_files_written_during_the_run_are_uploaded(tmp_path: Path, capsys) -> None:
    store = LocalObjectStore(root=str(tmp_path / "store"))
    project = tmp_path / "project"
    project.mkdir()
    old = project / "old.ndjson"  # left over from an earlier run in the same folder
    old.write_text('{"ts": "2026-11-01T00:00:00Z", "endpoint": "/a", "latency_ms": 1}\n')
    (project / ".venv" / "lib").mkdir(parents=True)
    (project / ".venv" / "lib" / "data.json").write_text("{}")

    code, _, keys = collect_run(
        store,
        [sys.executable, "-c", PROJECT_TEST, str(project)],
        now=lambda: RUN_AT,
        suite="checkout",
        scenario="smoke",
        environment="ci",
        run_id="project-1",
        results_dir=project,
        interval=30.0,
        skip=[project / "home"],
    )

    assert code == 0
    assert keys == ["raw/checkout/project-1/out/requests.ndjson", "raw/checkout/project-1/run.json"]
    assert f"{old} was not written during this run: not uploaded" in capsys.readouterr().err


# Writes five requests into the folder argv[1], then exits with the code argv[2].
FAILING_TEST = """
import json, os, sys
os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], "requests.ndjson"), "w") as out:
    for _ in range(5):
        ts = "2031-03-15T12:00:01Z"  # inside the run that RUN_AT dates
        out.write(json.dumps({"ts": ts, "endpoint": "/a", "latency_ms": 3}) + "\\n")
raise SystemExit(int(sys.argv[2]))
"""


def test_a_failed_command_with_results_is_uploaded_with_its_exit_code(
    tmp_path: Path, store, warehouse
) -> None:
    # k6 exits 99 when a threshold fails, Locust 1 when a request failed: those runs are the
    # ones a regression check must see. The exit code travels in the tag; the run is judged.
    results = tmp_path / "results"
    for run_id, exit_code in (("ok-1", "0"), ("failed-1", "99")):
        code, _, keys = collect_run(
            store,
            [sys.executable, "-c", FAILING_TEST, str(results), exit_code],
            now=lambda: RUN_AT,
            suite="checkout",
            scenario="smoke",
            environment="ci",
            run_id=run_id,
            results_dir=results,
            interval=30.0,
        )
        assert code == int(exit_code)
        assert keys == [f"raw/checkout/{run_id}/requests.ndjson", f"raw/checkout/{run_id}/run.json"]
        stored = RunManifest.parse(store.get_bytes(f"raw/checkout/{run_id}/run.json"))
        assert stored.tags["exit_code"] == exit_code
        report = ingest_from_store(store, warehouse, run_id)
        validate_run(warehouse, report.manifest, report.file_errors)
    assert warehouse.read("runs")["valid"].to_list() == [True, True]


def test_command_shorter_than_the_interval_uploads_no_empty_samples(tmp_path: Path) -> None:
    store = LocalObjectStore(root=str(tmp_path / "store"))
    results = tmp_path / "results"
    code, _, keys = collect_run(
        store,
        [sys.executable, "-c", FAILING_TEST, str(results), "0"],
        now=lambda: RUN_AT,
        suite="s",
        scenario="x",
        environment="e",
        run_id="quick",
        results_dir=results,
        interval=30.0,  # returns when the command ends, not after the interval
    )
    assert code == 0
    assert keys == ["raw/s/quick/requests.ndjson", "raw/s/quick/run.json"]  # no empty samples


@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_run_without_result_files_uploads_nothing(tmp_path: Path, exit_code: int) -> None:
    store = LocalObjectStore(root=str(tmp_path / "store"))
    command = [sys.executable, "-c", f"raise SystemExit({exit_code})"]
    run = {"suite": "s", "scenario": "x", "environment": "e", "interval": 0.1}
    missing = tmp_path / "never-created"
    with pytest.raises(NoResultsError, match="never-created does not exist after the command"):
        collect_run(store, command, results_dir=missing, **run)
    results = tmp_path / "results"
    results.mkdir()
    nothing = "no result file of a known format was written to"
    with pytest.raises(NoResultsError, match=nothing) as info:
        collect_run(store, command, results_dir=results, **run)
    assert info.value.exit_code == exit_code
    # A file of no known format is no result either.
    payload = '{"comment": 1}'
    notes = f"open({str(results / 'notes.json')!r}, 'w').write({payload!r})"
    command = [sys.executable, "-c", f"{notes}; raise SystemExit({exit_code})"]
    with pytest.raises(NoResultsError, match=nothing):
        collect_run(store, command, results_dir=results, **run)
    assert (results / "notes.json").read_text() == payload
    assert list(store.list()) == []


def test_the_results_folders_run_json_describes_the_run_but_what_was_measured(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(root=str(tmp_path / "store"))
    results = tmp_path / "results"
    described = RunManifest.parse(
        {
            "run_id": "checkout-42",
            "suite": "checkout",
            "scenario": "browse",
            "environment": "staging",
            "started_at": "2001-01-01T00:00:00Z",  # a template, dated long before any run
            "finished_at": "2001-01-01T00:10:00Z",
            "tool": "k6",
            "service_version": "1.4.5",
            "tags": {"trigger": "nightly", "exit_code": "9"},
            "load_profile": {"vus": 50, "duration_s": 123456},
        }
    )
    code, manifest, keys = collect_run(
        store,
        [sys.executable, "-c", FAILING_TEST, str(results), "0"],
        now=lambda: RUN_AT,
        suite="checkout",
        scenario="smoke",  # an option given replaces the run.json's field
        environment="staging",
        results_dir=results,
        interval=30.0,
        described=described,
    )

    assert code == 0
    assert manifest.tags["exit_code"] == "0"  # this run's, not the run.json's
    # A new run, not the template's run id (each run there would replace the one before).
    assert keys[-1] == f"raw/checkout/{manifest.run_id}/run.json"
    assert manifest.run_id.startswith("checkout-2") and manifest.run_id != "checkout-42"
    stored = RunManifest.parse(store.get_bytes(keys[-1]))
    assert (stored.run_id, stored.scenario, stored.tool, stored.service_version) == (
        manifest.run_id,
        "smoke",
        "k6",
        "1.4.5",
    )
    assert stored.tags == {
        "trigger": "nightly",
        "collector": "metrics-pipeline run",
        "exit_code": "0",
    }
    assert stored.load_profile.vus == 50
    # Measured: the start, the end and the duration of this run, not the run.json's.
    assert stored.started_at == manifest.started_at > described.finished_at
    assert stored.finished_at > stored.started_at
    assert stored.load_profile.duration_s == manifest.load_profile.duration_s != 123456


def test_missing_command_is_127_and_uploads_nothing(tmp_path: Path, capsys) -> None:
    store = LocalObjectStore(root=str(tmp_path / "store"))
    code, manifest, keys = collect_run(
        store,
        ["no-such-load-tool-xyz", "--vus", "10"],
        suite="checkout",
        scenario="smoke",
        environment="ci",
        results_dir=tmp_path,
        interval=0.1,
    )
    assert code == 127
    assert keys == []
    assert list(store.list()) == []
    assert manifest.tool == "no-such-load-tool-xyz"
    assert "no-such-load-tool-xyz: command not found" in capsys.readouterr().err


def test_bad_run_id_fails_before_the_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="run_id"):
        collect_run(
            LocalObjectStore(root=str(tmp_path / "store")),
            [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
            suite="checkout",
            scenario="smoke",
            environment="ci",
            run_id="../escape",
            results_dir=tmp_path,
        )
    assert not marker.exists()


# Exits 7 on the signal when it handles it; signals itself ready through the file argv[1].
SIGNAL_CHILD = """
import pathlib, signal, sys, time
if sys.argv[2] == "handled":
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(7))
pathlib.Path(sys.argv[1]).touch()
time.sleep(10)
"""


@pytest.mark.parametrize(
    ("sig", "mode", "expected"),
    [
        (signal.SIGTERM, "handled", 7),
        (signal.SIGINT, "handled", 7),
        (signal.SIGTERM, "default", 128 + signal.SIGTERM),  # shell convention
    ],
)
def test_signals_are_forwarded_to_the_command(
    tmp_path: Path, monkeypatch, sig: int, mode: str, expected: int
) -> None:
    # Run from a terminal, Ctrl-C reaches the child directly and is not forwarded; here the
    # signal goes to this process alone, as `kill -INT <pid>` would.
    monkeypatch.setattr(collector, "_terminal_delivers_sigint", lambda pid: False)
    ready = tmp_path / "ready"

    def signal_us_when_ready() -> None:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), sig)

    before = signal.getsignal(sig)
    threading.Thread(target=signal_us_when_ready, daemon=True).start()
    started = time.monotonic()
    code = run_and_collect(
        [sys.executable, "-c", SIGNAL_CHILD, str(ready), mode],
        interval=0.2,
        samples_path=tmp_path / SAMPLES_NAME,
    )
    assert code == expected
    assert time.monotonic() - started < 5
    assert signal.getsignal(sig) is before


def test_sample_is_canonical_resources_records() -> None:
    sampler = SystemSampler(psutil.Process(), host="bench-1")
    time.sleep(0.2)
    records = sampler.sample()

    values = {r["metric"]: r["value"] for r in records}
    assert {"cpu_pct", "mem_pct", "mem_used_bytes", "proc_rss_bytes", "proc_cpu_pct"} <= set(values)
    optional = set(collector.IO_RATES)
    assert set(values) - optional == {
        "cpu_pct",
        "mem_pct",
        "mem_used_bytes",
        "proc_rss_bytes",
        "proc_cpu_pct",
    }
    assert all(values[m] >= 0 for m in optional & set(values))
    for record in records:
        assert json.loads(json.dumps(record)) == record
        assert record["record"] == "resources"
        assert record["host"] == "bench-1"
        assert datetime.fromisoformat(record["ts"]).utcoffset().total_seconds() == 0
    assert values["proc_rss_bytes"] >= psutil.Process().memory_info().rss / 2
    assert 0 <= values["cpu_pct"] <= 100


def test_tree_usage_skips_processes_that_are_gone(monkeypatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = psutil.Process(child.pid)
    child.wait()  # reaped: every read of `gone` raises NoSuchProcess

    assert tree_usage(gone, {}) == (0, 0.0)

    me = psutil.Process()
    monkeypatch.setattr(me, "children", lambda recursive=False: [gone])
    known: dict = {}
    rss, _ = tree_usage(me, known)
    assert rss >= me.memory_info().rss / 2
    assert set(known) == {me.pid}
