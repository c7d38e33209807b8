"""Run a load-test command, sample system metrics meanwhile, upload everything as one run.

The library behind ``metrics-pipeline run ... -- CMD ...`` for teams without an upload step.

Samples are our canonical JSON lines (``formats/canonical_jsonl.py``), one ``resources`` record
per metric and sample, all with the same ``ts`` and ``host``::

    {"record": "resources", "ts": "2026-11-03T10:00:01.500000+00:00", "host": "ci-7",
     "metric": "cpu_pct", "value": 12.5}

    metric            value (each sample covers the time since the previous one)
    cpu_pct           whole machine, % of all CPUs (0-100)
    mem_pct           virtual_memory().percent
    mem_used_bytes    virtual_memory().used
    disk_read_bytes   bytes PER SECOND over the time since the previous sample, machine-wide
    disk_write_bytes  (the names stay those of psutil's counters; a rate keeps runs with
    net_bytes_sent    different --interval comparable). Absent where the machine has no such
    net_bytes_recv    counters (some containers have no disks).
    proc_rss_bytes    summed RSS of the command and all its descendants (shared pages of forked
                      workers count once per process, like ``ps``)
    proc_cpu_pct      CPU of that tree; 100 = one core busy, so it can exceed 100 (like ``top``)

The first sample is taken one interval after the command starts (a CPU % over a few
milliseconds is noise), so a command shorter than the interval has no samples.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from metrics_pipeline.common.clock import Clock, system_now
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.manifest import EXIT_CODE_TAG, RunManifest, default_run_id
from metrics_pipeline.formats import known_format, result_files
from metrics_pipeline.storage.objects import ObjectStore
from metrics_pipeline.upload.uploader import upload_run

SAMPLES_NAME = "system-samples.jsonl"
COLLECTOR_TAG = "metrics-pipeline run"
EXIT_NOT_FOUND = 127  # the shell's codes for a command it cannot find / cannot execute
EXIT_NOT_EXECUTABLE = 126


class NoResultsError(MetricsPipelineError):
    """The command ran but nothing was uploaded: it left no result file (its results folder is
    missing, or nothing was written there during the run), or the upload failed (the store
    unreachable, the bucket missing). ``exit_code`` is the command's."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class _Reading:
    """Cumulative counters at one moment; disk/net are None where the machine has none."""

    at: float  # time.monotonic()
    disk: Any
    net: Any


def _read_counters() -> _Reading:
    return _Reading(time.monotonic(), psutil.disk_io_counters(), psutil.net_io_counters())


IO_RATES = {
    "disk_read_bytes": ("disk", "read_bytes"),
    "disk_write_bytes": ("disk", "write_bytes"),
    "net_bytes_sent": ("net", "bytes_sent"),
    "net_bytes_recv": ("net", "bytes_recv"),
}


def _rates(previous: _Reading, current: _Reading) -> dict[str, float]:
    """Bytes per second between two readings, for the counters both have."""
    elapsed = current.at - previous.at
    rates = {}
    for metric, (group, field) in IO_RATES.items():
        before, after = getattr(previous, group), getattr(current, group)
        if before is None or after is None or elapsed <= 0:
            continue
        # A counter that went backwards was reset (e.g. a NIC removed): no honest value.
        delta = getattr(after, field) - getattr(before, field)
        if delta >= 0:
            rates[metric] = delta / elapsed
    return rates


def tree_usage(
    root: psutil.Process, known: dict[int, tuple[psutil.Process, float]]
) -> tuple[int, float]:
    """(summed RSS bytes, CPU seconds used since the previous call) of ``root``'s tree.

    ``known`` maps pid -> (process, its CPU seconds at the previous call) and is updated; start
    with a call whose CPU figure is discarded. A process not seen by the previous call was
    created since (a process cannot join the tree otherwise; rarely, it was unreadable then), so
    all its CPU time counts: a worker forked at start is not lost. Creation times cannot decide
    this: psutil derives them from a boot time rounded to the second. A process that ends
    between two calls loses its CPU time since the previous call; processes that exit, or
    become unreadable, between listing and reading are skipped, never fatal.
    """
    try:
        processes = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        processes = [root]  # the root itself is read (or skipped) below
    rss, cpu = 0, 0.0
    seen = {}
    for process in processes:
        before = 0.0
        cached = known.get(process.pid)
        # is_running() also compares creation times: a reused pid is a new process.
        if cached is not None and cached[0].is_running():
            process, before = cached
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                times = process.cpu_times()
                used = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu += max(0.0, used - before)
        seen[process.pid] = (process, used)
    known.clear()
    known.update(seen)
    return rss, cpu


class SystemSampler:
    """Takes samples of the machine and, optionally, of one process tree (see module doc).

    Every sample covers the time since the previous one, the first the time since the sampler
    was created (so create it when the measured period starts).
    """

    def __init__(self, process: psutil.Process | None = None, host: str | None = None) -> None:
        self.process = process
        self.host = host or socket.gethostname()
        self._known: dict[int, tuple[psutil.Process, float]] = {}
        psutil.cpu_percent(interval=None)  # its first call only starts the measurement
        self._previous = _read_counters()
        if process is not None:
            tree_usage(process, self._known)

    def sample(self) -> list[dict[str, Any]]:
        """One sample: a list of canonical ``resources`` records (JSON-able dicts)."""
        ts = datetime.now(UTC).isoformat()
        memory = psutil.virtual_memory()
        current = _read_counters()
        values: dict[str, float] = {
            "cpu_pct": psutil.cpu_percent(interval=None),
            "mem_pct": memory.percent,
            "mem_used_bytes": memory.used,
            **_rates(self._previous, current),
        }
        if self.process is not None:
            rss, cpu_seconds = tree_usage(self.process, self._known)
            elapsed = current.at - self._previous.at
            values["proc_rss_bytes"] = rss
            values["proc_cpu_pct"] = 100.0 * cpu_seconds / elapsed if elapsed > 0 else 0.0
        self._previous = current
        return [
            {"record": "resources", "ts": ts, "host": self.host, "metric": m, "value": v}
            for m, v in values.items()
        ]


def _terminal_delivers_sigint(pid: int) -> bool:
    """Whether Ctrl-C on our terminal already reached the child: it does when the child is in
    our process group and that group is the terminal's foreground group. Forwarding it then
    would make the tool see two interrupts, which k6 and Locust take as "quit now, skip the
    summary" (uv settled on the same rule for ``uv run``)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False  # no controlling terminal: the signal was sent to us alone
    try:
        return os.tcgetpgrp(fd) == os.getpgrp() == os.getpgid(pid)
    except OSError:
        return False
    finally:
        os.close(fd)


def _forward_signals(proc: subprocess.Popen) -> dict[int, Any]:
    """Pass SIGINT/SIGTERM on to the child (which then ends and reports its own exit code);
    we keep running so that what was measured is still uploaded. Returns the old handlers."""

    def forward(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and _terminal_delivers_sigint(proc.pid):
            return
        proc.send_signal(signum)  # a no-op once the child has been reaped

    # Handlers can only be installed from the main thread; elsewhere the caller handles them.
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}


def run_and_collect(command: list[str], *, interval: float, samples_path: Path) -> int:
    """Run ``command`` (no shell), sampling every ``interval`` s into ``samples_path`` (JSONL).

    Returns the command's exit code, shell style: 128 + N when a signal N ended it, 127 when it
    was not found, 126 when it cannot be executed (with a message on stderr, and then
    ``samples_path`` is not created: its existence means the command ran).
    """
    if not command:
        raise ValueError("no command to run")
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    try:
        proc = subprocess.Popen(command)
    except (FileNotFoundError, NotADirectoryError):
        print(f"metrics-pipeline run: {command[0]}: command not found", file=sys.stderr)
        return EXIT_NOT_FOUND
    except PermissionError as exc:
        print(f"metrics-pipeline run: {command[0]}: {exc.strerror}", file=sys.stderr)
        return EXIT_NOT_EXECUTABLE
    previous_handlers = _forward_signals(proc)
    try:
        try:
            sampler = SystemSampler(psutil.Process(proc.pid))
        except psutil.NoSuchProcess:  # already gone: the machine-wide metrics remain
            sampler = SystemSampler()
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        with samples_path.open("w", encoding="utf-8") as out:
            # Sample on a fixed schedule (start + k * interval) so the time spent sampling does
            # not make the samples drift; wait() returns as soon as the command ends.
            start = time.monotonic()
            ticks = 0
            sampling = True
            while True:
                ticks += 1
                try:
                    proc.wait(timeout=max(0.0, start + ticks * interval - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if not sampling:
                    continue
                try:
                    out.writelines(json.dumps(r) + "\n" for r in sampler.sample())
                    out.flush()  # a crash of ours keeps everything sampled so far
                except Exception as exc:  # failed monitoring (disk full...) is no failed test
                    print(f"metrics-pipeline run: sampling stopped: {exc!r}", file=sys.stderr)
                    sampling = False
        code = proc.wait()
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # we failed: do not leave the load test running unattended
            proc.kill()
            proc.wait()
    return code if code >= 0 else 128 - code


def collect_run(
    store: ObjectStore,
    command: list[str],
    *,
    suite: str,
    scenario: str,
    environment: str,
    run_id: str | None = None,
    results_dir: Path,
    interval: float = 1.0,
    skip: Iterable[Path] = (),
    described: RunManifest | None = None,
    now: Clock = system_now,
) -> tuple[int, RunManifest, list[str]]:
    """Run ``command`` with sampling, then upload its result files, the samples and the
    manifest (last) as one run. Returns (exit code, manifest, uploaded keys).

    The result files are those below ``results_dir`` (not in hidden or tool folders, nor in
    ``skip``: see ``formats.result_files``) written during the run: new, or changed (size,
    modification time or inode) since a look at the folder just before the command started; a
    file left as it was is left out, with a warning naming it. (No clock decides it: a file
    system's timestamps may be coarse, or its clock another's.) ``now`` dates the run.

    The run is uploaded whatever the exit code, with it in the ``exit_code`` tag: a failed
    load test is data too (k6 exits 99 when a threshold fails, Locust 1 when a request
    failed: just the runs a regression check must see). Only a command that never started
    (127/126) uploads nothing, as nothing was measured; a command that died before writing
    its files leaves no result file written during the run (below). The manifest is validated
    before the command runs, so a bad suite or run id costs no load test (ManifestError). A
    run without a result file (``results_dir`` missing after the command, or nothing written
    there during the run) is not uploaded: NoResultsError, as our samples alone are no load
    test's data.

    ``described`` is the run.json of the results folder: its fields are kept where the
    arguments give none (the tool, which is else the command's name; not its run id) and what is
    measured (start, end, duration, the tags ``collector`` and ``exit_code``) replaces them.
    """
    results_dir = Path(results_dir)
    started_at = now()
    kept = described.described() if described else {}
    # The exit code is this run's, known once the command ends.
    tags = {k: v for k, v in kept.get("tags", {}).items() if k != EXIT_CODE_TAG}
    base = kept | {
        # Every run of a command is a new run: a run.json in the results folder describes the
        # runs made there, and its run id would make each replace the one before; a random
        # part keeps the ids of runs started in the same second apart.
        "run_id": run_id or default_run_id(suite, started_at, secrets.token_hex(8)),
        "suite": suite,
        "scenario": scenario,
        "environment": environment,
        "started_at": started_at,
        "tool": kept.get("tool") or (Path(command[0]).name if command else "")[:64] or "custom",
        "tags": tags | {"collector": COLLECTOR_TAG},
    }
    base.pop("finished_at", None)  # measured below
    manifest = RunManifest.parse(base)
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metrics-pipeline-run-") as tmp:
        # Beside, not inside, the results folder: that one belongs to the tool.
        samples = Path(tmp) / SAMPLES_NAME
        before = _stamps(results_dir, skip)
        code = run_and_collect(command, interval=interval, samples_path=samples)
        elapsed = time.monotonic() - clock
        if not samples.exists():
            return code, manifest, []
        manifest = RunManifest.parse(
            base
            | {
                "finished_at": started_at + timedelta(seconds=elapsed),
                "load_profile": kept.get("load_profile", {}) | {"duration_s": round(elapsed, 3)},
                "tags": base["tags"] | {EXIT_CODE_TAG: str(code)},
            }
        )
        if not results_dir.is_dir():
            problem = "is not a folder" if results_dir.exists() else "does not exist"
            raise NoResultsError(
                f"results folder {results_dir} {problem} after the command: nothing uploaded "
                "(--results names the folder the tool writes its files to)",
                code,
            )
        files = _written_during(result_files(results_dir, skip), before)
        if not any(known_format(file) for file in files):
            raise NoResultsError(
                f"no result file of a known format was written to {results_dir} during the "
                "run: nothing uploaded",
                code,
            )
        if samples.stat().st_size:  # an empty file would only be reported as unreadable
            files.append(samples)
        try:
            keys = upload_run(store, files, manifest, root=results_dir)
        except Exception as exc:  # the store's (botocore's) own errors: said, with the code
            raise NoResultsError(
                f"the upload of run {manifest.run_id} failed: {exc}: nothing uploaded", code
            ) from exc
    return code, manifest, keys


def _stamps(folder: Path, skip: Iterable[Path]) -> dict[Path, tuple[int, int, int]]:
    """Size, modification time (ns) and inode of each result file below ``folder`` (none
    when it does not exist yet)."""
    if not folder.is_dir():
        return {}
    stamps = {}
    for file in result_files(folder, skip):
        stat = file.stat()
        stamps[file] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return stamps


def _written_during(files: list[Path], before: dict[Path, tuple[int, int, int]]) -> list[Path]:
    """The files that are new or changed since ``before`` (see :func:`_stamps`); a warning for
    each other one (left over from an earlier run in a reused folder, or a project's own
    file), and for a tool file that our samples would overwrite."""
    written = []
    for file in files:
        if file.name == SAMPLES_NAME:
            print(
                f"metrics-pipeline run: warning: {file} has the name of our system samples: "
                "only the samples are kept",
                file=sys.stderr,
            )
        stat = file.stat()
        if before.get(file) == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
            print(
                f"metrics-pipeline run: warning: {file} was not written during this run: "
                "not uploaded",
                file=sys.stderr,
            )
        else:
            written.append(file)
    return written
