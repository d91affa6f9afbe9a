"""A local CRM webhook receiver: the other end of lead delivery, for end-to-end tests and demos.

Theory of operation: a ``ThreadingHTTPServer`` in a daemon thread answers every POST (any path) the
way a careful CRM would, in this order:

1. count the attempt and read the whole body (an unread body makes the kernel reset the connection,
   and the sender would see a reset instead of our status);
2. "down" (``set_down()``) -> 503, so a sender's retry policy can be exercised;
3. ``X-ProSaaS-Signature`` checked against the wall clock by this receiver's own ``verify_signature``,
   written from the documented format (README, "Lead delivery"), never the server's signing code
   -> 401 if bad or missing (counted in ``rejected``);
4. body not JSON -> 400; no ``X-ProSaaS-Delivery`` id -> 400 (nothing to dedupe on);
5. a delivery id seen before -> 200 again (the sender's earlier 200 may have been lost) but counted
   in ``duplicates`` and not stored twice; otherwise stored in ``received`` and answered
   ``200 {"ok": true}``.

``set_down(refuse=True)`` closes the listening socket so connections are refused; ``set_up()``
binds the same port again (``allow_reuse_address``), as a CRM coming back after a restart would.
Counters and ``received`` are guarded by one lock; ``wait_for`` waits on it with a deadline.

Run ``python -m sim.crm_receiver --port 8765 --secret S`` to watch leads arrive, one JSON line each.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

SIGNATURE_HEADER = "X-ProSaaS-Signature"
DELIVERY_HEADER = "X-ProSaaS-Delivery"
TOLERANCE_S = 300

_MAX_BODY_BYTES = 1_000_000
_POLL_INTERVAL_S = 0.05   # serve_forever's shutdown latency; the default 0.5 s would slow every stop()


def verify_signature(secret: str, body: bytes, header: str | None, now_s: int, tolerance_s: int = TOLERANCE_S) -> bool:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (several ``v1`` allowed: one must
    match), with ``t`` no further than ``tolerance_s`` from now."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 15:
        return False
    if abs(now_s - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: "CrmReceiver") -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5   # a client that stops mid-request must not hold a thread forever

    def do_POST(self) -> None:   # noqa: N802 (http.server's naming)
        status, reply = self.server.receiver._handle(self.headers, self._read_body())
        data = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length < 0 or length > _MAX_BODY_BYTES:
            return None
        return self.rfile.read(length)

    def log_message(self, format: str, *args: object) -> None:   # quiet: tests and demos print their own
        pass


class CrmReceiver:
    def __init__(self, secret: str, host: str = "127.0.0.1", port: int = 0,
                 on_accept: Callable[[dict], None] | None = None) -> None:
        self._secret = secret
        self._host = host
        self._port = port
        self._on_accept = on_accept
        self._cond = threading.Condition()
        self._down = False
        self._attempts = 0
        self._rejected = 0
        self._duplicates = 0
        self._received: list[dict] = []
        self._seen: set[str] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "CrmReceiver":
        if self._server is None:
            self._listen()
        return self

    def stop(self) -> None:
        self._close()

    def __enter__(self) -> "CrmReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_down(self, refuse: bool = False) -> None:
        """503 every request, or with ``refuse`` stop listening so connections are refused."""
        with self._cond:
            self._down = True
        if refuse:
            self._close()
        elif self._server is None:
            self._listen()

    def set_up(self) -> None:
        """Accept again, re-binding the same port if ``set_down(refuse=True)`` closed it."""
        with self._cond:
            self._down = False
        if self._server is None:
            self._listen()

    def _listen(self) -> None:
        self._server = _Server((self._host, self._port), self)
        self._port = self._server.server_address[1]   # keep the port a port=0 start was given
        self._thread = threading.Thread(target=self._server.serve_forever, args=(_POLL_INTERVAL_S,),
                                        name=f"crm-receiver:{self._port}", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=2)

    # -- what a test looks at ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/leads"

    @property
    def attempts(self) -> int:
        with self._cond:
            return self._attempts

    @property
    def rejected(self) -> int:
        with self._cond:
            return self._rejected

    @property
    def duplicates(self) -> int:
        with self._cond:
            return self._duplicates

    @property
    def received(self) -> list[dict]:
        """A snapshot: ``{"delivery_id", "payload", "received_at_s"}`` per accepted delivery."""
        with self._cond:
            return list(self._received)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """True once ``len(received) >= count``; False if ``timeout_s`` passes first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._received) >= count, timeout=timeout_s)

    # -- the decision, per request -----------------------------------------------------------------

    def _handle(self, headers, body: bytes | None) -> tuple[int, dict]:
        with self._cond:
            self._attempts += 1
            if self._down:
                return 503, {"ok": False, "error": "down"}
        if body is None:
            return 400, {"ok": False, "error": "bad Content-Length"}
        if not verify_signature(self._secret, body, headers.get(SIGNATURE_HEADER), int(time.time())):
            with self._cond:
                self._rejected += 1
            return 401, {"ok": False, "error": "bad signature"}
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return 400, {"ok": False, "error": "body is not JSON"}
        delivery_id = (headers.get(DELIVERY_HEADER) or "").strip()
        if not delivery_id:
            return 400, {"ok": False, "error": f"missing {DELIVERY_HEADER}"}
        with self._cond:
            if delivery_id in self._seen:
                self._duplicates += 1
                return 200, {"ok": True, "duplicate": True}
            self._seen.add(delivery_id)
            record = {"delivery_id": delivery_id, "payload": payload, "received_at_s": int(time.time())}
            self._received.append(record)
            self._cond.notify_all()
        if self._on_accept is not None:
            self._on_accept(record)
        return 200, {"ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local CRM webhook receiver: prints each accepted lead.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--secret", required=True, help="the shared webhook signing secret")
    args = parser.parse_args(argv)

    def show(record: dict) -> None:
        print(json.dumps(record, ensure_ascii=False), flush=True)

    receiver = CrmReceiver(args.secret, host=args.host, port=args.port, on_accept=show).start()
    print(f"listening on {receiver.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
