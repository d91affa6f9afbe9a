"""A loopback TCP proxy for the tests and benchmarks: a load balancer, or a slow network.

``TcpProxy(backends, delay_ms=0)`` listens on a free loopback port and relays every connection
to one backend, byte for byte (HTTP, WebSocket upgrades and PostgreSQL alike: it reads nothing):

* several backends: each connection goes to the backend with the fewest open connections (ties
  in turn), as nginx's ``least_conn`` does, so long media streams spread over the backends while
  short webhooks come and go; a backend that refuses the connection is skipped for the next. With ``health_path`` (``/healthz``) each backend
  is asked every ``HEALTH_INTERVAL_MS`` and leaves the rotation while it does not answer 200 (a
  draining server answers 503), as a load balancer's health check does; ``mark_down``/``mark_up``
  also take one out or put it back by hand;
* ``delay_ms``: each chunk is held that long in each direction before it is passed on, in order,
  so one request/response round trip costs ``2 * delay_ms`` more (the distance to a database
  in another zone);
* faults of the link, for the tests: ``cut()`` closes every open connection and refuses new ones
  until ``restore()`` (a database that fails over, a network that is down); ``blackhole(True)``
  lets connections open but passes nothing either way until ``blackhole(False)`` (a link that
  stops answering: the peers wait, nothing errors).

Plain threads (the simulators are not green); bounded by the connections the test makes. Counts
per backend are kept so a test can show where its calls went.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import deque

HEALTH_INTERVAL_MS = 200


class TcpProxy:
    def __init__(self, backends: list[tuple[str, int]], delay_ms: int = 0, health_path: str | None = None) -> None:
        self.backends = list(backends)
        self.health_path = health_path
        self._unhealthy: set[int] = set()
        self.delay_ms = delay_ms
        self.connections = [0] * len(self.backends)
        self._open = [0] * len(self.backends)
        self._down: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._cut = False
        self._held = threading.Event()
        self._held.set()                           # set: traffic flows; clear: blackholed
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True).start()
        if health_path:
            threading.Thread(target=self._check_health, name="tcp-proxy-health", daemon=True).start()

    def set_backends(self, backends: list[tuple[str, int]]) -> None:
        with self._lock:
            self.backends = list(backends)
            self.connections = [0] * len(self.backends)
            self._open = [0] * len(self.backends)

    def healthy(self, index: int) -> bool:
        with self._lock:
            return index not in self._unhealthy and index not in self._down

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mark_down(self, index: int) -> None:
        with self._lock:
            self._down.add(index)

    def mark_up(self, index: int) -> None:
        with self._lock:
            self._down.discard(index)

    def cut(self) -> None:
        """Every open connection closed, new ones refused, until ``restore``."""
        with self._lock:
            self._cut = True
        for sock in list(self._sockets):
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def blackhole(self, on: bool) -> None:
        """While on, nothing passes either way (connections still open); off: it flows again."""
        if on:
            self._held.clear()
        else:
            self._held.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in list(self._sockets):
            _close(sock)

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_health(self) -> None:
        while not self._closed:
            for index, (host, port) in enumerate(list(self.backends)):
                try:
                    conn = http.client.HTTPConnection(host, port, timeout=1)
                    conn.request("GET", self.health_path)
                    ok = conn.getresponse().status == 200
                    conn.close()
                except (OSError, http.client.HTTPException):
                    ok = False
                with self._lock:
                    (self._unhealthy.discard if ok else self._unhealthy.add)(index)
            time.sleep(HEALTH_INTERVAL_MS / 1000)

    # --- relaying ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="tcp-proxy-conn", daemon=True).start()

    def _pick(self, tried: set[int]) -> int | None:
        with self._lock:
            count = len(self.backends)
            order = [(self._next + i) % count for i in range(count)]
            self._next += 1
            usable = [i for i in order if i not in tried and i not in self._down and i not in self._unhealthy]
            return min(usable, key=lambda i: self._open[i]) if usable else None

    def _connect(self) -> tuple[socket.socket, int] | None:
        tried: set[int] = set()
        while (index := self._pick(tried)) is not None:
            tried.add(index)
            try:
                upstream = socket.create_connection(self.backends[index], timeout=5)
            except OSError:
                continue                       # refused: try the next backend
            upstream.settimeout(None)
            with self._lock:
                self.connections[index] += 1
                self._open[index] += 1
            return upstream, index
        return None

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            cut = self._cut
        if cut:
            _close(client)
            return
        self._held.wait()
        picked = self._connect()
        if picked is None:
            _close(client)
            return
        upstream, index = picked
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets.add(sock)
        remaining = [2]
        lock = threading.Lock()

        def finished() -> None:                 # both directions over: the connection is closed
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            for sock in (client, upstream):
                self._sockets.discard(sock)
                _close(sock)
            with self._lock:
                if index < len(self._open):
                    self._open[index] -= 1

        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst, finished), name="tcp-proxy-pipe",
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, finished) -> None:
        try:
            if self.delay_ms <= 0:
                self._copy(src, dst)
            else:
                self._delayed(src, dst)
        finally:
            finished()

    def _delayed(self, src: socket.socket, dst: socket.socket) -> None:
        pending: deque = deque()
        ready = threading.Condition()
        done = []

        def deliver() -> None:
            while True:
                with ready:
                    while not pending and not done:
                        ready.wait()
                    if not pending:
                        break
                    due, chunk = pending.popleft()
                wait_s = due - time.monotonic()
                if wait_s > 0:
                    time.sleep(wait_s)
                if chunk is None:
                    break
                if not _send(dst, chunk):
                    _close(src)                # the other side is gone: so is this direction
                    break
            _shut(dst)

        sender = threading.Thread(target=deliver, name="tcp-proxy-delay", daemon=True)
        sender.start()
        while True:
            chunk = _recv(src)
            with ready:
                pending.append((time.monotonic() + self.delay_ms / 1000, chunk))
                ready.notify()
            if chunk is None:
                break
        with ready:
            done.append(True)
            ready.notify()
        sender.join()

    def _copy(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            chunk = _recv(src)
            if chunk is None:
                break
            self._held.wait()                  # blackholed: hold it (the peer just waits)
            if not _send(dst, chunk):
                _close(src)
                break
        _shut(dst)


def _recv(sock: socket.socket) -> bytes | None:
    try:
        chunk = sock.recv(65536)
    except OSError:
        return None
    return chunk or None


def _send(sock: socket.socket, chunk: bytes) -> bool:
    try:
        sock.sendall(chunk)
        return True
    except OSError:
        return False


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
