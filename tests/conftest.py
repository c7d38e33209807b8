"""Shared fixtures: isolated settings, a real S3-compatible server, and service policy.

Tests that need a server skip with a clear message when it cannot be started, unless
REQUIRE_SERVICES=1 (as in CI), where a missing service fails the run.
"""

from __future__ import annotations

import os

# Small statsmodels/scipy fits spend most of their time in OpenBLAS thread hand-offs on a busy
# 2-core machine; one thread is 15-50x faster there. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest

from metrics_pipeline.evaluation.demo_data import DemoRun, demo_runs
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import LocalObjectStore
from metrics_pipeline.upload.uploader import upload_run

# Real files written by the load-test tools (tests/fixtures/loadtest/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "loadtest"


def service_unavailable(message: str):
    """Skip on a laptop without the service; fail when CI requires every service."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {message}", pytrace=False)
    pytest.skip(f"service unavailable: {message}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches for the network on its own (the machine may have none).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium():
    """Debian's headless Chromium driven by playwright (a browser, closed on exit)."""
    if not CHROMIUM.exists():
        service_unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def upload_demo_runs(store, folder: Path, count: int = 3, **kwargs) -> list[DemoRun]:
    """Upload ``count`` short generated runs; the last has /api/orders 60 % slower."""
    runs = demo_runs(count, duration_s=kwargs.pop("duration_s", 20.0), **kwargs)
    for run in runs:
        upload_run(store, [run.write(folder) / "requests.ndjson"], run.manifest)
    return runs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A project that pins nothing yet has an empty baseline file (a missing one that is
    # configured is an error: retention would unpin its runs).
    baselines = tmp_path / "baselines.yaml"
    baselines.write_text("baselines: []\n")
    return Settings(home=tmp_path / "home", baselines_file=baselines)


@pytest.fixture
def store(settings: Settings) -> LocalObjectStore:
    return LocalObjectStore(root=str(settings.local_store_root))


@pytest.fixture
def warehouse(settings: Settings) -> Warehouse:
    return Warehouse(settings.warehouse_root)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """An S3-compatible server (moto's) as a separate process on loopback."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        service_unavailable("moto_server is not installed (uv sync installs it)")
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urlopen(endpoint, timeout=1).close()
            break
        except HTTPError:  # it answered: up
            break
        except URLError:
            if proc.poll() is not None:
                service_unavailable(f"moto_server exited with {proc.returncode}")
            time.sleep(0.2)
        except OSError:
            time.sleep(0.2)
    else:
        proc.terminate()
        service_unavailable("moto_server did not answer within 30 s")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def new_database(postgres_url: str) -> str:
    """The URL of a new, empty database in the cluster of ``postgres_url`` (for code that uses
    the default ``metrics`` schema)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"create database {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def _postgres_bindir() -> Path | None:
    config = shutil.which("pg_config")
    if config:
        bindir = Path(
            subprocess.run([config, "--bindir"], capture_output=True, text=True).stdout.strip()
        )
        if (bindir / "initdb").exists():
            return bindir
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster from the machine's binaries, on loopback."""
    bindir = _postgres_bindir()
    if bindir is None:
        service_unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="metrics-pg-"))
    if as_user:
        shutil.chown(data, "postgres")
    port = free_port()
    init = subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        capture_output=True,
        text=True,
    )
    if init.returncode:
        service_unavailable(f"initdb failed: {init.stderr[-500:]}")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-o",
            options,
            "-l",
            str(data / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        capture_output=True,
        text=True,
    )
    if start.returncode:
        service_unavailable(f"PostgreSQL did not start: {start.stderr[-500:]}")
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
        capture_output=True,
    )
    shutil.rmtree(data, ignore_errors=True)
