"""Refuse oversized HTTP request bodies before reading them: 413, and the connection closed unread.

Twilio's requests are a few KB (the webhook's form, status callbacks, gather results), so any body
over ``MAX_REQUEST_BODY_BYTES`` (64 KiB by default) is refused on every route: with
``Content-Length`` over the limit before a byte of it is read; a chunked body (no length) once
reading it goes over the limit.

Why Flask's own ``MAX_CONTENT_LENGTH`` is not enough under gunicorn's async workers
-------------------------------------------------------------------------------------
The worker (``gunicorn -k eventlet -w 1``, the Procfile) runs every call's audio loops and every
HTTP request on green threads of one OS thread. After the app has answered, a keep-alive
connection goes back to gunicorn's parser, whose ``Parser.__next__`` first calls
``finish_body()``: it reads and discards whatever body the app left unread (1 KiB at a time, from
8 KiB ``recv`` calls) before parsing the next request. Eventlet's ``recv`` returns at once while
bytes are waiting and only yields when the socket is empty, so a fast client streaming 300 MB
holds the worker for as long as the reading takes (the keep-alive timeout around it cannot fire
while nothing yields), and every call's paced audio waits. Flask's limit answers 413 without
reading, but the connection stays keep-alive, so gunicorn drains the body all the same. A
``Connection: close`` set by the app does not help: it is a hop-by-hop header that gunicorn's
``Response.process_headers`` drops.

What does close it: after the app's response has been written, ``AsyncWorker.handle_request``
asks ``Response.should_close()``; when it is true it ends the connection (``StopIteration``, then
the socket is closed) without ever reaching ``finish_body()``. ``Response.force_close()`` makes it
true and also makes the response's headers say ``Connection: close``. That ``Response`` is
the object the WSGI ``start_response`` callable is bound to (every gunicorn worker calls
``self.wsgi(environ, resp.start_response)``), so ``BodyLimit`` calls
``start_response.__self__.force_close()`` before sending its 413. Under a server without it (the
Flask test client) the 413 goes out alone, which is all such a server needs.

What the client sees: the 413 and then the end of the connection. A client that is still sending
when the socket closes gets its unread bytes answered with a TCP reset (RFC 9112 section 9.6) and
may not read the 413; that is accepted: nothing honest comes near the limit, and the staged close
that would spare it means reading what such a client keeps sending.

Chunked bodies are read here, at most ``max_body_bytes + 1`` bytes (gunicorn's chunked reader
reads up to 1 KiB ahead of that): over the limit is a 413 and a close; within it, the app gets
the body buffered with its ``CONTENT_LENGTH``, so nothing after this middleware ever reads from
the socket beyond the limit.
"""
from __future__ import annotations

import enum
import io
import logging
from typing import Callable, Iterable

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024
READ_PIECE_BYTES = 8192           # what gunicorn's socket reader takes per recv


class BodyPlan(enum.Enum):
    PASS = "pass"                 # a length within the limit, or no body: the app reads it itself
    REFUSE = "refuse"             # a length over the limit: 413 before reading a byte
    READ_BOUNDED = "read_bounded"   # chunked, no length: read at most the limit + 1 byte here


def body_plan(content_length: str | None, transfer_encoding: str | None, max_body_bytes: int) -> BodyPlan:
    """What to do with a request's body, from its framing headers alone."""
    if transfer_encoding and "chunked" in transfer_encoding.lower():
        return BodyPlan.READ_BOUNDED
    if content_length is None or not content_length.strip().isdigit():
        return BodyPlan.PASS      # no body, or a length the server's own parser has already refused
    return BodyPlan.REFUSE if int(content_length) > max_body_bytes else BodyPlan.PASS


def read_bounded(stream, max_body_bytes: int) -> bytes | None:
    """The whole body if it is at most ``max_body_bytes``, else None (having read one byte more
    than the limit at most). Bounded: every pass reads at least one byte or stops."""
    parts: list[bytes] = []
    total = 0
    while total <= max_body_bytes:
        piece = stream.read(min(READ_PIECE_BYTES, max_body_bytes + 1 - total))
        if not piece:
            return b"".join(parts)
        parts.append(piece)
        total += len(piece)
    return None


class BodyLimit:
    """WSGI middleware: 413 and a closed connection for bodies over ``max_body_bytes``."""

    def __init__(self, app: Callable, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        plan = body_plan(environ.get("CONTENT_LENGTH"), environ.get("HTTP_TRANSFER_ENCODING"), self.max_body_bytes)
        if plan is BodyPlan.REFUSE:
            return self._refuse(environ, start_response, f"Content-Length {environ['CONTENT_LENGTH'].strip()}")
        if plan is BodyPlan.READ_BOUNDED:
            body = read_bounded(environ["wsgi.input"], self.max_body_bytes)
            if body is None:
                return self._refuse(environ, start_response, "a chunked body")
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]
        return self.app(environ, start_response)

    def _refuse(self, environ: dict, start_response: Callable, what: str) -> list[bytes]:
        log.warning("[HTTP] %s %s refused (413): %s over the %d-byte body limit; connection closed unread",
                    environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "?"), what, self.max_body_bytes)
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
        if callable(force_close):
            force_close()         # gunicorn: "Connection: close", and no draining of the rest
        body = f"request body over the {self.max_body_bytes}-byte limit\n".encode("ascii")
        start_response("413 Content Too Large", [("Content-Type", "text/plain; charset=utf-8"),
                                                 ("Content-Length", str(len(body)))])
        return [body]
