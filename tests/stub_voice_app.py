"""A minimal voice application on loopback for the caller simulator's REST tests: its webhook
answers ``<Connect><Stream>`` + ``<Redirect>``, its media WebSocket records what Twilio sends and
can close a stream on demand, and its TwiML URLs record each request (signature checked with
Twilio's own ``RequestValidator``) and answer what the test set."""
from __future__ import annotations

import json
import threading
import time

from flask import Flask, Response, request
from flask_sock import ConnectionClosed, Sock
from twilio.request_validator import RequestValidator
from werkzeug.serving import WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class StubVoiceApp:
    def __init__(self, auth_token: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.cond = threading.Condition()
        self.streams: list[list[dict]] = []          # the messages of each media stream, in order
        self.stream_open: list[bool] = []
        self.close_requested: set[int] = set()
        self.fetches: list[tuple[str, dict, bool]] = []   # (path, params, signature valid)
        self.answers = {"/after": "<Response><Hangup/></Response>",
                        "/action": "<Response><Say>action answer</Say><Hangup/></Response>",
                        "/next": "<Response><Say>from the url</Say><Hangup/></Response>"}
        self._server = None
        self.app = self._build()

    def _build(self) -> Flask:
        app = Flask("stub-voice-app")
        sock = Sock(app)

        @app.post("/voice")
        def voice():
            return Response(f'<Response><Connect><Stream url="{self.ws_url}"/></Connect>'
                            f'<Redirect method="POST">{self.url}/after</Redirect></Response>', mimetype="text/xml")

        @app.route("/<name>", methods=["GET", "POST"])
        def twiml(name: str):
            params = dict(request.form) if request.method == "POST" else dict(request.args)
            signed_url = request.url if request.method == "GET" else self.url + request.path
            valid = self.validator.validate(signed_url, params if request.method == "POST" else {},
                                            request.headers.get("X-Twilio-Signature", ""))
            with self.cond:
                self.fetches.append((request.path, params, valid))
                self.cond.notify_all()
            return Response(self.answers.get(request.path, "<Response/>"), mimetype="text/xml")

        @sock.route("/media")
        def media(ws):
            with self.cond:
                index = len(self.streams)
                self.streams.append([])
                self.stream_open.append(True)
                self.cond.notify_all()
            try:
                while True:
                    if index in self.close_requested:
                        ws.close()
                        break
                    text = ws.receive(timeout=0.02)
                    if text is None:     # closed: the next receive returns what came with the close, then raises
                        continue
                    with self.cond:
                        self.streams[index].append(json.loads(text))
                        self.cond.notify_all()
            except ConnectionClosed:
                pass
            finally:
                with self.cond:
                    self.stream_open[index] = False
                    self.cond.notify_all()

        return app

    def start(self) -> "StubVoiceApp":
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=_Quiet)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="stub-voice-app", daemon=True).start()
        return self

    def stop(self) -> None:
        self.close_requested.update(range(len(self.streams)))
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._server.server_port}/media"

    def close_stream(self, index: int) -> None:
        self.close_requested.add(index)

    def events(self, index: int) -> list[str]:
        """The events of stream ``index`` once the caller has closed it (everything it sent is read)."""
        assert self.wait(lambda: not self.stream_open[index]), f"stream {index} still open"
        with self.cond:
            return [m.get("event") for m in self.streams[index]]

    def wait(self, predicate, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def started(self, index: int) -> bool:
        """Stream ``index`` has sent its ``start`` (call under ``cond``, e.g. from ``wait``)."""
        return len(self.streams) > index and any(m.get("event") == "start" for m in self.streams[index])
