"""Shared fixtures: isolated settings, a real S3-compatible server, and service policy.

Tests that need a server skip with a clear message when it cannot be started, unless
REQUIRE_SERVICES=1 (as in CI), where a missing service fails the run.
"""

from __future__ import annotations

import os

# Small statsmodels/scipy fits spend most of their time in OpenBLAS thread hand-offs on a busy
# 2-core machine; one thread is 15-50x faster there. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import servers

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


def pytest_collection_modifyitems(items):
    """Hand out first the files marked ``start_first``, then the rest by number of tests.

    xdist gives whole files (``--dist loadfile``) to whichever worker is free, by default the
    files with the most tests first; the clock-ahead test, one test of about three minutes,
    went out last and kept the run waiting while the other worker idled. Started first, it
    runs beside the short files (simulated on the file times of one run: 666 s instead of
    746 s; measured: 741 s against 755 s, the rest being contention). Starting every slow
    file first was slower (795 s): the heavy files ran side by side and slowed each other
    (their test time summed 1551 s against 1331 s). The Makefile's
    ``--no-loadscope-reorder`` keeps this order.
    """
    tests_in = Counter(item.path for item in items)
    first = {item.path for item in items if item.get_closest_marker("start_first")}
    items.sort(key=lambda item: (item.path not in first, -tests_in[item.path]))


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
    with available(servers.moto_server(tmp_path_factory.mktemp("moto"))) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster from the machine's binaries, on loopback."""
    with available(servers.postgres_cluster()) as url:
        yield url


@contextmanager
def available(server):
    """Enter ``server`` (a context manager of tests/servers.py); a server that cannot start is
    a skip, or a failure under REQUIRE_SERVICES=1."""
    try:
        value = server.__enter__()
    except servers.Unavailable as exc:
        service_unavailable(str(exc))
    try:
        yield value
    finally:
        server.__exit__(None, None, None)
