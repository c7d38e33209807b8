"""A small HTTP service with known latencies and one optional injected change (stdlib only).

Endpoints (median latency; every request sleeps a log-normal time around it, sigma 0.25):

    GET  /health     1.5 ms   (sub-2 ms: exercises whole-millisecond tools, JMeter/Artillery)
    GET  /items     15 ms
    GET  /search    40 ms
    POST /checkout  25 ms     (GET is accepted too)

``--change`` injects exactly one known change:

    none       nothing
    errors     /checkout answers HTTP 500 on 10 % of requests (latency unchanged)
    slow_tail  /search: 10 % of requests take +150 ms (p95/p99 worse, p50 about the same)
    faster     /items 40 % faster on every request (median 9 ms)
    small      every endpoint +8 % latency (below a 20 % threshold: not a regression)
    slower     /items +50 % latency on every request (median 22.5 ms)

Each process draws its own random seed (printed, or fixed with ``--seed``), so two runs of the
same change differ the way real runs do. ``GET /__info`` returns the change and the seed
(not meant to be load-tested).

    python server.py --port 18090 --change slow_tail
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGMA = 0.25
MEDIANS_MS = {"/health": 1.5, "/items": 15.0, "/search": 40.0, "/checkout": 25.0}
METHODS = {
    "/health": ("GET",),
    "/items": ("GET",),
    "/search": ("GET",),
    "/checkout": ("POST", "GET"),
}
CHANGES = ("none", "errors", "slow_tail", "faster", "small", "slower")
ERROR_SHARE = 0.10  # errors: share of /checkout answered with 500
TAIL_SHARE = 0.10  # slow_tail: share of /search requests that are slow
TAIL_EXTRA_MS = 150.0
FASTER_FACTOR = 0.60  # faster: /items takes 60 % of its time (40 % faster)
SMALL_FACTOR = 1.08  # small: every endpoint +8 %
SLOWER_FACTOR = 1.50  # slower: /items +50 %

BODIES = {
    "/health": {"status": "ok"},
    "/items": {"items": [{"id": i, "name": f"item-{i}", "price": 3 + i} for i in range(12)]},
    "/search": {
        "query": "widget",
        "hits": [{"id": i, "score": round(1 / (i + 1), 3)} for i in range(8)],
    },
    "/checkout": {"order": "accepted"},
}


class Behaviour:
    """Draws each request's latency and outcome for one change; thread-safe."""

    def __init__(self, change: str, seed: int):
        self.change = change
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, path: str) -> tuple[float, int]:
        """(seconds to sleep, HTTP status) for one request to ``path``."""
        with self._lock:
            ms = MEDIANS_MS[path] * math.exp(self._rng.gauss(0.0, SIGMA))
            coin = self._rng.random()
        status = 200
        change = self.change
        if change == "errors" and path == "/checkout" and coin < ERROR_SHARE:
            status = 500
        elif change == "slow_tail" and path == "/search" and coin < TAIL_SHARE:
            ms += TAIL_EXTRA_MS
        elif change == "faster" and path == "/items":
            ms *= FASTER_FACTOR
        elif change == "small":
            ms *= SMALL_FACTOR
        elif change == "slower" and path == "/items":
            ms *= SLOWER_FACTOR
        return ms / 1000.0, status


class Handler(BaseHTTPRequestHandler):
    server_version = "RealRunsServer/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, as the load tools expect
    # Headers and body are two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers (~40 ms on Linux). Real servers set TCP_NODELAY too.
    disable_nagle_algorithm = True

    def _serve(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drain the request body (keep-alive)
        behaviour: Behaviour = self.server.behaviour  # type: ignore[attr-defined]
        if path == "/__info":
            self._reply(
                200, {"change": behaviour.change, "seed": behaviour.seed, "pid": os.getpid()}
            )
            return
        if path not in MEDIANS_MS:
            self._reply(404, {"error": "not found"})
            return
        if method not in METHODS[path]:
            self._reply(405, {"error": "method not allowed"})
            return
        seconds, status = behaviour.draw(path)
        time.sleep(seconds)
        if status == 500:
            self._reply(500, {"error": "injected failure"})
        else:
            self._reply(status, BODIES[path])

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args) -> None:
        pass  # no access log: it would cost CPU and say nothing the tools do not


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--change", choices=CHANGES, default="none")
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh random seed")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this test server only listens on the loopback interface")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    server = Server((args.host, args.port), Handler)
    server.behaviour = Behaviour(args.change, seed)  # type: ignore[attr-defined]
    print(
        json.dumps(
            {
                "listening": f"http://{args.host}:{server.server_address[1]}",
                "change": args.change,
                "seed": seed,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
