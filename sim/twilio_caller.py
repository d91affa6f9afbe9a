"""A simulated Twilio caller: the webhook, the signed media WebSocket, real-time audio both ways.

Behaves like Twilio's side of a bidirectional ``<Connect><Stream>``:

* POSTs the voice webhook with ``X-Twilio-Signature`` (URL + sorted form params), reads the TwiML,
  opens the ``<Stream url>`` with the signature over the ``ws(s)://host/path`` and no params;
* sends ``connected``, ``start`` (string ``sequenceNumber``, ``customParameters`` from the TwiML's
  ``<Parameter>``s) and one 160-byte ``media`` frame every 20 ms of a deadline clock (string
  ``chunk`` and ``timestamp``), taken from the scenario's steps, with optional noise, and a ``dtmf``
  message (next ``sequenceNumber``, ``dtmf.track`` ``inbound_track``) for each key a ``press`` step
  presses, before that step's frame of silence;
* buffers the server's outbound audio and *plays* it at 8 bytes/ms, echoes each ``mark`` when the
  audio before it has played (at once if nothing is buffered), flushes on ``clear`` and echoes
  the pending marks, and optionally mixes an attenuated, delayed copy of what it played back into
  its inbound audio (line echo); a scenario with ``[caller] line`` sends every frame through a
  ``sim.line_model.PhoneLine`` instead (voice level, echo path, noise, AGC, band limit, loss);
* records the ground truth (``CallRecord``): when the caller's speech ended, when AI audio
  arrived and played, marks, clears, protocol violations, who hung up;
* when the application closes the stream, runs the TwiML after ``<Connect>`` as Twilio does
  (``sim.twiml_runner``: ``<Say>`` heard, ``<Redirect>`` and ``<Dial>`` action fetched and signed,
  ``<Hangup>``; a new ``<Connect><Stream>`` opens a new media stream on the same call, the
  scenario's timeline going on where it was);
* given a REST simulator (``sim.twilio_rest``), registers its call there and obeys its updates
  the way Twilio does: the stream gets ``stop`` and is closed, then ``Status=completed`` ends the call
  (the TwiML after ``<Connect>`` is not run: ``ended_by_rest``) and new ``Twiml``/``Url`` is run
  instead of the rest of the document.
"""
from __future__ import annotations

import queue
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import websocket
from sim import audio as sim_audio
from sim import line_model
from sim import twilio_wire as wire
from sim.audio import FRAME_BYTES, FRAME_MS
from sim.caller_timeline import InboundAudio, Timeline, speech_level_dbfs, voices_for
from sim.scenario import Scenario
from sim.twiml_runner import CallOver, Interrupted, OpenStream, TwimlRunner

if TYPE_CHECKING:
    from sim.twilio_rest import CallUpdate, TwilioRestSimulator

VOICED_RMS = sim_audio.VOICED_RMS
__all__ = ["CallRecord", "InboundAudio", "TwilioCaller", "speech_level_dbfs", "voices_for"]


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class CallRecord:
    call_sid: str = ""
    stream_sid: str = ""
    events: list = field(default_factory=list)            # (t_ms, kind, detail)
    stream_parameters: list = field(default_factory=list) # the customParameters each stream's start carried
    speech_ends_ms: list = field(default_factory=list)    # ground truth: end of each caller turn's speech
    speech_ms: int = 0                                    # caller speech said, backchannels included
    thinking_pauses: list = field(default_factory=list)   # (start, end) of each pause_ms inside a turn
    backchannels: list = field(default_factory=list)      # (start, end) of each backchannel said over the AI
    arrivals: list = field(default_factory=list)          # (t_ms, voiced) per outbound media message
    ai_play_starts_ms: list = field(default_factory=list)
    marks_received: list = field(default_factory=list)
    marks_echoed: list = field(default_factory=list)      # (t_ms, name, cleared)
    clears: int = 0
    frames_sent: int = 0
    bytes_received: int = 0
    violations: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    hung_up_by: str = ""
    duration_ms: int = 0
    server_closed_ms: int | None = None
    after_stream: list = field(default_factory=list)      # what Twilio would do next: [("Say", text), ("Hangup", "")]
    ended_by_rest: bool = False                           # a REST update Status=completed ended the call
    rest_updates: list = field(default_factory=list)      # (t_ms, "completed" | "twiml" | "url <url>") obeyed
    dials: list = field(default_factory=list)             # sim.twiml_runner.DialAttempt per <Dial> followed
    streams: list = field(default_factory=list)          # SID of each media stream of the call (stream_sid first)
    twiml_requests: list = field(default_factory=list)    # (url, method, params) of each TwiML fetch, signed

    def response_latencies_ms(self) -> list[int | None]:
        """Per caller utterance: ms from the end of its speech to the first AI audio frame received."""
        out: list[int | None] = []
        for end in self.speech_ends_ms:
            first = next((t for t, voiced in self.arrivals if voiced and t >= end), None)
            out.append(None if first is None else first - end)
        return out


class _NoStream(Exception):
    """The webhook's TwiML has no ``<Connect><Stream>``."""

    def __init__(self, twiml: str) -> None:
        super().__init__(twiml)
        self.twiml = twiml


class TwilioCaller:
    def __init__(self, base_url: str, scenario: Scenario, auth_token: str,
                 from_number: str = "+972501234567", to_number: str = "+97235550100",
                 on_event: Callable[[int, str, str], None] | None = None, seed: int = 7,
                 recv_buffer_bytes: int | None = None, webhook_path: str = "/webhook/incoming_call",
                 stream_base: str | None = None, rest: "TwilioRestSimulator | None" = None,
                 dial_outcome: str = "answered") -> None:
        """``recv_buffer_bytes``: a small socket receive buffer, so that a caller who stops reading
        really pushes back on the server (loopback buffers otherwise absorb minutes of audio).
        ``webhook_path`` and ``stream_base`` (``ws://host:port`` to dial instead of the TwiML's
        scheme and host, as a tunnel would) let it call another application, e.g. a reference
        server in ``scripts/bench_call.py``. ``rest``: the REST simulator the call registers with
        (its account SID becomes the call's). ``dial_outcome``: what a person the call ``<Dial>``s
        does (``answered``, ``no-answer``, ``busy``)."""
        self.webhook_path = webhook_path
        self.stream_base = stream_base
        self.recv_buffer_bytes = recv_buffer_bytes
        self.base_url = base_url.rstrip("/")
        self.scenario = scenario
        self.auth_token = auth_token
        self.from_number, self.to_number = from_number, to_number
        self.on_event = on_event
        self.rng = np.random.default_rng(seed)
        self.record = CallRecord(call_sid=_sid("CA"), stream_sid=_sid("MZ"))
        self.rest = rest
        self.account_sid = rest.account_sid if rest is not None else _sid("AC")
        self._lock = threading.Lock()
        self._outbound = bytearray()           # audio waiting to be played
        self._queued_total = 0                 # bytes ever queued
        self._played_total = 0                 # bytes ever played
        self._pending_marks: list[tuple[int, str]] = []
        self._seq = 0
        self._server_closed = threading.Event()
        self._t0 = 0.0
        self._ws: websocket.WebSocket | None = None
        self._stream_sid = self.record.stream_sid
        self._webhook_params: dict[str, str] = {}
        self._runner = TwimlRunner(self._fetch_twiml, self.record.after_stream, self.record.dials, dial_outcome,
                                   pending=self._update_waiting, note=self._event)
        self._updates: queue.Queue = queue.Queue()      # CallUpdate from the REST simulator's threads
        self._over = threading.Event()                   # the call has ended: updates answer 21220
        self._timeline: Timeline | None = None
        self._ai_audible, self._ai_last_voiced_ms = False, -10**9

    # --- helpers ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    def _event(self, kind: str, detail: str = "") -> None:
        t = self.now_ms()
        self.record.events.append((t, kind, detail))
        if self.on_event:
            self.on_event(t, kind, detail)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _send(self, text: str) -> bool:
        try:
            self._ws.send(text)
            return True
        except (websocket.WebSocketException, OSError):
            self._server_closed.set()
            return False

    # --- call setup -------------------------------------------------------------------------

    def _webhook(self) -> tuple[str, dict[str, str]]:
        url = f"{self.base_url}{self.webhook_path}"
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "CallSid": self.record.call_sid,
                  "CallStatus": "ringing", "Called": self.to_number, "Caller": self.from_number,
                  "Direction": "inbound", "From": self.from_number, "To": self.to_number}
        req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST",
                                     headers={"X-Twilio-Signature": wire.signature(self.auth_token, url, params),
                                              "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            twiml = resp.read().decode()
        self._webhook_params = params
        root = ET.fromstring(twiml)
        stream = root.find("./Connect/Stream")
        if stream is None:
            raise _NoStream(twiml)
        parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        self._runner.keep_after_stream(root, url)
        self._webhook_params = params
        return stream.get("url"), parameters

    def _fetch_twiml(self, url: str, method: str, extra: dict[str, str]) -> str:
        """A TwiML request as Twilio makes it: the call's parameters (+ ``extra``), signed; POST as a
        form, GET with the parameters in the query string (signed over the whole URL)."""
        params = {**self._webhook_params, "CallStatus": "in-progress", **extra}
        self.record.twiml_requests.append((url, method, params))
        if method == "GET":
            url = url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
            req = urllib.request.Request(url, method="GET",
                                         headers={"X-Twilio-Signature": wire.signature(self.auth_token, url, {})})
        else:
            req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST",
                                         headers={"X-Twilio-Signature": wire.signature(self.auth_token, url, params),
                                                  "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read().decode()

    # --- the REST simulator's side ------------------------------------------------------------

    def _deliver(self, update: "CallUpdate") -> bool:
        """Called on the REST simulator's thread: False once the call is over (it answers 21220)."""
        if self._over.is_set():
            return False
        self._updates.put(update)
        return True

    def _update_waiting(self) -> bool:
        return not self._updates.empty()

    def _take_update(self) -> "CallUpdate":
        """The waiting updates as one: ``completed`` wins, otherwise the latest TwiML."""
        updates = [self._updates.get_nowait()]
        while not self._updates.empty():
            updates.append(self._updates.get_nowait())
        return next((u for u in updates if u.status == "completed"), updates[-1])

    def _end_call(self) -> None:
        if not self._over.is_set():
            self._over.set()
            if self.rest is not None:
                self.rest.call_ended(self.record.call_sid)

    def _connect(self, stream_url: str) -> None:
        if self.stream_base:
            parts = urllib.parse.urlsplit(stream_url)
            stream_url = self.stream_base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        signature = wire.signature(self.auth_token, stream_url, {})
        sockopt = ((socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer_bytes),) if self.recv_buffer_bytes else ()
        self._ws = websocket.create_connection(stream_url, timeout=10, header=[f"X-Twilio-Signature: {signature}"],
                                               sockopt=sockopt)
        self._ws.settimeout(None)

    # --- driving a stream by hand (fault tests, experiments) ---------------------------------

    def open_stream(self, send_start: bool = True) -> dict[str, str]:
        """Webhook, signed WebSocket and ``connected`` (+ ``start`` unless told not to), without the
        real-time loop: the caller then sends what it likes with ``send_raw``. Returns the stream
        parameters from the TwiML."""
        stream_url, params = self._webhook()
        self._connect(stream_url)
        self._t0 = time.monotonic()
        if send_start:
            self.send_raw(wire.connected())
            self.send_raw(self.start_message(params))
        return params

    def start_message(self, params: dict[str, str], seq: int = 1) -> str:
        return wire.start(seq, self.account_sid, self.record.stream_sid, self.record.call_sid, params)

    def send_raw(self, message: str | bytes) -> bool:
        if isinstance(message, bytes):
            try:
                self._ws.send_binary(message)
                return True
            except (websocket.WebSocketException, OSError):
                return False
        return self._send(message)

    @property
    def socket(self) -> websocket.WebSocket:
        return self._ws

    # --- receiving (server -> caller) -------------------------------------------------------

    def _receiver(self) -> None:
        rec, ws, closed = self.record, self._ws, self._server_closed    # this stream's, not the next one's
        while True:
            try:
                text = ws.recv()
            except (websocket.WebSocketException, OSError):
                break
            if not text:
                break
            message = wire.parse_outbound(text)
            if message.kind == "invalid":
                rec.violations.append(f"31951 invalid message ({message.problem}): {str(text)[:120]}")
                continue
            if message.stream_sid != self._stream_sid:
                rec.violations.append(f"31951 wrong streamSid in {text[:80]}")
            if message.kind == "media":
                audio = message.audio
                voiced = sim_audio.envelope(audio).max(initial=0.0) > VOICED_RMS
                with self._lock:
                    self._outbound.extend(audio)
                    self._queued_total += len(audio)
                    rec.arrivals.append((self.now_ms(), bool(voiced)))
                    rec.bytes_received += len(audio)
            elif message.kind == "mark":
                with self._lock:
                    rec.marks_received.append(message.name)
                    self._pending_marks.append((self._queued_total, message.name))
            else:                                   # clear
                with self._lock:
                    rec.clears += 1
                    self._outbound.clear()
                    self._queued_total = self._played_total
                    cleared, self._pending_marks = self._pending_marks, []
                self._event("clear", f"{len(cleared)} marks flushed")
                for _, name in cleared:
                    self._echo_mark(name, cleared=True)
        closed.set()

    def _echo_mark(self, name: str, cleared: bool = False) -> None:
        self.record.marks_echoed.append((self.now_ms(), name, cleared))
        self._send(wire.mark(self._next_seq(), self._stream_sid, name))

    # --- the real-time loop -----------------------------------------------------------------

    def _play_one_frame(self) -> np.ndarray:
        with self._lock:
            chunk = bytes(self._outbound[:FRAME_BYTES])
            del self._outbound[:FRAME_BYTES]
            self._played_total += len(chunk)
            due = [m for m in self._pending_marks if m[0] <= self._played_total]
            self._pending_marks = [m for m in self._pending_marks if m[0] > self._played_total]
        for _, name in due:
            self._echo_mark(name)
        pcm = np.zeros(FRAME_BYTES)
        if chunk:
            pcm[: len(chunk)] = line_model.ulaw_decode(chunk)
        return pcm

    def run(self, max_duration_s: float = 120.0) -> CallRecord:
        rec, sc = self.record, self.scenario
        # the line and the real voices are ready before the call: a phone sends audio from the first
        # millisecond, and a caller that stalled here would hear the greeting late (its echo too)
        inbound = InboundAudio(sc, self.rng)
        voices_for(sc)
        if self.rest is not None:             # Twilio knows the call from its first ring
            self.rest.register_call(rec.call_sid, self.from_number, self.to_number, self._deliver)
        try:
            try:
                stream_url, parameters = self._webhook()
            except _NoStream as answered:         # no stream (a refusal, an apology): Twilio runs the TwiML
                rec.hung_up_by, rec.server_closed_ms = "server", 0
                self._runner.run_twiml(answered.twiml)
                return rec
            end = self._stream(stream_url, parameters, inbound, max_duration_s)
            while end in ("server", "rest"):
                following = self._after_stream(end)
                if following is None:
                    break
                end = self._stream(following.url, following.parameters, inbound, max_duration_s)
        finally:
            self._end_call()
        return rec

    def _after_stream(self, end: str) -> OpenStream | None:
        """What Twilio does once a stream is over: the TwiML after ``<Connect>`` (the application
        closed it) or what a REST update asked; a new ``<Connect><Stream>`` to open, or None."""
        outcome = self._runner.resume() if end == "server" else Interrupted()
        while isinstance(outcome, Interrupted):
            update = self._take_update()
            if update.status == "completed":
                self.record.rest_updates.append((self.now_ms(), "completed"))
                self.record.ended_by_rest = True
                self._event("rest_update", "Status=completed: the call is over")
                return None
            what = f"url {update.url}" if update.url else "twiml"
            self.record.rest_updates.append((self.now_ms(), what))
            self._event("rest_update", what)
            outcome = self._runner.run_url(update.url, update.method) if update.url else self._runner.run_twiml(update.twiml)
        if isinstance(outcome, CallOver):
            self._event("call_over", outcome.reason)
            return None
        return outcome

    def _stream(self, stream_url: str, parameters: dict[str, str], inbound: "InboundAudio",
                max_duration_s: float) -> str:
        """One media stream in real time until it ends: ``caller`` (the timeline is over: stop sent),
        ``server`` (the application closed it), ``rest`` (a REST update: Twilio sent stop and closes
        it) or ``timeout``."""
        rec = self.record
        first = not rec.streams
        self._stream_sid = rec.stream_sid if first else _sid("MZ")
        rec.streams.append(self._stream_sid)
        rec.stream_parameters.append(dict(parameters))
        with self._lock:                      # a new stream starts with nothing buffered
            self._outbound.clear()
            self._queued_total = self._played_total
            self._pending_marks = []
        self._seq = 0
        self._server_closed = threading.Event()
        self._connect(stream_url)
        if first:
            self._t0 = time.monotonic()
        self._send(wire.connected())
        self._send(wire.start(self._next_seq(), self.account_sid, self._stream_sid, rec.call_sid, parameters))
        receiver = threading.Thread(target=self._receiver, name="sim-twilio-rx", daemon=True)
        receiver.start()
        if self._timeline is None:
            self._timeline = Timeline(self.scenario.steps, self)
        chunk, end = 0, "timeout"
        deadline = time.monotonic()
        while True:
            t = self.now_ms()
            if self._server_closed.is_set():
                rec.hung_up_by, end = "server", "server"
                rec.server_closed_ms = t
                self._event("server_closed")
                break
            if self._update_waiting():
                rec.hung_up_by, end = "server", "rest"
                self._send(wire.stop(self._next_seq(), self.account_sid, self._stream_sid, rec.call_sid))
                self._event("stream_stopped", "a REST update took the call")
                break
            if t > max_duration_s * 1000:
                rec.failures.append(f"call still running after {max_duration_s:.0f}s")
                break
            played = self._play_one_frame()
            if np.sqrt((played ** 2).mean()) > VOICED_RMS:
                if not self._ai_audible:
                    rec.ai_play_starts_ms.append(t)
                    self._event("ai_audio_playing")
                self._ai_audible, self._ai_last_voiced_ms = True, t
            elif self._ai_audible and t - self._ai_last_voiced_ms > 300:
                self._ai_audible = False
                self._event("ai_audio_quiet")
            caller_pcm = self._timeline.next_frame(t, self._ai_last_voiced_ms, self._buffered_bytes())
            if caller_pcm is None:
                rec.hung_up_by, end = "caller", "caller"
                self._end_call()
                self._send(wire.stop(self._next_seq(), self.account_sid, self._stream_sid, rec.call_sid))
                self._event("hangup", "caller sent stop")
                break
            for digit in self._timeline.take_presses():
                self._event("dtmf", digit)
                self._send(wire.dtmf(self._next_seq(), self._stream_sid, digit))
            chunk += 1
            ok = self._send(wire.media(self._next_seq(), self._stream_sid, chunk, chunk * FRAME_MS - FRAME_MS,
                                       inbound.frame(caller_pcm, played)))
            rec.frames_sent += ok
            deadline += FRAME_MS / 1000.0
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        try:
            self._ws.close(timeout=2)
        except (websocket.WebSocketException, OSError):
            pass
        receiver.join(timeout=3)
        rec.duration_ms = self.now_ms()
        return end

    def _buffered_bytes(self) -> int:
        with self._lock:
            return len(self._outbound)
