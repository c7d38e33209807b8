"""Locks that span hosts: two warehouses in folders of their own (two hosts) that share one
Postgres take turns on a lock, and a worker that dies holding one releases it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
from servers import new_database

from metrics_pipeline.storage import PostgresWarehouse, Warehouse


def waiting_for_advisory_locks(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and not granted"
        ).fetchone()[0]


def until(predicate, what: str, timeout: float = 120.0) -> None:
    # A bound on a hang, not a timing claim: the condition is a state of the server.
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_hosts_take_turns_and_a_dead_worker_releases_its_lock(postgres_url, tmp_path):
    url = new_database(postgres_url)
    host_a = Warehouse(tmp_path / "host-a", PostgresWarehouse(url))
    host_b = Warehouse(tmp_path / "host-b", PostgresWarehouse(url))
    order: list[str] = []

    def second() -> None:
        with host_b.lock("alerts"):
            order.append("b")

    with host_a.lock("alerts"):
        order.append("a in")
        other = threading.Thread(target=second)
        other.start()
        # host B's folder has no lock file in common with A's: it waits on the server.
        until(lambda: waiting_for_advisory_locks(url) == 1, "host B to wait for the lock")
        # Another name does not wait.
        with host_b.lock("run=r1"):
            order.append("b other")
        order.append("a out")
    other.join(120)
    assert order == ["a in", "b other", "a out", "b"]

    # A worker killed while it holds the lock: its session ends, the lock goes with it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from metrics_pipeline.storage import PostgresWarehouse, Warehouse\n"
            f"w = Warehouse({str(tmp_path / 'host-c')!r}, PostgresWarehouse({url!r}))\n"
            "with w.lock('alerts'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        acquired = threading.Event()

        def take() -> None:
            with host_a.lock("alerts"):
                acquired.set()

        waiter = threading.Thread(target=take)
        waiter.start()
        until(lambda: waiting_for_advisory_locks(url) == 1, "host A to wait for the dead worker")
        assert not acquired.is_set()
        holder.kill()
        waiter.join(120)
        assert acquired.is_set()
    finally:
        holder.kill()
        holder.wait()
