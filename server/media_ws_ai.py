"""The per-call handler: wires Twilio and OpenAI sockets to the pure call core.

Green threads of one call (all spawned through ``server.green`` and all ended with the call):

* Twilio RX (the request's own green thread): every inbound frame -> ``CallCore`` -> actions.
* audio sender: ``realtime_audio_in_queue`` -> ``input_audio_buffer.append`` / ``.commit`` and
  ``[TRIGGER_RESPONSE]`` -> ``trigger_response(reason)``, the one sender of ``response.create``.
  It is the ONLY path of caller audio to OpenAI; commit and trigger markers travel in the same
  queue, so a commit follows every frame forwarded before the end of utterance. Caller audio
  (only utterances reach it) comes from the core in appends of ``append_batch_ms``.
* Realtime reader: OpenAI events -> core; assistant audio -> ``realtime_audio_out_queue``.
* TX: ``realtime_audio_out_queue`` -> exact 160-byte frames (``tx_q``) -> Twilio, two whole frames
  per media message, paced by deadline from the frame count (``Pacer``), then tail silence and
  the ``assistant_tts_end`` mark. The core can pause it (a sound over the AI is being judged) and
  resume it where it stopped.
* timer: sleeps until the core's ``next_deadline_ms`` (or a ring of its doorbell: an event moved
  that deadline earlier, or the server started draining), then sends the core a ``Tick``. There
  is no fixed poll: a call between turns wakes about once a second.

The call's business sets the call up (``call_setup.plan_call``); ``CallRecords`` writes the call
and its lead; ``call_ending`` completes or transfers the call on Twilio's side; a ``CallRecorder``
taps both directions when the business records. A lost model link is replaced by the reader on
the core's schedule (``Reconnect`` out, ``ReconnectFailed`` in), then the conversation is replayed;
caller audio is dropped, counted, meanwhile. The handler decides nothing: it executes what the
core returns and logs its notes; it reads none of the core's state.
"""
from __future__ import annotations

import base64
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from simple_websocket import ConnectionClosed

from server import green
from server.call.audio_in_queue import AudioInQueue
from server.business.directory import Answering
from server.logs import NoteLimiter, call_logger, mask_phone
from server.call.records import FAILURE_REASONS, CallRecords
from server.call.ending import TwilioEnding, close_media_socket
from server.call.setup import plan_call
from server.core import realtime_protocol as rt
from server.core import twilio_codec as tw
from server.core.call_core import TRANSFERRED, CallCore, CallOutcome
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerDigit, CallerFrame, CancelResponse,
                                ClearPlayback, CommitAndTrigger, ConfigureSession, DeleteItem, EndAssistantAudio,
                                ForwardAudio, HangUp, LeadChanged, MarkAcked, Note, PausePlayout, QueueAssistantAudio,
                                QueueTrigger, RealtimeLinkLost, RealtimeReceived, Reconnect, ReconnectFailed,
                                RenewSession, ReplayConversation, ResumePlayout, SendMark, SendResponseCreate,
                                SendToolOutput, ShutdownRequested, StartAudio, Tick, TransferCall, TruncateAssistant)
from server.call.registry import CallRegistry
from server.core.pacer import Pacer
from server.core.playout import Framer
from server.core.ulaw import BYTES_PER_MS, FRAME_MS, silence
from server.call.metrics import CallMetrics
from server.adapters.realtime_client import RealtimeClosed, RealtimeConnection
from server.settings import Settings
from server.call.stream_admission import refusal, shown_parameters
from server.call.owner_summary import OwnerSummary
from server.call.recording import CallRecorder
from server.call.recording_keeper import RecordingKeeper
from server.adapters.twilio_rest import TwilioRest

log = logging.getLogger(__name__)

AUDIO_IN_QUEUE_BYTES = 10_000 * BYTES_PER_MS   # 10 s of caller audio; the oldest dropped beyond
AUDIO_OUT_QUEUE_CHUNKS = 2000
TX_LEAD_MS = 40                      # frames go out this far ahead of their play time (jitter margin)
TX_FRAMES_PER_MESSAGE = 2            # 40 ms per Twilio media message: half the sends and wake-ups of 20 ms
TX_RESYNC_MS = 200                   # a TX loop this late restarts its clock instead of bursting
TIMER_MAX_SLEEP_MS = 1000            # the timer looks at the server's draining flag at least this often


@dataclass(frozen=True)
class _Commit:
    reason: str


@dataclass(frozen=True)
class _Trigger:
    reason: str


@dataclass(frozen=True)
class _EndOfResponse:
    response_id: str


_STOP = object()


class MediaCall:
    def __init__(self, ws, settings: Settings, registry: CallRegistry, records: CallRecords | None = None,
                 metrics: CallMetrics | None = None, rest: TwilioRest | None = None, base_url: str = "",
                 keeper: RecordingKeeper | None = None) -> None:
        """``rest``: Twilio's REST API (``TWILIO_ACCOUNT_SID`` set): a call the core hangs up is ended
        there, a transfer redirected there; without it, closing the stream ends the call through the
        after-stream TwiML (which also knows a transfer). ``base_url``: this server's public address."""
        self.ws, self.rest, self.base_url = ws, rest, base_url
        self.keeper, self.recorder = keeper, None     # a CallRecorder when the business records
        self.summary = OwnerSummary()                 # asked of the model once the call is over
        self.transfer_reason: str | None = None
        self.numbers = ("", "")                    # (called, caller) of this call
        self.core_hung_up = False
        self.settings = settings
        self.registry = registry
        self.records = records
        self.metrics = metrics
        self.answering: Answering | None = None
        self.instructions = settings.instructions
        self.voice = settings.openai_voice
        self.tools: list[dict] = []
        self.language: str | None = None
        self.recorded = False
        self.lead_saved_complete = False
        self.log = logging.LoggerAdapter(log, {})
        self.core = CallCore(settings.turn, settings.prompts, session_renew_ms=settings.openai_session_renew_ms)
        self.realtime = RealtimeConnection(settings)
        self.audio_in_q = AudioInQueue(AUDIO_IN_QUEUE_BYTES)     # realtime_audio_in_queue
        self.audio_out_q = green.Queue(AUDIO_OUT_QUEUE_CHUNKS)    # realtime_audio_out_queue
        self.tx_q: deque = deque()
        self.out_q_bytes = 0
        self.playout_generation = 0
        self.tx_paused = False                     # PausePlayout .. ResumePlayout / ClearPlayback
        self.framer = Framer()
        self.twilio_lock = green.Lock()
        self.stopping = green.Event()
        self.audio_path_open = green.Event()
        self.link_down = False                     # between a lost model link and its replacement
        self.reconnects = 0
        self._reconnect_plan: Reconnect | None = None
        self._timer_bell = green.Bell()              # rung when the core's next deadline moved earlier
        self._timer_wake_ms = 0                      # when the timer is due to wake next
        self.dropped_while_down = 0
        self.stream_sid = ""
        self.call_sid = ""
        self.hangup_reason: str | None = None
        self.malformed_in = 0
        self._note_limit = NoteLimiter()           # a flood of the caller's messages is not a flood of lines
        self._caller_audio_ms = 0
        self._threads: list = []

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> None:
        start = self._await_start()
        if start is None:
            return
        self.registry.active += 1
        self.registry.total += 1
        try:
            self._threads = [green.spawn(fn) for fn in (self._realtime_reader, self._audio_sender,
                                                         self._tx_loop, self._timer)]
            self.registry.on_drain(self._timer_bell.ring)
            self.log.info("[PIPELINE] LIVE AUDIO PIPELINE ACTIVE: Twilio → realtime_audio_in_queue → "
                          "send_audio_chunk (single path)")
            self._rx_loop()
        finally:
            reason = self.hangup_reason or "caller_hung_up"
            keep_model = not self.link_down and reason not in FAILURE_REASONS and self.records is not None
            self._teardown(keep_model)              # the model link stays for the owner's summary, asked last
            end = self.core.finish(reason, failed=reason in FAILURE_REASONS)
            if self.metrics is not None:
                self.metrics.call_ended(end.outcome, end.stats, end.lead.status if end.lead is not None else None)
            self._record_end(end)
            if self.recorder is not None:
                self.keeper.save(self.recorder, self.answering.business_id, self.call_sid, self.records,
                                 on_failure=self.metrics.recording_failed if self.metrics is not None else None)
            self.registry.record_end(self.call_sid, reason, failed=reason in FAILURE_REASONS)
            self.registry.model_breaker.record(green.monotonic_ms(), reason)
            ending = TwilioEnding(self.rest, self.records, self.base_url, self.log)
            if self.transfer_reason is not None:
                ending.transfer(self.call_sid, self.transfer_reason, self.answering and self.answering.profile,
                                self.numbers)
            elif self.core_hung_up and reason not in FAILURE_REASONS:
                ending.complete(self.call_sid)
            close_media_socket(self.ws, self.hangup_reason or "call ended")
            if keep_model:                            # the caller is gone: nobody waits for this
                summary = self.summary.ask(self._realtime_send, not green.is_dead(self._threads[0]),
                                           self.realtime.recv)
                self._teardown()
                if summary and self.answering is not None:
                    self.records.summary(self.call_sid, summary, self.answering)
            self._report_end(end)                     # last: every thread of the call is gone by now
            self.registry.forget_drain(self._timer_bell.ring)
            self.registry.active -= 1

    def _await_start(self) -> tw.Start | None:
        deadline = green.monotonic_ms() + self.settings.twilio_start_timeout_ms
        while green.monotonic_ms() < deadline:
            try:
                text = self.ws.receive(timeout=0.5)
            except ConnectionClosed:
                return None
            if text is None:
                continue
            event = tw.parse(text)
            if isinstance(event, tw.Start):
                self.stream_sid, self.call_sid = event.stream_sid, event.call_sid
                self.log = call_logger(__name__, event.call_sid, event.stream_sid)
                if not self._admitted(event):
                    return None
                self.log.info("[TWILIO] stream started, parameters=%s", shown_parameters(event.custom_parameters))
                self._set_up_business(event.custom_parameters)
                return event
            if not isinstance(event, tw.Connected):
                self._ignored_input(f"{type(event).__name__} before start")
        log.warning("[TWILIO] no start message within %dms - closing", self.settings.twilio_start_timeout_ms)
        close_media_socket(self.ws, "no start message")   # one line: the reader ends on the close, no traceback
        return None

    def _admitted(self, start: tw.Start) -> bool:
        """Only the stream of a call this server answered, once (``server.call.stream_tokens``)."""
        reason = refusal(start, self.registry, self.records, int(time.time()))
        if reason:
            self.log.warning("[TWILIO] stream refused: %s - closed, no model session, nothing recorded", reason)
            close_media_socket(self.ws, "stream refused")
        return not reason

    def _set_up_business(self, params: dict) -> None:
        """The business of the called number shapes this call: its prompts, voice, silence settings
        and the lead it captures. Without records (unit tests) the server-wide settings apply."""
        if self.records is None:
            return
        to_number, caller = str(params.get("To", "")), str(params.get("From", ""))
        self.answering = self.records.answering(to_number)
        if self.answering is None:         # refused at the webhook; a stream that comes anyway gets the default
            self.answering = self.records.directory.default_answering()
        profile = self.answering.profile
        self.numbers = (to_number, caller)
        plan = plan_call(self.settings, profile, params, self.settings.business_time or datetime.now(timezone.utc))
        self.instructions, self.voice, self.language, self.tools = plan.instructions, plan.voice, plan.language, plan.tools
        self.core = plan.core
        if profile.recording and self.keeper is not None:
            self.recorder = CallRecorder(green.monotonic_ms())
        self.log.info("[BUSINESS] %s answers %s (%s)%s%s", profile.name, to_number or "?",
                      "default profile" if profile.is_default else f"business {self.answering.business_id}",
                      "" if plan.is_open else ", after hours", ", transfers allowed" if plan.transfer_allowed else "")
        self.records.call_started(self.call_sid, self.stream_sid, self.answering, to_number,
                                  mask_phone(caller) if caller else "")
        self.recorded = True                       # queued: the record writer keeps it until stored

    def _record_end(self, end: CallOutcome) -> None:
        if self.records is not None and self.recorded and self.answering is not None:
            self.records.call_finished(self.call_sid, end, self.answering, self.lead_saved_complete)
            self.lead_saved_complete = end.lead is not None and end.lead.status == "complete"

    def _teardown(self, keep_model: bool = False) -> None:
        """Stop the call's threads; ``keep_model``: all but the model reader, the link left open."""
        self.stopping.set()
        if not keep_model:
            self.realtime.close()
        self.audio_in_q.put(_STOP)
        try:
            self.audio_out_q.put_nowait(_STOP)
        except green.Full:
            pass
        threads = self._threads[1:] if keep_model else self._threads      # [0] is the model reader
        deadline = green.monotonic_ms() + 1000
        while any(not green.is_dead(t) for t in threads) and green.monotonic_ms() < deadline:
            green.sleep(0.02)
        for t in threads:
            if not green.is_dead(t):
                green.kill(t)          # e.g. a reader whose stalled peer never answered the close
        if not keep_model:
            self.realtime.abort()

    def _report_end(self, end: CallOutcome) -> None:
        """The call's summary line, and its end-of-speech delays into the worker's histogram."""
        s = end.stats
        for delay_ms in s.eou_to_create_ms:
            self.registry.eou_to_create.add(delay_ms)
        self.log.info("[CALL SUMMARY] turns=%d responses=%d barge_ins=%d errors=%s frames_sent=%d "
                      "frames_blocked=%d dropped_in=%d malformed_in=%d dropped_deltas=%d reconnects=%d "
                      "dropped_while_down=%d hangup=%s green_threads_alive=%d",
                      s.turns, s.responses_created, s.barge_ins, dict(s.errors), s.frames_sent, s.frames_blocked,
                      self.audio_in_q.dropped_audio, self.malformed_in, s.dropped_deltas, self.reconnects,
                      self.dropped_while_down, self.hangup_reason or "caller",
                      sum(1 for t in self._threads if not green.is_dead(t)))

    def _stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            self.hangup_reason = self.hangup_reason or reason
            self.stopping.set()

    # --- executing core actions -------------------------------------------------------------

    def _apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, Note):
                level = logging.getLevelName(a.level)
                if self.log.isEnabledFor(level):
                    allowed, left_out = self._note_limit.allow(a.code)
                    if allowed:                          # the line of a.code in server.core.log_lines
                        self.log.log(level, a.text + (f" ({left_out} more like it not logged)" if left_out else ""))
            elif isinstance(a, ForwardAudio):
                self.audio_in_q.put(a.audio)
            elif isinstance(a, CommitAndTrigger):
                self.audio_in_q.put(_Commit(a.reason))
            elif isinstance(a, QueueTrigger):
                self.audio_in_q.put(_Trigger(a.reason))
            elif isinstance(a, SendResponseCreate):
                self._realtime_send(rt.response_create(a.instructions))
            elif isinstance(a, QueueAssistantAudio):
                self.out_q_bytes += len(a.audio)
                self.audio_out_q.put((a.response_id, a.item_id, a.audio))
            elif isinstance(a, EndAssistantAudio):
                self.audio_out_q.put(_EndOfResponse(a.response_id))
            elif isinstance(a, SendMark):
                self._twilio_send(tw.mark_message(self.stream_sid, a.name))
            elif isinstance(a, CancelResponse):
                self._realtime_send(rt.response_cancel(a.response_id))
            elif isinstance(a, ClearPlayback):
                self._clear_playback()
            elif isinstance(a, PausePlayout):
                self.tx_paused = True
            elif isinstance(a, ResumePlayout):
                self.tx_paused = False
            elif isinstance(a, DeleteItem):
                self._realtime_send(rt.item_delete(a.item_id))
            elif isinstance(a, TruncateAssistant):
                self._realtime_send(rt.item_truncate(a.item_id, a.audio_end_ms))
            elif isinstance(a, SendToolOutput):
                self._realtime_send(rt.function_call_output(a.call_id, a.output))
            elif isinstance(a, LeadChanged):
                if self.records is not None and self.recorded and self.answering is not None:
                    self.records.save_lead(self.call_sid, a.lead, a.deliver, self.answering,
                                           asked_for_person=a.asked_for_person)
                    self.lead_saved_complete = a.lead.status == "complete"
            elif isinstance(a, HangUp):
                self.core_hung_up = True
                self._stop(a.reason)
            elif isinstance(a, TransferCall):
                self.transfer_reason = a.reason
                self._stop(TRANSFERRED)
            elif isinstance(a, ConfigureSession):       # sent while the link is still marked down
                self._send_configuration()
            elif isinstance(a, StartAudio):
                self.audio_path_open.set()
            elif isinstance(a, ReplayConversation):     # a new session is ready: sends flow again
                self.link_down = False
                for role, text in a.turns:
                    self._realtime_send(rt.conversation_text_item(role, text))
            elif isinstance(a, Reconnect):
                self._reconnect_plan = a                 # the reader's reconnect loop carries it out
            elif isinstance(a, RenewSession):
                self.realtime.close()                  # the reader reconnects and replays the conversation
        if not actions:
            return              # nothing happened that could bring a deadline forward (most frames)
        deadline_ms = self.core.next_deadline_ms()
        if deadline_ms is not None and deadline_ms < self._timer_wake_ms:
            self._timer_bell.ring()

    def _clear_playback(self) -> None:
        """Barge-in: nothing queued before this point may reach the caller."""
        self.playout_generation += 1
        self.tx_paused = False
        if self.recorder is not None:
            self.recorder.cleared(green.monotonic_ms())
        self.tx_q.clear()
        self.framer = Framer()
        while True:
            try:
                self.audio_out_q.get_nowait()
            except green.Empty:
                break
        self.out_q_bytes = 0
        self._twilio_send(tw.clear_message(self.stream_sid))

    def trigger_response(self, reason: str) -> None:
        """The single function that can send ``response.create`` (guarded in the core)."""
        self._apply(self.core.request_response(reason, green.monotonic_ms()))

    def _send_configuration(self) -> None:
        try:
            self.realtime.send(rt.session_update(self.instructions, self.voice,
                                                 self.settings.openai_transcription_model, self.tools, self.language))
        except RealtimeClosed as exc:
            self.log.warning("[REALTIME] session.update not sent: %s", exc)   # the reader sees the dead link

    def _realtime_send(self, text: str) -> None:
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

    def _twilio_send(self, text: str) -> bool:
        with self.twilio_lock:
            try:
                self.ws.send(text)
                return True
            except ConnectionClosed:
                self._stop("twilio_closed")
                return False

    # --- green threads ----------------------------------------------------------------------

    def _rx_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                text = self.ws.receive(timeout=0.2)
            except ConnectionClosed:
                self._stop("caller_hung_up")
                return
            if text is None:
                continue
            event = tw.parse(text)
            now_ms = green.monotonic_ms()
            if isinstance(event, tw.Media):
                audio = event.audio()
                if not audio:
                    continue
                self._caller_audio_ms += max(1, len(audio) // BYTES_PER_MS)   # duration from the audio itself
                self._apply(self.core.handle(CallerFrame(audio, self._caller_audio_ms, now_ms)))
                if self.recorder is not None:
                    self.recorder.anchor(self._caller_audio_ms, now_ms)
                    self.recorder.caller(audio, self._caller_audio_ms)
            elif isinstance(event, tw.Mark):
                self._apply(self.core.handle(MarkAcked(event.name, now_ms)))
            elif isinstance(event, tw.Stop):
                self.log.info("[TWILIO] stop received")
                self._stop("caller_hung_up")
            elif isinstance(event, tw.Dtmf):
                self._apply(self.core.handle(CallerDigit(event.digit, now_ms)))
            elif isinstance(event, tw.Start):
                self._ignored_input(f"second start (stream {event.stream_sid}) rejected")
            elif isinstance(event, (tw.MalformedTwilioMessage, tw.UnknownTwilioEvent)):
                self._ignored_input(str(event))

    def _ignored_input(self, what: str) -> None:
        """Bad input is counted and ignored; logged for the first few, then every 100th (bounded rate)."""
        self.malformed_in += 1
        if self.malformed_in <= 5 or self.malformed_in % 100 == 0:
            self.log.warning("[TWILIO] ignored input #%d: %s", self.malformed_in, what[:200])

    def _realtime_reader(self) -> None:
        started_ms = green.monotonic_ms()
        try:
            self.realtime.connect()
        except Exception as exc:   # noqa: BLE001 - refused, timed out, 401...: every one means "no model"
            self.log.error("[REALTIME] connect failed after %dms: %s: %s - ending the stream, the caller hears "
                           "the fallback message", green.monotonic_ms() - started_ms, type(exc).__name__, exc)
            self._stop("realtime_unavailable")
            return
        self.log.info("[REALTIME] connected to %s", self.settings.openai_realtime_url)
        while not self.stopping.is_set():
            try:
                self._read_realtime()
            except Exception as exc:   # noqa: BLE001 - a dead socket or a bug in handling: the link is gone
                if self.stopping.is_set():
                    return
                if not self._reconnect(f"{type(exc).__name__}: {exc}"):
                    self._stop("realtime_closed")       # normally the core's HangUp said so already
                    return

    def _read_realtime(self) -> None:
        while not self.stopping.is_set() or self.summary.pending:
            event = rt.parse_server_event(self.realtime.recv())
            if self.summary.take(event):
                continue
            queued_ms = len(self.tx_q) * FRAME_MS + self.out_q_bytes // BYTES_PER_MS
            self._apply(self.core.handle(RealtimeReceived(event, green.monotonic_ms(), len(self.tx_q),
                                                          self.audio_out_q.qsize(), queued_ms)))

    def _reconnect(self, reason: str) -> bool:
        """A new session with the same configuration, on the core's schedule (``Reconnect`` verbs,
        ``ReconnectFailed`` facts); the conversation is replayed once it is updated."""
        lost_ms = green.monotonic_ms()
        self.link_down = True
        self._apply(self.core.handle(RealtimeLinkLost(lost_ms, reason)))
        self.realtime.abort()
        while self._reconnect_plan is not None and not self.stopping.is_set():
            plan, self._reconnect_plan = self._reconnect_plan, None
            green.sleep(plan.after_ms / 1000.0)
            if self.stopping.is_set():
                return False
            try:
                self.realtime.connect()
            except Exception as exc:   # noqa: BLE001
                self._apply(self.core.handle(ReconnectFailed(green.monotonic_ms(), plan.attempt,
                                                             f"{type(exc).__name__}: {exc}")))
                continue
            self.reconnects += 1
            if self.metrics is not None:
                self.metrics.reconnects.inc()
            self.log.info("[REALTIME] reconnected after %d attempt(s), %dms after the loss", plan.attempt,
                          green.monotonic_ms() - lost_ms)
            return True
        return False

    def _audio_sender(self) -> None:
        while not self.stopping.is_set() and not self.audio_path_open.wait(0.2):
            pass
        while not self.stopping.is_set():
            item = self.audio_in_q.get()
            if isinstance(item, bytes):
                self._realtime_send(rt.input_audio_append(base64.b64encode(item).decode("ascii")))
                if self.metrics is not None:
                    self.metrics.input_audio.inc(len(item) / (1000 * BYTES_PER_MS))
                continue
            if item is _STOP:
                return
            if isinstance(item, _Commit):
                self._realtime_send(rt.input_audio_commit())
            self.log.info("[TRIGGER_RESPONSE] reason=%s", item.reason)
            self.trigger_response(item.reason)

    def _tx_loop(self) -> None:
        pacer = Pacer(FRAME_MS, TX_LEAD_MS, TX_RESYNC_MS, self.registry.tx_lateness)
        media = tw.media_encoder(self.stream_sid)
        while not self.stopping.is_set():
            if self.tx_paused:
                green.sleep(FRAME_MS / 2000.0)
                pacer.restart()                      # resume at once, on a fresh clock
                continue
            if not self.tx_q:
                if not self._refill_tx():
                    continue
                pacer.starved(green.monotonic_ms())
            entry = self.tx_q.popleft()
            generation = self.playout_generation
            now_ms = green.monotonic_ms()
            due_ms = pacer.due_ms(now_ms)
            if due_ms > now_ms:
                green.sleep((due_ms - now_ms) / 1000.0)
            if generation != self.playout_generation:
                pacer.restart()
                continue                  # cleared while we waited for this frame's turn
            if self.tx_paused:
                self.tx_q.appendleft(entry)   # paused while we waited: this frame goes out on resume
                continue
            kind, key, frame = entry
            if kind == "end":
                self._apply(self.core.handle(AssistantPlayoutFinished(key, green.monotonic_ms())))
                continue
            frames = [frame]                 # whole frames of one item, TX_FRAMES_PER_MESSAGE per message
            while len(frames) < TX_FRAMES_PER_MESSAGE and self.tx_q and self.tx_q[0][:2] == (kind, key):
                frames.append(self.tx_q.popleft()[2])
            audio = b"".join(frames)
            if not self._twilio_send(media(audio)):
                return
            sent_ms = green.monotonic_ms()
            pacer.sent(sent_ms, len(frames))
            if kind == "ai":
                self._apply(self.core.handle(AssistantFramePlayed(key, sent_ms, audio)))
                if self.recorder is not None:
                    self.recorder.played(audio, sent_ms)

    def _refill_tx(self) -> bool:
        try:
            item = self.audio_out_q.get(timeout=0.1)
        except green.Empty:
            return False
        if item is _STOP:
            self.stopping.set()
            return False
        if isinstance(item, _EndOfResponse):
            tail = self.framer.flush() + [silence(FRAME_MS)] * (self.settings.turn.tts_tail_silence_ms // FRAME_MS)
            self.tx_q.extend(("pad", "", f) for f in tail)
            self.tx_q.append(("end", item.response_id, b""))
        else:
            _, item_id, audio = item
            self.out_q_bytes -= len(audio)
            self.tx_q.extend(("ai", item_id, f) for f in self.framer.push(audio))
        return bool(self.tx_q)

    def _timer(self) -> None:
        """``Tick`` at the core's deadlines; also notices a draining server (rung, or within a second)."""
        draining_noted = False
        while not self.stopping.is_set():
            now_ms = green.monotonic_ms()
            deadline_ms = self.core.next_deadline_ms()
            self._timer_wake_ms = min(now_ms + TIMER_MAX_SLEEP_MS,
                                      deadline_ms if deadline_ms is not None else now_ms + TIMER_MAX_SLEEP_MS)
            if self._timer_wake_ms > now_ms:
                self._timer_bell.wait((self._timer_wake_ms - now_ms) / 1000.0)
            if self.stopping.is_set():
                return
            now_ms = green.monotonic_ms()
            if self.registry.draining and not draining_noted:
                draining_noted = True
                self._apply(self.core.handle(ShutdownRequested(now_ms)))
            self._timer_wake_ms = 0                   # awake: events need not ring until it sleeps again
            self._apply(self.core.handle(Tick(now_ms, len(self.tx_q), self.audio_out_q.qsize())))
