"""Locust scenario for bench/real_runs: a fixed arrival rate over four endpoints.

Users are ``FastHttpUser`` (geventhttpclient): on this 2-core machine the default ``HttpUser``
(requests) added 10-12 ms of client time to every request, and more when other work ran, which
hid a 15 -> 22 ms change; FastHttpUser adds 3-4 ms.

Every user sends one request per second (``constant_throughput(1)``, after a random start
offset below 1 s), so ``--users 50`` gives about 50 requests/s whatever the latency. Endpoint
mix by task weight: /health 20 %, /items 35 %, /search 25 %, POST /checkout 20 %. Requests are
named by their path, so Locust reports the same endpoint names in every run.

Besides Locust's own ``--csv``/``--json-file`` output, every request is written as one JSON
line (the ``request`` event hook) to the file named by $REQUESTS_NDJSON.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime

import gevent
from locust import FastHttpUser, constant_throughput, events, task

_out = None


@events.test_start.add_listener
def _open(environment, **_kwargs):
    global _out
    path = os.environ.get("REQUESTS_NDJSON")
    if path:
        _out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed at test_stop)


@events.test_stop.add_listener
def _close(environment, **_kwargs):
    global _out
    if _out is not None:
        _out.close()
        _out = None


@events.request.add_listener
def _log(
    request_type,
    name,
    response_time,
    response_length,
    response=None,
    context=None,
    exception=None,
    start_time=None,
    url=None,
    **_kwargs,
):
    if _out is None:
        return
    status = getattr(response, "status_code", None)
    runner = getattr(_log, "runner", None)
    line = {
        "timestamp": start_time,
        "time": datetime.fromtimestamp(start_time, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
        "name": name,
        "method": request_type,
        "url": url,
        "response_time": round(response_time, 3),
        "response_length": response_length,
        "status": status,
        "exception": None if exception is None else str(exception),
        "user_count": runner.user_count if runner is not None else None,
    }
    _out.write(json.dumps(line, separators=(",", ":")) + "\n")


@events.init.add_listener
def _remember_runner(environment, **_kwargs):
    _log.runner = environment.runner


class Shopper(FastHttpUser):
    wait_time = constant_throughput(1)

    def on_start(self):
        # Users spawned together would fire in step, 50 requests at each full second: a random
        # offset spreads them over the second, like independent arrivals.
        gevent.sleep(random.random())

    @task(20)
    def health(self):
        self.client.get("/health", name="/health")

    @task(35)
    def items(self):
        self.client.get("/items", name="/items")

    @task(25)
    def search(self):
        self.client.get("/search?q=widget", name="/search")

    @task(20)
    def checkout(self):
        self.client.post("/checkout", json={"item": 3, "qty": 1}, name="/checkout")
