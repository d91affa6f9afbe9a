"""A simulated Twilio caller: the webhook, the signed media WebSocket, real-time audio both ways.

Behaves like Twilio's side of a bidirectional ``<Connect><Stream>``:

* POSTs the voice webhook with ``X-Twilio-Signature`` (URL + sorted form params), reads the TwiML,
  opens the ``<Stream url>`` with the signature over the ``ws(s)://host/path`` and no params;
* sends ``connected``, ``start`` (string ``sequenceNumber``, ``customParameters`` from the TwiML's
  ``<Parameter>``s) and one 160-byte ``media`` frame every 20 ms of a deadline clock (string
  ``chunk`` and ``timestamp``), taken from the scenario's steps, with optional noise;
* buffers the server's outbound audio and *plays* it at 8 bytes/ms, echoes each ``mark`` when the
  audio before it has played (at once if nothing is buffered), flushes on ``clear`` and echoes
  the pending marks, and optionally mixes an attenuated, delayed copy of what it played back into
  its inbound audio (line echo); a scenario with ``[caller] line`` sends every frame through a
  ``sim.line_model.PhoneLine`` instead (voice level, echo path, noise, AGC, band limit, loss);
* records the ground truth (``CallRecord``): when the caller's speech ended, when AI audio
  arrived and played, marks, clears, protocol violations, who hung up.
"""
from __future__ import annotations

import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import websocket
from sim import audio as sim_audio
from sim import line_model
from sim import twilio_wire as wire
from sim.audio import FRAME_BYTES, FRAME_MS
from sim.scenario import Scenario, Step

VOICED_RMS = sim_audio.VOICED_RMS


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class CallRecord:
    call_sid: str = ""
    stream_sid: str = ""
    events: list = field(default_factory=list)            # (t_ms, kind, detail)
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

    def response_latencies_ms(self) -> list[int | None]:
        """Per caller utterance: ms from the end of its speech to the first AI audio frame received."""
        out: list[int | None] = []
        for end in self.speech_ends_ms:
            first = next((t for t, voiced in self.arrivals if voiced and t >= end), None)
            out.append(None if first is None else first - end)
        return out


class TwilioCaller:
    def __init__(self, base_url: str, scenario: Scenario, auth_token: str,
                 from_number: str = "+972501234567", to_number: str = "+97235550100",
                 on_event: Callable[[int, str, str], None] | None = None, seed: int = 7,
                 recv_buffer_bytes: int | None = None, webhook_path: str = "/webhook/incoming_call",
                 stream_base: str | None = None) -> None:
        """``recv_buffer_bytes``: a small socket receive buffer, so that a caller who stops reading
        really pushes back on the server (loopback buffers otherwise absorb minutes of audio).
        ``webhook_path`` and ``stream_base`` (``ws://host:port`` to dial instead of the TwiML's
        scheme and host, as a tunnel would) let it call another application, e.g. a reference
        server in ``scripts/bench_call.py``."""
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
        self.account_sid = _sid("AC")
        self._lock = threading.Lock()
        self._outbound = bytearray()           # audio waiting to be played
        self._queued_total = 0                 # bytes ever queued
        self._played_total = 0                 # bytes ever played
        self._pending_marks: list[tuple[int, str]] = []
        self._seq = 0
        self._server_closed = threading.Event()
        self._t0 = 0.0
        self._ws: websocket.WebSocket | None = None
        self._after_stream_url: str | None = None
        self._webhook_params: dict[str, str] = {}

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
        root = ET.fromstring(twiml)
        stream = root.find("./Connect/Stream")
        if stream is None:
            raise RuntimeError(f"webhook answered without <Connect><Stream>: {twiml}")
        parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        redirect = root.find("./Redirect")
        self._after_stream_url = redirect.text.strip() if redirect is not None and redirect.text else None
        self._webhook_params = params
        return stream.get("url"), parameters

    def _follow_after_stream(self) -> None:
        """Like Twilio: when the server closes a bidirectional stream, go on with the TwiML after
        <Connect>; ours redirects to a URL that answers with what the caller hears next."""
        if not self._after_stream_url:
            self.record.after_stream.append(("Hangup", "(no TwiML after <Connect>)"))
            return
        url = self._after_stream_url
        params = {**self._webhook_params, "CallStatus": "in-progress"}
        req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST",
                                     headers={"X-Twilio-Signature": wire.signature(self.auth_token, url, params),
                                              "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                root = ET.fromstring(resp.read().decode())
        except OSError as exc:          # what Twilio would report as an application error
            self.record.after_stream.append(("Error", f"{type(exc).__name__}: {exc}"))
            self._event("after_stream", "error fetching the TwiML after <Connect>")
            return
        for verb in root:
            self.record.after_stream.append((verb.tag, (verb.text or "").strip()))
        self._event("after_stream", "; ".join(f"{tag} {text}".strip() for tag, text in self.record.after_stream))

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
        rec = self.record
        while True:
            try:
                text = self._ws.recv()
            except (websocket.WebSocketException, OSError):
                break
            if not text:
                break
            message = wire.parse_outbound(text)
            if message.kind == "invalid":
                rec.violations.append(f"31951 invalid message ({message.problem}): {str(text)[:120]}")
                continue
            if message.stream_sid != rec.stream_sid:
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
        self._server_closed.set()

    def _echo_mark(self, name: str, cleared: bool = False) -> None:
        self.record.marks_echoed.append((self.now_ms(), name, cleared))
        self._send(wire.mark(self._next_seq(), self.record.stream_sid, name))

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
        stream_url, parameters = self._webhook()
        self._connect(stream_url)
        self._t0 = time.monotonic()
        self._send(wire.connected())
        self._send(wire.start(self._next_seq(), self.account_sid, rec.stream_sid, rec.call_sid, parameters))
        receiver = threading.Thread(target=self._receiver, name="sim-twilio-rx", daemon=True)
        receiver.start()
        timeline = _Timeline(sc.steps, self)
        ai_audible, ai_last_voiced_ms, chunk = False, -10**9, 0
        deadline = time.monotonic()
        while True:
            t = self.now_ms()
            if self._server_closed.is_set():
                rec.hung_up_by = rec.hung_up_by or "server"
                rec.server_closed_ms = t
                self._event("server_closed")
                break
            if t > max_duration_s * 1000:
                rec.failures.append(f"call still running after {max_duration_s:.0f}s")
                break
            played = self._play_one_frame()
            if np.sqrt((played ** 2).mean()) > VOICED_RMS:
                if not ai_audible:
                    rec.ai_play_starts_ms.append(t)
                    self._event("ai_audio_playing")
                ai_audible, ai_last_voiced_ms = True, t
            elif ai_audible and t - ai_last_voiced_ms > 300:
                ai_audible = False
                self._event("ai_audio_quiet")
            caller_pcm = timeline.next_frame(t, ai_last_voiced_ms, self._buffered_bytes())
            if caller_pcm is None:
                rec.hung_up_by = "caller"
                self._send(wire.stop(self._next_seq(), self.account_sid, rec.stream_sid, rec.call_sid))
                self._event("hangup", "caller sent stop")
                break
            chunk += 1
            ok = self._send(wire.media(self._next_seq(), rec.stream_sid, chunk, chunk * FRAME_MS - FRAME_MS,
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
        if rec.hung_up_by == "server":
            self._follow_after_stream()
        return rec

    def _buffered_bytes(self) -> int:
        with self._lock:
            return len(self._outbound)


def voices_for(scenario: Scenario):
    """The real voices a ``real_speech`` scenario says, or None (its clips are said)."""
    if not scenario.real_speech:
        return None
    from sim.real_voices import real_voices     # reads the recordings: only for scenarios that ask
    return real_voices()


def speech_level_dbfs(scenario: Scenario) -> float | None:
    """Active level of the scenario's ``say`` clips together (None when the caller says nothing);
    real voices are normalised to one level."""
    if voices_for(scenario) is not None:
        from bench.real_corpus import SPEECH_DBFS
        return SPEECH_DBFS
    clips = [sim_audio.clip(step.clip).audio for step in scenario.steps if step.kind == "say"]
    if not clips:
        return None
    level = line_model.active_level_dbfs(line_model.ulaw_decode(b"".join(clips)).astype(np.float64))
    return level if np.isfinite(level) else None


class InboundAudio:
    """What the caller's phone sends each 20 ms: the caller's timeline frame and what it played,
    through the scenario's ``PhoneLine``, or (no ``line``) the legacy mix of optional white noise
    and a frame-quantised line echo, exactly as before line models existed."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.scenario, self.rng = scenario, rng
        self.phone: line_model.PhoneLine | None = None
        if scenario.line is not None:
            profile = scenario.line
            voices = voices_for(scenario)
            babble = None
            if profile.noise == "babble":
                babble = voices.babble(30.0, profile.seed) if voices else sim_audio.espeak_babble(30.0, profile.seed)
            self.phone = line_model.PhoneLine(profile, babble=babble, speech_level_dbfs=speech_level_dbfs(scenario))
            return
        echo = scenario.echo
        self._echo_frames = max(1, round(echo.delay_ms / FRAME_MS)) if echo else 0
        self._echo_gain = sim_audio.db_to_gain(echo.gain_db) if echo else 0.0
        self._played: deque = deque([np.zeros(FRAME_BYTES)] * self._echo_frames, maxlen=max(1, self._echo_frames))

    def frame(self, caller_pcm: np.ndarray, played: np.ndarray) -> bytes:
        if self.phone is not None:
            return self.phone.process(caller_pcm, played)
        sc = self.scenario
        echo = self._played[0] * self._echo_gain if sc.echo else None
        if sc.echo:
            self._played.append(played)
        noise = sim_audio.noise_frame(self.rng, sc.noise_dbfs) if sc.noise_dbfs is not None else None
        return sim_audio.mix_to_ulaw(caller_pcm, echo, noise)


class _Timeline:
    """Turns scenario steps into one caller frame (int16 samples as float) per 20 ms."""

    def __init__(self, steps: list[Step], caller: TwilioCaller) -> None:
        self.steps = list(steps)
        self.caller = caller
        self.index = -1
        self.frames: list[np.ndarray] = []
        self.step_started_ms = 0
        self._pause_from_ms: int | None = None
        self._voices = voices_for(caller.scenario)
        self._said = {"utterance": 0, "short": 0}
        self._advance(0)

    def _speech(self, step: Step) -> tuple[np.ndarray, int, int, str]:
        """(float PCM, first voiced ms, end of speech ms, text) of what this ``say`` says."""
        if self._voices is None:
            clip = sim_audio.clip(step.clip)
            start, end = clip.speech_span_ms
            return line_model.ulaw_decode(clip.audio).astype(np.float64), start, end, clip.text
        kind = "short" if step.backchannel else "utterance"
        k, self._said[kind] = self._said[kind], self._said[kind] + 1
        real = self._voices.short_sound(k) if step.backchannel else self._voices.utterance(k)
        return real.pcm, real.speech_start_ms, real.speech_end_ms, f"(real speech {real.name})"

    def _advance(self, t: int) -> None:
        self.index += 1
        self.step_started_ms = t
        self.frames = []
        if self.index >= len(self.steps):
            return
        step = self.steps[self.index]
        record = self.caller.record
        if step.kind == "say":
            pcm, speech_start, speech_end, text = self._speech(step)
            # around a thinking pause the clip is cut to its speech, so the pause is exactly pause_ms
            if self.index + 1 < len(self.steps) and self.steps[self.index + 1].kind == "pause_ms":
                pcm = pcm[: speech_end * 8]
            if self._pause_from_ms is not None:
                pcm, speech_end, speech_start = pcm[speech_start * 8:], speech_end - speech_start, 0
            pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME_BYTES)])
            self.frames = list(pcm.reshape(-1, FRAME_BYTES))
            if self._pause_from_ms is not None:          # the turn goes on after a thinking pause
                record.thinking_pauses.append((self._pause_from_ms, t + speech_start))
                self._pause_from_ms = None
            record.speech_ms += speech_end - speech_start
            if step.backchannel:
                record.backchannels.append((t + speech_start, t + speech_end))
            else:
                record.speech_ends_ms.append(t + speech_end)
            self.caller._event("caller_says", text)
        elif step.kind == "pause_ms":
            if record.speech_ends_ms:                   # that speech did not end the turn
                self._pause_from_ms = record.speech_ends_ms.pop()
            self.frames = [np.zeros(FRAME_BYTES)] * (step.duration_ms // FRAME_MS)
        elif step.kind == "silence_ms":
            self.frames = [np.zeros(FRAME_BYTES)] * (step.duration_ms // FRAME_MS)
        elif step.kind == "noise_ms":
            self.frames = [sim_audio.noise_frame(self.caller.rng, step.noise_dbfs)
                           for _ in range(step.duration_ms // FRAME_MS)]

    def next_frame(self, t: int, ai_last_voiced_ms: int, buffered_bytes: int) -> np.ndarray | None:
        while self.index < len(self.steps):
            step = self.steps[self.index]
            if step.kind == "hangup":
                return None
            if step.kind == "wait_ai_audio":
                if ai_last_voiced_ms >= self.step_started_ms:
                    self._advance(t)
                    continue
                if t - self.step_started_ms > step.timeout_ms:
                    self.caller.record.failures.append(f"step {self.index + 1}: no AI audio within {step.timeout_ms}ms")
                    self._advance(t)
                    continue
                return np.zeros(FRAME_BYTES)
            if step.kind == "wait_ai":
                heard = ai_last_voiced_ms >= self.step_started_ms
                if heard and buffered_bytes == 0 and t - ai_last_voiced_ms >= step.quiet_ms:
                    self._advance(t)
                    continue
                if t - self.step_started_ms > step.timeout_ms:
                    self.caller.record.failures.append(f"step {self.index + 1}: the AI did not answer within "
                                                       f"{step.timeout_ms}ms")
                    self._advance(t)
                    continue
                return np.zeros(FRAME_BYTES)
            if self.frames:
                return self.frames.pop(0)
            self._advance(t)
        return None
