"""Local receivers for alert notifications: an HTTP server that records what it got (and can
fail first, refuse some bodies, hang or drip its answer), and a minimal SMTP server. Both run
in a thread on 127.0.0.1.

Context managers rather than fixtures: a conftest.py here would shadow tests/conftest.py."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

# What the dripping receiver sends, one byte at a time: a complete, successful answer, so
# that only a total deadline (not a per-read timeout) stops the sender waiting for it.
DRIPPED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n\r\n" + b"k" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Recorder:
    """What the HTTP receiver got, and how it answers.

    ``mode``: ``ok`` answers 200 at once; ``hang`` takes the request (records it, as a receiver
    that processed it but answers too late) and never answers; ``drip`` records it, then sends
    a complete 200 answer one byte every ``drip_every`` seconds. ``reject``: bodies it answers
    400 to (recorded in ``refused`` only).
    """

    url: str
    bodies: list[dict] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)  # Idempotency-Key of each body
    failures_left: int = 0
    refused: int = 0
    mode: Literal["ok", "hang", "drip"] = "ok"
    drip_every: float = 2.0
    reject: Callable[[dict], bool] = lambda body: False

    def by_key(self) -> dict[str | None, list[dict]]:
        """The bodies received per idempotency key (a receiver that dedupes keeps one)."""
        received: dict[str | None, list[dict]] = {}
        for key, body in zip(self.keys, self.bodies, strict=True):
            received.setdefault(key, []).append(body)
        return received


@contextmanager
def http_receiver() -> Iterator[Recorder]:
    """Records every JSON body POSTed to it (and its ``Idempotency-Key``); answers 500 while
    ``failures_left`` > 0, 400 to what ``reject`` matches, else as ``mode`` says."""
    port = free_port()
    recorder = Recorder(url=f"http://127.0.0.1:{port}/hook")
    stop, received = threading.Event(), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rejected = recorder.reject(body)
            if rejected or recorder.failures_left > 0:
                if not rejected:
                    recorder.failures_left -= 1
                recorder.refused += 1
                self.send_response(400 if rejected else 500)
                self.end_headers()
                return
            with received:  # bodies and keys stay pairs when requests come in at once
                recorder.bodies.append(body)
                recorder.keys.append(self.headers["Idempotency-Key"])
            if recorder.mode == "hang":
                stop.wait()
                self.close_connection = True
                return
            if recorder.mode == "drip":
                self.drip()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def drip(self):
            self.close_connection = True
            for byte in DRIPPED:
                if stop.wait(recorder.drip_every):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                except OSError:  # the sender gave up and closed the connection
                    return

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_receiver() -> Iterator[tuple[int, list[str]]]:
    """Just enough SMTP (EHLO, MAIL, RCPT, DATA, QUIT) to accept mail; keeps the raw messages."""
    messages: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self):
            self.reply("220 localhost ready")
            while line := self.rfile.readline().decode():
                command = line.strip().upper()
                if command.startswith(("EHLO", "HELO")):
                    self.reply("250 localhost")
                elif command.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                    self.reply("250 OK")
                elif command == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    data = []
                    while (chunk := self.rfile.readline().decode()) not in {".\r\n", ""}:
                        data.append(chunk)
                    messages.append("".join(data))
                    self.reply("250 queued")
                elif command == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

    port = free_port()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, messages
    server.shutdown()
    server.server_close()


@contextmanager
def silent_receiver() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung SMTP server); yields it."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        server.close()
