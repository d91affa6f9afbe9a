"""Oversized request bodies: 413 before reading them, and the connection closed without the rest.

The middleware alone (fake environ, fake gunicorn response), the Flask app built by the factory,
and the real server exactly as deployed (``gunicorn -k eventlet -w 1``) on loopback: a client that
announces 300 MB, sends a little and then waits must get its 413 and the end of the connection
(the server neither waits for the rest nor reads it), and the server goes on answering and calling.
"""
from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from server.app import create_app
from server.web.body_limit import BodyLimit, BodyPlan, body_plan, read_bounded
from server.settings import Settings, SettingsError
from server.adapters.twiml import MEDIA_WS_PATH, STREAM_ENDED_PATH
from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall

LIMIT = 1000
ANNOUNCED = 300 * 1024 * 1024


class UnreadableInput:
    """A ``wsgi.input`` that fails the test if anything reads it."""

    def read(self, *args):
        raise AssertionError("wsgi.input was read")

    readline = readlines = __iter__ = read


class CountingInput:
    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.bytes_read += len(data)
        return data


class FakeGunicornResponse:
    """What gunicorn binds ``start_response`` to: the middleware reaches ``force_close`` through it."""

    def __init__(self) -> None:
        self.closed = False
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def force_close(self) -> None:
        self.closed = True

    def start_response(self, status, headers, exc_info=None):
        self.status, self.headers = status, headers
        return lambda data: None


class RecordingApp:
    def __init__(self) -> None:
        self.environs: list[dict] = []
        self.bodies: list[bytes] = []

    def __call__(self, environ, start_response):
        self.environs.append(dict(environ))
        self.bodies.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def environ(**extra) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhook/incoming_call", "wsgi.input": UnreadableInput(), **extra}


# --- the plan, from the framing headers alone --------------------------------------------------

@pytest.mark.parametrize("content_length, transfer_encoding, plan", [
    (None, None, BodyPlan.PASS),
    ("0", None, BodyPlan.PASS),
    ("1000", None, BodyPlan.PASS),
    ("1001", None, BodyPlan.REFUSE),
    (str(ANNOUNCED), None, BodyPlan.REFUSE),
    (" 1001 ", None, BodyPlan.REFUSE),
    (None, "chunked", BodyPlan.READ_BOUNDED),
    (None, "gzip, Chunked", BodyPlan.READ_BOUNDED),
    ("abc", None, BodyPlan.PASS),                  # gunicorn answers 400 before any app runs
])
def test_body_plan(content_length, transfer_encoding, plan):
    assert body_plan(content_length, transfer_encoding, LIMIT) is plan


def test_read_bounded_reads_one_byte_past_the_limit_at_most():
    over = CountingInput(b"x" * 50_000)
    assert read_bounded(over, LIMIT) is None
    assert over.bytes_read == LIMIT + 1
    exact = CountingInput(b"y" * LIMIT)
    assert read_bounded(exact, LIMIT) == b"y" * LIMIT
    assert read_bounded(CountingInput(b""), LIMIT) == b""


# --- the middleware ------------------------------------------------------------------------------

def test_a_length_over_the_limit_is_refused_unread_and_the_connection_closed():
    app, resp = RecordingApp(), FakeGunicornResponse()
    body = b"".join(BodyLimit(app, LIMIT)(environ(CONTENT_LENGTH=str(ANNOUNCED)), resp.start_response))
    assert resp.status == "413 Content Too Large"
    assert ("Content-Length", str(len(body))) in resp.headers and b"1000-byte limit" in body
    assert resp.closed                               # gunicorn will not drain the 300 MB
    assert app.environs == []                        # and the app never ran (UnreadableInput: never read)


def test_a_chunked_body_growing_over_the_limit_is_refused():
    app, resp = RecordingApp(), FakeGunicornResponse()
    stream = CountingInput(b"z" * (LIMIT * 40))
    BodyLimit(app, LIMIT)(environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": stream}), resp.start_response)
    assert resp.status.startswith("413") and resp.closed
    assert app.environs == [] and stream.bytes_read == LIMIT + 1


def test_a_length_within_the_limit_passes_unchanged():
    app, resp = RecordingApp(), FakeGunicornResponse()
    stream = io.BytesIO(b"a" * LIMIT)
    env = environ(CONTENT_LENGTH=str(LIMIT), **{"wsgi.input": stream})
    assert b"".join(BodyLimit(app, LIMIT)(env, resp.start_response)) == b"ok"
    assert resp.status == "200 OK" and not resp.closed
    assert app.environs[0]["wsgi.input"] is stream and app.bodies == [b"a" * LIMIT]


def test_a_chunked_body_within_the_limit_reaches_the_app_with_its_length():
    app, resp = RecordingApp(), FakeGunicornResponse()
    BodyLimit(app, LIMIT)(environ(HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": CountingInput(b"q" * 700)}),
                          resp.start_response)
    assert resp.status == "200 OK" and not resp.closed
    assert app.bodies == [b"q" * 700]
    assert app.environs[0]["CONTENT_LENGTH"] == "700" and "HTTP_TRANSFER_ENCODING" not in app.environs[0]


def test_a_websocket_upgrade_has_no_body_and_passes_untouched():
    seen = []

    def app(env, start_response):
        seen.append(env)
        start_response("101 Switching Protocols", [])
        return []

    resp = FakeGunicornResponse()
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": MEDIA_WS_PATH, "HTTP_UPGRADE": "websocket",
           "HTTP_CONNECTION": "Upgrade", "wsgi.input": UnreadableInput()}
    BodyLimit(app, LIMIT)(env, resp.start_response)
    assert seen == [env] and resp.status.startswith("101") and not resp.closed


def test_without_gunicorn_the_413_still_goes_out():
    statuses = []
    BodyLimit(RecordingApp(), LIMIT)(environ(CONTENT_LENGTH="5000"), lambda status, headers: statuses.append(status))
    assert statuses == ["413 Content Too Large"]


# --- the setting and the app factory --------------------------------------------------------------

BASE_ENV = {"OPENAI_API_KEY": "sk-test-abcdef", "DATABASE_URL": "sqlite://", "TWILIO_SIGNATURE_VALIDATION": "off"}


def test_the_limit_is_a_setting_with_a_64_kib_default():
    assert Settings.from_env(BASE_ENV).max_request_body_bytes == 65536
    assert Settings.from_env({**BASE_ENV, "MAX_REQUEST_BODY_BYTES": "4096"}).max_request_body_bytes == 4096
    with pytest.raises(SettingsError, match="MAX_REQUEST_BODY_BYTES='lots' is not an integer"):
        Settings.from_env({**BASE_ENV, "MAX_REQUEST_BODY_BYTES": "lots"})
    with pytest.raises(SettingsError, match=r"MAX_REQUEST_BODY_BYTES=10 is out of range"):
        Settings.from_env({**BASE_ENV, "MAX_REQUEST_BODY_BYTES": "10"})


def test_the_app_refuses_on_every_route_and_still_answers_twilio_sized_requests():
    client = create_app(Settings.from_env({**BASE_ENV, "MAX_REQUEST_BODY_BYTES": "4096"})).test_client()
    big = {"Digits": "1" * 5000}
    for path in ("/webhook/incoming_call", STREAM_ENDED_PATH, "/healthz", "/metrics", "/no-such-route"):
        assert client.post(path, data=big).status_code == 413, path
    form = {"CallSid": "CA" + "1" * 32, "From": "+972501234567", "To": "+97235550100"}
    assert client.post("/webhook/incoming_call", data=form).status_code == 200


# --- the real server on loopback --------------------------------------------------------------------

SERVER_LIMIT = 16384


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    loop = LoopbackCall(scenario_mod.load("short_call"), tmp_path_factory.mktemp("body_limit") / "server.log",
                        env={"MAX_REQUEST_BODY_BYTES": str(SERVER_LIMIT)})
    with loop:
        yield loop


def exchange(loop: LoopbackCall, data: bytes) -> tuple[bytes, bool]:
    """Send ``data`` (and nothing more: the socket stays open for writing), then read until the
    server closes. Returns what it answered and whether the end came as a clean EOF. A server that
    waits for the rest of the body never closes: the socket timeout fails the test."""
    with socket.create_connection(("127.0.0.1", loop.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        for _ in range(1000):
            piece = sock.recv(65536)
            if not piece:
                return answer, True
            answer += piece
    return answer, False


@pytest.mark.parametrize("path", ["/webhook/incoming_call", STREAM_ENDED_PATH, "/healthz", "/metrics",
                                  "/admin/calls", MEDIA_WS_PATH, "/no-such-route"])
def test_an_announced_300_mb_body_gets_413_and_the_connection_closes_without_the_rest(server, path):
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {ANNOUNCED}\r\n\r\n").encode("ascii")
    answer, eof = exchange(server, head + b"CallSid=CA" + b"a" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"\r\nConnection: close\r\n" in answer
    assert eof
    assert server.health()["status"] == "ok"


def test_a_chunked_body_growing_over_the_limit_gets_413_and_eof(server):
    head = b"POST /webhook/incoming_call HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [b"1000\r\n" + b"b" * 4096 + b"\r\n"] * (SERVER_LIMIT // 4096)
    # Then 1 KiB more, and nothing after it (no chunk terminator): gunicorn's chunked reader takes
    # the body 1 KiB at a time, so the byte over the limit makes it read exactly this KiB - every
    # byte sent is read, and a clean close (not a reset for unread bytes) is what the server owes.
    last = b"400\r\n" + b"b" * 1024
    answer, eof = exchange(server, head + b"".join(chunks) + last)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in answer and eof


def test_the_server_stays_up_and_calls_still_work_beside_refused_bodies(server):
    pid = server.server_pid()
    refused, _ = exchange(server, f"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {ANNOUNCED}\r\n\r\n".encode())
    assert refused.startswith(b"HTTP/1.1 413 ")
    record = server.call(max_duration_s=60)           # signed webhook (small body) + media WebSocket
    assert record.failures == []
    assert len(record.response_latencies_ms()) >= 1
    health = server.wait_idle(timeout_s=5)
    assert health["status"] == "ok" and health["active_calls"] == 0
    assert server.server.poll() is None and server.server_pid() == pid
    log = Path(server.log_path).read_text(encoding="utf-8")
    assert "refused (413)" in log and f"{SERVER_LIMIT}-byte body limit" in log
    assert "Traceback" not in log


def test_the_gevent_worker_closes_the_same_way(tmp_path):
    """The way out (gunicorn's Response.force_close) is the async workers' common code, not eventlet's."""
    loop = LoopbackCall(scenario_mod.load("short_call"), tmp_path / "server.log", env={"GREEN_BACKEND": "gevent"},
                        worker_class="gevent")
    head = f"POST /webhook/incoming_call HTTP/1.1\r\nHost: x\r\nContent-Length: {ANNOUNCED}\r\n\r\n".encode("ascii")
    with loop:
        answer, eof = exchange(loop, head + b"a" * 1000)
        assert answer.startswith(b"HTTP/1.1 413 ") and b"\r\nConnection: close\r\n" in answer and eof
        assert loop.health()["status"] == "ok"
    assert "Using worker: gevent" in loop.log_text()
