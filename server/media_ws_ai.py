"""The per-call handler: a small conductor between the Twilio leg, the model leg and the call core.

Green threads of one call (all spawned through ``server.green`` and all ended with the call):

* Twilio RX (the request's own green thread, ``TwilioLeg.receive``): every inbound frame -> core.
* audio sender (``ModelLeg.send_audio``): ``realtime_audio_in_queue`` -> ``input_audio_buffer.append``;
  the commit and trigger markers the core queued behind the audio come out in order and are
  reported back as facts (``CommitSent``, ``TriggerReached``), and the core alone decides whether
  a ``response.create`` goes. It is the ONLY path of caller audio to OpenAI. Caller audio (only
  utterances reach it) comes from the core in appends of ``append_batch_ms``.
* Realtime reader (``ModelLeg.read``): OpenAI events -> core; a lost link is replaced on the
  core's schedule, then the conversation is replayed; caller audio is dropped, counted, meanwhile.
* TX (``TwilioLeg.tx_loop``): the assistant audio the core queued -> exact frames -> Twilio, paced,
  then tail silence and the ``assistant_tts_end`` mark; paused and resumed on the core's word.
* timer: sleeps until the core's ``next_deadline_ms`` (or a ring of its doorbell: an event moved
  that deadline earlier, or the server started draining), then sends the core a ``Tick``. There
  is no fixed poll: a call between turns wakes about once a second.
* a tool's I/O (``RunToolIo``): one short-lived green thread per request, under its deadline,
  reporting ``ToolIoDone``.

Every fact goes through the core's one door (``handle``); every verb it returns is carried out by
the entry of ``_verbs`` for its type. The call's business sets the call up (``call.setup``);
``CallRecords`` writes the call and its lead; at the end the core's ``Ending`` says how the call
ended and ``call.ending`` turns it into Twilio's step. The handler decides nothing and reads none
of the core's state.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from simple_websocket import ConnectionClosed

from server import green
from server.adapters.twilio_rest import TwilioRest
from server.business.directory import Answering
from server.business.pricing import model_usd, usage_record
from server.call.ending import TwilioEnding, close_media_socket
from server.call.metrics import CallMetrics
from server.call.model_leg import ModelLeg, SessionSetup
from server.call.recording import CallRecorder
from server.call.recording_keeper import RecordingKeeper
from server.call.records import CallRecords
from server.call.registry import CallRegistry
from server.call.setup import plan_call
from server.call.stream_admission import refusal, shown_parameters
from server.call.twilio_leg import TwilioLeg
from server.core import realtime_protocol as rt
from server.core import twilio_codec as tw
from server.core.call_core import CallCore
from server.core.ending import Ending
from server.core.events import (AudioReplyAsText, CancelResponse, ClearPlayback, CommitAndTrigger, ConfigureSession,
                                DeleteItem, EndAssistantAudio, ForwardAudio, HangUp, LeadChanged, Note, PausePlayout,
                                QueueAssistantAudio, QueueTrigger, Reconnect, RenewSession, ReplayConversation,
                                ResumePlayout, RunToolIo, SendMark, SendResponseCreate, SendToolOutput,
                                ShutdownRequested, StartAudio, Tick, ToolIoDone, TransferCall, TruncateAssistant)
from server.logs import NoteLimiter, call_logger, mask_phone
from server.settings import Settings

log = logging.getLogger(__name__)

TIMER_MAX_SLEEP_MS = 1000            # the timer looks at the server's draining flag at least this often


class MediaCall:
    def __init__(self, ws, settings: Settings, registry: CallRegistry, records: CallRecords | None = None,
                 metrics: CallMetrics | None = None, rest: TwilioRest | None = None, base_url: str = "",
                 keeper: RecordingKeeper | None = None) -> None:
        """``rest``: Twilio's REST API (``TWILIO_ACCOUNT_SID`` set): a call the core hangs up is ended
        there, a transfer redirected there; without it, closing the stream ends the call through the
        after-stream TwiML (which also knows a transfer). ``base_url``: this server's public address."""
        self.ws, self.settings, self.registry = ws, settings, registry
        self.records, self.metrics, self.rest, self.base_url, self.keeper = records, metrics, rest, base_url, keeper
        self.log = logging.LoggerAdapter(log, {})
        self.stopping = green.Event()
        self.twilio = TwilioLeg(ws, self._report, self._stop, self.stopping, settings.turn.tts_tail_silence_ms,
                                registry.tx_lateness)
        self.model = ModelLeg(settings, self._report, self._stop, self.stopping, metrics)
        self.core = CallCore(settings.turn, settings.prompts, session_renew_ms=settings.openai_session_renew_ms)
        self.answering: Answering | None = None
        self.numbers = ("", "")                    # (called, caller) of this call
        self.call_sid = ""
        self.recorded = False                      # the call's record was queued: its end is written too
        self.hangup_reason: str | None = None      # why the stream ended (the first reason wins)
        self.stopped_by_core = False               # ... on the core's HangUp or TransferCall
        self._note_limit = NoteLimiter()           # a flood of the caller's messages is not a flood of lines
        self._timer_bell = green.Bell()            # rung when the core's next deadline moved earlier
        self._timer_wake_ms = 0                    # when the timer is due to wake next
        self._threads: list = []
        self._finished = False
        self._started_ms = green.monotonic_ms()
        t, m = self.twilio, self.model
        self._verbs = {
            Note: self._log_note,
            ForwardAudio: lambda a: m.forward(a.audio),
            CommitAndTrigger: lambda a: m.commit_then_report(a.reason),
            QueueTrigger: lambda a: m.trigger_then_report(a.reason),
            SendResponseCreate: lambda a: m.send(rt.response_create(a.instructions)),
            CancelResponse: lambda a: m.send(rt.response_cancel(a.response_id)),
            DeleteItem: lambda a: m.send(rt.item_delete(a.item_id)),
            AudioReplyAsText: lambda a: (m.send(rt.assistant_text_after(a.item_id, a.transcript)),
                                         m.send(rt.item_delete(a.item_id))),
            TruncateAssistant: lambda a: m.send(rt.item_truncate(a.item_id, a.audio_end_ms)),
            SendToolOutput: lambda a: m.send(rt.function_call_output(a.call_id, a.output)),
            ConfigureSession: lambda a: m.configure(),
            StartAudio: lambda a: m.audio_path_open.set(),
            ReplayConversation: lambda a: m.replay(a.turns),
            Reconnect: m.plan_reconnect,
            RenewSession: lambda a: m.renew(),
            QueueAssistantAudio: lambda a: t.queue_audio(a.response_id, a.item_id, a.audio),
            EndAssistantAudio: lambda a: t.end_audio(a.response_id),
            SendMark: lambda a: t.mark(a.name),
            ClearPlayback: lambda a: t.clear(),
            PausePlayout: lambda a: t.pause(),
            ResumePlayout: lambda a: t.resume(),
            LeadChanged: self._lead_changed,
            HangUp: lambda a: self._stop(a.reason, by_core=True),
            TransferCall: lambda a: self._stop("transferred", by_core=True),
            RunToolIo: lambda a: green.spawn(self._run_tool_io, a),
        }

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> None:
        if self._await_start() is None:
            return
        self.registry.active += 1
        self.registry.total += 1
        self._started_ms = green.monotonic_ms()
        try:
            self._threads = [green.spawn(fn) for fn in (self.model.read, self.model.send_audio,
                                                         self.twilio.tx_loop, self._timer)]
            self.registry.on_drain(self._timer_bell.ring)
            self.log.info("[PIPELINE] LIVE AUDIO PIPELINE ACTIVE: Twilio → realtime_audio_in_queue → "
                          "send_audio_chunk (single path)")
            self.twilio.receive()
        finally:
            self._end()
            self.registry.forget_drain(self._timer_bell.ring)
            self.registry.active -= 1

    def _end(self) -> None:
        """The stream is over: stop the call's threads (the model link stays for the owner's summary,
        asked last), write the call down, carry out Twilio's step, close the socket."""
        self._teardown(keep_model=True)
        self._finished = True                     # a last model event read after this is not the call's
        end = self.core.finish(None if self.stopped_by_core else self.hangup_reason or "caller_hung_up")
        keep_model = end.summary_wanted and not self.model.link_down and self.records is not None
        if not keep_model:
            self._teardown()
        call_s = (green.monotonic_ms() - self._started_ms) / 1000
        usage = self._usage(end, call_s)
        if self.metrics is not None:
            self.metrics.call_ended(end.outcome, end.stats, end.lead.status if end.lead is not None else None, usage)
        if self.records is not None and self.recorded and self.answering is not None:
            self.records.call_finished(self.call_sid, end, self.answering, usage)
        if self.twilio.recorder is not None:
            self.keeper.save(self.twilio.recorder, self.answering.business_id, self.call_sid, self.records,
                             on_failure=self.metrics.recording_failed if self.metrics is not None else None)
        self.registry.record_end(self.call_sid, end.hangup_reason, failed=end.failed)
        self.registry.model_breaker.record(green.monotonic_ms(), end.hangup_reason)
        TwilioEnding(self.rest, self.records, self.base_url, self.log).carry_out(
            end, self.call_sid, self.answering and self.answering.profile, self.numbers)
        close_media_socket(self.ws, self.hangup_reason or "call ended")
        if keep_model:                            # the caller is gone: nobody waits for this
            summary = self.model.ask_summary(reader_alive=not green.is_dead(self._threads[0]))
            self._teardown()
            billed = self.model.summary.tokens          # the summary is paid for, text or not
            if billed and self.metrics is not None:
                self.metrics.summary_billed(billed, model_usd(billed, self.model.setup.model,
                                                              self.settings.model_prices))
            if (summary or billed) and self.answering is not None:
                self.records.summary(self.call_sid, summary, self.answering,
                                     self._usage(end, call_s, billed) if billed else None)
        self._report_end(end)                     # last: every thread of the call is gone by now

    def _usage(self, end, call_s: float, summary_tokens: dict | None = None) -> dict:
        """The call's tokens and cost (``business.pricing``), at its model's prices."""
        s, settings = end.stats, self.settings
        return usage_record(s.tokens, s.abandoned_tokens, s.transcription_s, s.transcription_tokens,
                            self.model.setup.model, settings.openai_transcription_model, call_s,
                            settings.twilio_minute_usd, settings.model_prices, summary_tokens)

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
                self.twilio.stream_sid, self.call_sid = event.stream_sid, event.call_sid
                self.log = self.twilio.log = self.model.log = call_logger(__name__, event.call_sid, event.stream_sid)
                reason = refusal(event, self.registry, self.records, int(time.time()))
                if reason:       # only the stream of a call this server answered, once (call.stream_tokens)
                    self.log.warning("[TWILIO] stream refused: %s - closed, no model session, nothing recorded",
                                     reason)
                    close_media_socket(self.ws, "stream refused")
                    return None
                self.log.info("[TWILIO] stream started, parameters=%s", shown_parameters(event.custom_parameters))
                self._set_up_business(event.custom_parameters)
                return event
            if not isinstance(event, tw.Connected):
                self.twilio.ignored_input(f"{type(event).__name__} before start")
        log.warning("[TWILIO] no start message within %dms - closing", self.settings.twilio_start_timeout_ms)
        close_media_socket(self.ws, "no start message")   # one line: the reader ends on the close, no traceback
        return None

    def _set_up_business(self, params: dict) -> None:
        """The business of the called number shapes this call: its prompts, voice, silence settings,
        tools and the lead it captures. Without records (unit tests) the server-wide settings apply."""
        if self.records is None:
            return
        to_number, caller = str(params.get("To", "")), str(params.get("From", ""))
        self.answering = self.records.answering(to_number)
        if self.answering is None:         # refused at the webhook; a stream that comes anyway gets the default
            self.answering = self.records.directory.default_answering()
        profile = self.answering.profile
        self.numbers = (to_number, caller)
        plan = plan_call(self.settings, profile, params, self.settings.business_time or datetime.now(timezone.utc),
                         self.call_sid)
        self.model.setup = SessionSetup(plan.instructions, plan.voice, plan.tools, plan.language, plan.model)
        self.core = plan.core
        if profile.recording and self.keeper is not None:
            self.twilio.recorder = CallRecorder(green.monotonic_ms())
        self.log.info("[BUSINESS] %s answers %s (%s)%s%s", profile.name, to_number or "?",
                      "default profile" if profile.is_default else f"business {self.answering.business_id}",
                      "" if plan.is_open else ", after hours", ", transfers allowed" if plan.transfer_allowed else "")
        self.records.call_started(self.call_sid, self.twilio.stream_sid, self.answering, to_number,
                                  mask_phone(caller) if caller else "")
        self.recorded = True                       # queued: the record writer keeps it until stored

    def _teardown(self, keep_model: bool = False) -> None:
        """Stop the call's threads; ``keep_model``: all but the model reader, the link left open."""
        self.stopping.set()
        if not keep_model:
            self.model.close()
        self.model.close_sender()
        self.twilio.close_tx()
        threads = self._threads[1:] if keep_model else self._threads      # [0] is the model reader
        deadline = green.monotonic_ms() + 1000
        while any(not green.is_dead(t) for t in threads) and green.monotonic_ms() < deadline:
            green.sleep(0.02)
        for t in threads:
            if not green.is_dead(t):
                green.kill(t)          # e.g. a reader whose stalled peer never answered the close
        if not keep_model:
            self.model.abort()

    def _report_end(self, end: Ending) -> None:
        """The call's summary line, and its end-of-speech delays into the worker's histogram."""
        s = end.stats
        for delay_ms in s.eou_to_create_ms:
            self.registry.eou_to_create.add(delay_ms)
        self.log.info("[CALL SUMMARY] turns=%d responses=%d barge_ins=%d errors=%s frames_sent=%d "
                      "frames_blocked=%d dropped_in=%d malformed_in=%d dropped_deltas=%d reconnects=%d "
                      "dropped_while_down=%d hangup=%s green_threads_alive=%d",
                      s.turns, s.responses_created, s.barge_ins, dict(s.errors), s.frames_sent, s.frames_blocked,
                      self.model.audio_in_q.dropped_audio, self.twilio.malformed_in, s.dropped_deltas,
                      self.model.reconnects, self.model.dropped_while_down, self.hangup_reason or "caller",
                      sum(1 for t in self._threads if not green.is_dead(t)))

    def _stop(self, reason: str, by_core: bool = False) -> None:
        if not self.stopping.is_set():
            self.hangup_reason, self.stopped_by_core = reason, by_core
            self.stopping.set()

    # --- facts in, verbs out ----------------------------------------------------------------

    def _report(self, fact) -> None:
        """A leg's fact through the core's one door; its verbs carried out."""
        if self._finished:
            return
        actions = self.core.handle(fact)
        for a in actions:
            self._verbs[type(a)](a)
        if not actions:
            return              # nothing happened that could bring a deadline forward (most frames)
        deadline_ms = self.core.next_deadline_ms()
        if deadline_ms is not None and deadline_ms < self._timer_wake_ms:
            self._timer_bell.ring()

    def _log_note(self, a: Note) -> None:
        level = logging.getLevelName(a.level)
        if self.log.isEnabledFor(level):
            allowed, left_out = self._note_limit.allow(a.code)
            if allowed:                          # the line of a.code in server.core.log_lines
                self.log.log(level, a.text + (f" ({left_out} more like it not logged)" if left_out else ""))

    def _lead_changed(self, a: LeadChanged) -> None:
        if self.records is not None and self.recorded and self.answering is not None:
            self.records.save_lead(self.call_sid, a.lead, a.deliver, self.answering, asked_for_person=a.asked_for_person)

    def _run_tool_io(self, a: RunToolIo) -> None:
        """A tool's I/O, off the call's threads, under its deadline: the result or why it failed."""
        result, error = None, None
        try:
            with green.io_deadline(a.timeout_ms / 1000.0):
                result = a.run()
        except green.IoDeadline:
            error = "timeout"
        except Exception as exc:   # noqa: BLE001 - any failure of the tool's I/O is the tool's answer to give
            error = f"{type(exc).__name__}: {exc}"[:200]
        if not self.stopping.is_set():
            self._report(ToolIoDone(a.ticket, result, error, green.monotonic_ms()))

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
                self._report(ShutdownRequested(now_ms))
            self._timer_wake_ms = 0                   # awake: events need not ring until it sleeps again
            self._report(Tick(now_ms))
