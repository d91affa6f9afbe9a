"""The model leg of one call: the OpenAI Realtime socket and the one path of caller audio to it.

* reader (``read``): connects, then every server event becomes a ``RealtimeReceived`` fact (the
  owner's summary keeps its own events); a lost socket is reported (``RealtimeLinkLost``) and
  replaced on the core's schedule (``Reconnect`` verbs in, ``ReconnectFailed`` facts out); a
  connect that fails at once ends the call (the caller hears the fallback message).
* audio sender (``send_audio``): ``realtime_audio_in_queue`` -> ``input_audio_buffer.append``;
  the markers the core queued behind the audio come out in order: a commit is sent and reported
  (``CommitSent``), a trigger is reported (``TriggerReached``); the core answers either with a
  ``response.create`` or not (one door: the audio sender decides nothing).
* ``send``: every other message; while the socket is down sends are dropped and counted (the new
  session gets the conversation replayed instead).
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Callable

from server import green
from server.adapters.realtime_client import RealtimeClosed, RealtimeConnection
from server.call.audio_in_queue import AudioInQueue
from server.call.owner_summary import OwnerSummary
from server.core import realtime_protocol as rt
from server.core.events import CommitSent, RealtimeLinkLost, RealtimeReceived, Reconnect, ReconnectFailed, TriggerReached
from server.core.ulaw import BYTES_PER_MS

AUDIO_IN_QUEUE_BYTES = 10_000 * BYTES_PER_MS   # 10 s of caller audio; the oldest dropped beyond
STOP = object()


@dataclass(frozen=True)
class _Commit:
    reason: str


@dataclass(frozen=True)
class _Trigger:
    reason: str


@dataclass
class SessionSetup:
    """What every new session is configured with (``session.update``)."""
    instructions: str
    voice: str
    tools: list
    language: str | None = None
    model: str = "gpt-realtime"
    """The Realtime model the session is opened with (the business's, else ``OPENAI_REALTIME_MODEL``)."""


class ModelLeg:
    def __init__(self, settings, report: Callable[[object], None], stop: Callable[[str], None],
                 stopping: green.Event, metrics=None) -> None:
        self.settings, self.report, self.stop, self.stopping, self.metrics = settings, report, stop, stopping, metrics
        self.log: logging.LoggerAdapter | logging.Logger = logging.getLogger(__name__)
        self.setup = SessionSetup(settings.instructions, settings.openai_voice, [],
                                  model=settings.openai_realtime_model)
        self.realtime = RealtimeConnection(settings)
        self.audio_in_q = AudioInQueue(AUDIO_IN_QUEUE_BYTES)     # realtime_audio_in_queue
        self.audio_path_open = green.Event()
        self.summary = OwnerSummary()                 # asked of the model once the call is over
        self.link_down = False                        # between a lost socket and its replacement
        self.reconnects = 0
        self.dropped_while_down = 0
        self._reconnect_plan: Reconnect | None = None

    # --- what the core's verbs do here ----------------------------------------------------------

    def forward(self, audio: bytes) -> None:
        self.audio_in_q.put(audio)

    def commit_then_report(self, reason: str) -> None:
        self.audio_in_q.put(_Commit(reason))

    def trigger_then_report(self, reason: str) -> None:
        self.audio_in_q.put(_Trigger(reason))

    def configure(self) -> None:
        """A new session: our settings (sent while the link is still marked down)."""
        s = self.setup
        try:
            self.realtime.send(rt.session_update(s.instructions, s.voice, self.settings.openai_transcription_model,
                                                 s.tools, s.language))
        except RealtimeClosed as exc:
            self.log.warning("[REALTIME] session.update not sent: %s", exc)   # the reader sees the dead link

    def replay(self, turns) -> None:
        """A new session is ready: sends flow again, the conversation so far first."""
        self.link_down = False
        for role, text in turns:
            self.send(rt.conversation_text_item(role, text))

    def plan_reconnect(self, verb: Reconnect) -> None:
        self._reconnect_plan = verb                # the reader's reconnect loop carries it out

    def renew(self) -> None:
        self.realtime.close()                      # the reader reconnects and replays the conversation

    def send(self, text: str) -> None:
        if self.link_down:
            self.dropped_while_down += 1            # the new session gets the transcript instead
            return
        try:
            self.realtime.send(text)
        except RealtimeClosed as exc:            # the reader reconnects; logged once, not per frame
            self.log.warning("[REALTIME] send failed: %s - holding sends until the link is back", exc)
            self.link_down = True
            self.dropped_while_down += 1
            self.realtime.close()                  # make sure the reader sees it and reconnects

    def close_sender(self) -> None:
        self.audio_in_q.put(STOP)

    # --- reader -------------------------------------------------------------------------------

    def read(self) -> None:
        started_ms = green.monotonic_ms()
        try:
            self.realtime.connect(model=self.setup.model)
        except Exception as exc:   # noqa: BLE001 - refused, timed out, 401...: every one means "no model"
            self.log.error("[REALTIME] connect failed after %dms: %s: %s - ending the stream, the caller hears "
                           "the fallback message", green.monotonic_ms() - started_ms, type(exc).__name__, exc)
            self.stop("realtime_unavailable")
            return
        self.log.info("[REALTIME] connected to %s", self.settings.openai_realtime_url)
        while not self.stopping.is_set():
            try:
                while not self.stopping.is_set() or self.summary.pending:
                    event = rt.parse_server_event(self.realtime.recv())
                    if not self.summary.take(event):
                        self.report(RealtimeReceived(event, green.monotonic_ms()))
            except Exception as exc:   # noqa: BLE001 - a dead socket or a bug in handling: the link is gone
                if self.stopping.is_set():
                    return
                if not self._reconnect(f"{type(exc).__name__}: {exc}"):
                    self.stop("realtime_closed")       # normally the core's HangUp said so already
                    return

    def _reconnect(self, reason: str) -> bool:
        """A new session with the same configuration, on the core's schedule; the conversation is
        replayed once it is updated."""
        lost_ms = green.monotonic_ms()
        self.link_down = True
        self.report(RealtimeLinkLost(lost_ms, reason))
        self.realtime.abort()
        while self._reconnect_plan is not None and not self.stopping.is_set():
            plan, self._reconnect_plan = self._reconnect_plan, None
            green.sleep(plan.after_ms / 1000.0)
            if self.stopping.is_set():
                return False
            try:
                self.realtime.connect(model=self.setup.model)
            except Exception as exc:   # noqa: BLE001
                self.report(ReconnectFailed(green.monotonic_ms(), plan.attempt, f"{type(exc).__name__}: {exc}"))
                continue
            self.reconnects += 1
            if self.metrics is not None:
                self.metrics.reconnects.inc()
            self.log.info("[REALTIME] reconnected after %d attempt(s), %dms after the loss", plan.attempt,
                          green.monotonic_ms() - lost_ms)
            return True
        return False

    # --- audio sender -------------------------------------------------------------------------

    def send_audio(self) -> None:
        while not self.stopping.is_set() and not self.audio_path_open.wait(0.2):
            pass
        while not self.stopping.is_set():
            item = self.audio_in_q.get()
            if isinstance(item, bytes):
                self.send(rt.input_audio_append(base64.b64encode(item).decode("ascii")))
                if self.metrics is not None:
                    self.metrics.input_audio.inc(len(item) / (1000 * BYTES_PER_MS))
                continue
            if item is STOP:
                return
            if isinstance(item, _Commit):
                self.send(rt.input_audio_commit())
            self.log.info("[TRIGGER_RESPONSE] reason=%s", item.reason)
            fact = CommitSent if isinstance(item, _Commit) else TriggerReached
            self.report(fact(item.reason, green.monotonic_ms()))

    # --- the call's end -----------------------------------------------------------------------

    def ask_summary(self, reader_alive: bool) -> str | None:
        """The owner's summary, asked once the caller is gone (bounded; None without an answer)."""
        return self.summary.ask(self.send, reader_alive, self.realtime.recv)

    def close(self) -> None:
        self.realtime.close()

    def abort(self) -> None:
        self.realtime.abort()
