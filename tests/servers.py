"""Throwaway servers on loopback, started from the machine's programs: a PostgreSQL cluster and
moto's S3-compatible server. The test fixtures (``conftest.py``) and the benchmarks that need a
deployment's services (``bench/scale_bench.py``) start them the same way.

Each raises :class:`Unavailable` with what is missing when it cannot start; the fixtures turn
that into a skip, or a failure under ``REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen


class Unavailable(RuntimeError):
    """A server could not be started; the message says what is missing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server(log_folder: Path) -> Iterator[str]:
    """The S3-compatible server of moto, a separate process; yields its endpoint URL."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        raise Unavailable("moto_server is not installed (uv sync installs it)")
    port = free_port()
    with (log_folder / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            endpoint = f"http://127.0.0.1:{port}"
            _wait_for_http(endpoint, proc)
            yield endpoint
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _wait_for_http(endpoint: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urlopen(endpoint, timeout=1).close()
            return
        except HTTPError:  # it answered: up
            return
        except URLError:
            if proc.poll() is not None:
                raise Unavailable(f"moto_server exited with {proc.returncode}") from None
            time.sleep(0.2)
        except OSError:
            time.sleep(0.2)
    raise Unavailable("moto_server did not answer within 30 s")


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster from the machine's binaries (trust auth, fsync off);
    yields the URL of its ``postgres`` database."""
    bindir = _postgres_bindir()
    if bindir is None:
        raise Unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="metrics-pg-"))
    if as_user:
        shutil.chown(data, "postgres")
    port = free_port()
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db")]
    try:
        init = subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(data / "db"),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            capture_output=True,
            text=True,
        )
        if init.returncode:
            raise Unavailable(f"initdb failed: {init.stderr[-500:]}")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = subprocess.run(
            [*pg_ctl, "-o", options, "-l", str(data / "log"), "-w", "-t", "60", "start"],
            capture_output=True,
            text=True,
        )
        if start.returncode:
            raise Unavailable(f"PostgreSQL did not start: {start.stderr[-500:]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


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
