"""A loopback OpenAI Realtime server speaking the GA protocol (``/v1/realtime?model=...``).

Point a development server at it instead of paying for the real API::

    python -m sim.realtime_server --port 9100 --replies ai_greeting,ai_ask_city,ai_confirm
    OPENAI_REALTIME_URL=ws://127.0.0.1:9100/v1/realtime OPENAI_API_KEY=sk-sim python -m server

Connection rules follow the real service: ``Authorization: Bearer`` required (HTTP 401 without),
the beta opt-in (``OpenAI-Beta`` header) answered with ``beta_api_shape_disabled`` and close 4000.
Runs on OS threads (werkzeug's threaded server); one ``RealtimeSession`` per connection.
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
import time

from flask import Flask, jsonify, request
from flask_sock import ConnectionClosed, Sock
from werkzeug.serving import WSGIRequestHandler, make_server

from sim.realtime_session import RealtimeSession, ReplyScript, SimCounters

log = logging.getLogger("sim.realtime")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:   # one line per WebSocket is noise in a demo
        pass


class RealtimeSimulator:
    def __init__(self, script: ReplyScript | None = None, first_audio_delay_ms: int = 0,
                 speedup: float = 8.0, delta_ms: int = 200, reject_status: int | None = None,
                 handshake_delay_ms: int = 0, drop_after_responses: int | None = None,
                 fail_reconnects: int = 0, expire_after_ms: int | None = None,
                 fail_responses: dict[int, str] | None = None, flap: bool = False,
                 fail_every_response: str | None = None) -> None:
        """Fault switches: ``reject_status`` answers every handshake with that HTTP status (e.g. 401,
        429, 500); ``handshake_delay_ms`` stalls each handshake that long (a slow upstream);
        ``drop_after_responses`` drops the first session's socket (close 1011, no goodbye) right
        after its Nth ``response.done``; ``fail_reconnects`` refuses that many handshakes after a
        drop (HTTP 503); ``expire_after_ms`` ends the first session like the 60-minute limit
        (``session_expired`` error, then close 1001); ``fail_responses`` ({n: code}) makes the n-th
        ``flap`` drops every session (close 1011) right after its ``session.updated``, a model that
        accepts and loses every connection; ``fail_every_response`` makes every response of every
        session end ``failed`` with that code (a model that is rate-limited for good);
        response of the first session end ``failed`` with that error code (``rate_limit_exceeded``,
        ``server_error``...)."""
        self.expire_after_ms = expire_after_ms
        self.drop_after_responses = drop_after_responses
        self.flap = flap
        self.fail_every_response = fail_every_response
        self.fail_responses = dict(fail_responses or {})
        self.fail_reconnects = fail_reconnects
        self._dropped = False
        self.reject_status = reject_status
        self.handshake_delay_ms = handshake_delay_ms
        self.script = script or ReplyScript.from_clips(["ai_greeting", "ai_ask_city", "ai_confirm", "ai_goodbye"])
        self.first_audio_delay_ms = first_audio_delay_ms
        self.speedup = speedup
        self.delta_ms = delta_ms
        self.counters = SimCounters()
        self.sessions: list[RealtimeSession] = []
        self._server = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    def _build_app(self) -> Flask:
        app = Flask("sim.realtime")
        sock = Sock(app)

        @app.before_request
        def authorize():
            if self.handshake_delay_ms and request.path == "/v1/realtime":
                time.sleep(self.handshake_delay_ms / 1000.0)
            if self._dropped and self.fail_reconnects > 0 and request.path == "/v1/realtime":
                self.fail_reconnects -= 1
                self.counters.errors["http_503"] += 1
                return jsonify(error={"type": "server_error", "code": "simulated_fault",
                                      "message": "Simulated HTTP 503", "param": None}), 503
            if self.reject_status is not None and request.path == "/v1/realtime":
                self.counters.errors[f"http_{self.reject_status}"] += 1
                return jsonify(error={"type": "invalid_request_error", "code": "simulated_fault",
                                      "message": f"Simulated HTTP {self.reject_status}", "param": None}), self.reject_status
            if not request.headers.get("Authorization", "").startswith("Bearer ") or \
                    len(request.headers["Authorization"]) <= len("Bearer "):
                return jsonify(error={"type": "invalid_request_error", "code": "invalid_api_key",
                                      "message": "Missing bearer authentication in header", "param": None}), 401
            return None

        @sock.route("/v1/realtime")
        def realtime(ws):
            self._serve(ws, beta=bool(request.headers.get("OpenAI-Beta")), model=request.args.get("model"))

        @app.get("/counters")
        def counters():
            c = self.counters
            return jsonify(sessions=c.sessions, responses_created=c.responses_created, errors=dict(c.errors),
                           invalid_client_events=len(c.invalid_client_events), client_events=dict(c.client_events))

        return app

    def _serve(self, ws, beta: bool, model: str | None = None) -> None:
        lock = threading.Lock()

        def send(event: dict) -> None:
            with lock:
                ws.send(json.dumps(event, ensure_ascii=False))

        if beta:
            self.counters.errors["beta_api_shape_disabled"] += 1
            send({"type": "error", "event_id": "event_beta", "error": {
                "type": "invalid_request_error", "code": "beta_api_shape_disabled", "param": None, "event_id": None,
                "message": "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."}})
            ws.close(reason=4000, message="invalid_request_error.beta_api_shape_disabled")
            return
        session = RealtimeSession(send, self.script.fork(), self.counters, self.first_audio_delay_ms,
                                  self.delta_ms, self.speedup, fail_codes=self.fail_responses,
                                  fail_every=self.fail_every_response)
        self.fail_responses = {}
        session.session["model"] = model or session.session["model"]       # the URL's ?model= names it
        self.sessions.append(session)
        session.start()
        drop_at = None if self._dropped else self.drop_after_responses
        expire_at = None if self._dropped or self.expire_after_ms is None else time.monotonic() + self.expire_after_ms / 1000
        try:
            while True:
                text = ws.receive(timeout=0.05)
                if expire_at is not None and time.monotonic() >= expire_at:
                    self._dropped = True
                    session.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
                    session.closed.set()
                    ws.close(reason=1001, message="Your session hit the maximum duration of 60 minutes.")
                    break
                if self.flap and session.updated.is_set():
                    self.counters.errors["simulated_drop"] += 1
                    session.closed.set()
                    ws.close(reason=1011, message="simulated drop")
                    break
                if drop_at is not None and self.counters.responses_completed >= drop_at:
                    self._dropped = True
                    self.counters.errors["simulated_drop"] += 1
                    session.closed.set()
                    ws.close(reason=1011, message="simulated drop")
                    break
                if text is None:
                    if not ws.connected:
                        break
                    continue
                session.on_client_text(text)
        except ConnectionClosed:
            pass
        finally:
            session.closed.set()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sim-realtime", daemon=True)
        self._thread.start()
        return self.url

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def stop(self) -> None:
        for s in self.sessions:
            s.closed.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback OpenAI Realtime (GA) simulator")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--replies", default="ai_greeting,ai_ask_city,ai_confirm,ai_goodbye",
                        help="comma-separated clip names the model answers with, in order")
    parser.add_argument("--first-audio-delay-ms", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    sim = RealtimeSimulator(ReplyScript.from_clips(args.replies.split(",")), args.first_audio_delay_ms)
    sim.start(port=args.port)
    print(f"OpenAI Realtime simulator listening on {sim.url}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    main()
