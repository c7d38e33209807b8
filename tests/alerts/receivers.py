"""Local receivers for alert notifications: an HTTP server that records what it got (and can
fail first), and a minimal SMTP server. Both run in a thread on 127.0.0.1.

Context managers rather than fixtures: a conftest.py here would shadow tests/conftest.py."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Recorder:
    url: str
    bodies: list[dict] = field(default_factory=list)
    failures_left: int = 0
    refused: int = 0


@contextmanager
def http_receiver() -> Iterator[Recorder]:
    """Records every JSON body POSTed to it; answers 500 while ``failures_left`` > 0."""
    port = free_port()
    recorder = Recorder(url=f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if recorder.failures_left > 0:
                recorder.failures_left -= 1
                recorder.refused += 1
                self.send_response(500)
                self.end_headers()
                return
            recorder.bodies.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
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
