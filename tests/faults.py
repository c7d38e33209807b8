"""Fault injection into real connections: a TCP proxy on loopback in front of a real server
(PostgreSQL, the S3-compatible server) that a test cuts, at once or after some bytes."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; counts the bytes each way.

    ``cut()`` closes every connection and refuses new ones (the server seems gone) until
    ``restore()``; ``cut_after(up=..., down=...)`` cuts once that many more bytes went to the
    server (``up``) or came from it (``down``), i.e. in the middle of a transfer;
    ``cut_at(direction, pattern, nth, keep)`` cuts at the ``nth`` next occurrence of a message
    (``pattern``), forwarding only its first ``keep`` bytes. A cut at a message does not move
    when the traffic before it does by a few bytes, a cut at a byte count does.
    ``matches(direction, pattern)`` counts a message's occurrences so far.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = {"up": 0, "down": 0}
        self._limits: dict[str, int] = {}
        self._watched: dict[str, bytes] = {}  # direction -> the message counted
        self._matched = {"up": 0, "down": 0}
        self._match_limits: dict[str, tuple[int, int]] = {}  # direction -> (count, keep)
        self._cut = False
        self._blip = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            self._limits = {}
            self._match_limits = {}

    def cut_after(
        self, up: int | None = None, down: int | None = None, *, then_restore: bool = False
    ) -> None:
        """Cut once ``up``/``down`` more bytes passed; with ``then_restore`` only the open
        connections are cut and new ones go through (a blip, as a failover gives)."""
        with self._lock:
            self._limits = {
                d: self.sent[d] + n for d, n in (("up", up), ("down", down)) if n is not None
            }
            self._blip = then_restore

    def matches(self, direction: str, pattern: bytes) -> int:
        """Occurrences of ``pattern`` in ``direction`` since it was first asked for (the first
        call starts the count and returns 0)."""
        with self._lock:
            return self._watch(direction, pattern)

    def cut_at(self, direction: str, pattern: bytes, nth: int, keep: int = 0) -> None:
        """Cut at the ``nth`` (>= 1) next occurrence of ``pattern`` in ``direction``, after
        only its first ``keep`` bytes went through (at least the bytes of it that an earlier
        read already forwarded, when the occurrence straddles two reads)."""
        if nth < 1:
            raise ValueError(f"nth must be at least 1, got {nth}")
        with self._lock:
            self._match_limits[direction] = (self._watch(direction, pattern) + nth, keep)

    def _watch(self, direction: str, pattern: bytes) -> int:
        """(Under the lock.) Count ``pattern`` in ``direction`` from now on unless it is
        counted already; its count so far."""
        if self._watched.get(direction) != pattern:
            self._watched[direction] = pattern
            self._matched[direction] = 0
        return self._matched[direction]

    @property
    def is_cut(self) -> bool:
        return self._cut

    def close(self) -> None:
        self.cut()
        _close(self.listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._cut:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, direction: str) -> None:
        tail = b""  # this connection's last bytes: a message may straddle two reads
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self._lock:
                forward, cut = len(data), False
                limit = self._limits.get(direction)
                if limit is not None and self.sent[direction] + len(data) >= limit:
                    forward, cut = max(0, limit - self.sent[direction]), True
                if pattern := self._watched.get(direction):
                    window, start = tail + data, 0
                    while (at := window.find(pattern, start)) >= 0:
                        self._matched[direction] += 1
                        count, keep = self._match_limits.get(direction, (0, 0))
                        if self._matched[direction] == count:
                            forward, cut = min(forward, max(0, at - len(tail) + keep)), True
                            break
                        start = at + 1
                    tail = window[len(window) - len(pattern) + 1 :]
                data = data[:forward]
                self.sent[direction] += len(data)
            try:
                target.sendall(data)
            except OSError:
                break
            if cut:
                self.cut()
                if self._blip:
                    self.restore()
                return
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def through(url: str, proxy: TcpProxy) -> str:
    """``url`` (a libpq or HTTP URL on loopback) with ``proxy``'s port instead of its own."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl()


class HttpProxy:
    """An HTTP proxy on loopback in front of a real server (the S3-compatible one) that a test
    arms to lose the answer of one request: the request reaches the server, which acts on it,
    and the connection is closed before the client reads a byte of the answer (a timeout or a
    reset on the way back). Clients resend such a request (botocore does)."""

    def __init__(self, upstream: str):
        import http.client
        import http.server

        parts = urlsplit(upstream)
        proxy = self
        self.lose: tuple[str, str] | None = None  # (method, a part of the path)
        self.lost: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream_connection = http.client.HTTPConnection(parts.hostname, parts.port)
                upstream_connection.request(self.command, self.path, body, dict(self.headers))
                answer = upstream_connection.getresponse()
                payload = answer.read()
                upstream_connection.close()
                armed = proxy.lose
                if armed and self.command == armed[0] and armed[1] in self.path:
                    proxy.lose = None
                    proxy.lost.append(f"{self.command} {self.path}")
                    self.close_connection = True
                    return  # the server acted; the client gets nothing back
                self.send_response_only(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in {"transfer-encoding", "connection"}:
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lose_answer_once(self, method: str, path_part: str) -> None:
        self.lose = (method, path_part)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
