"""The decisions of one call, as a pure state machine: a conductor over parts that own their state.

Theory of operation. The shell feeds facts (``server.core.events``) stamped with ``now_ms``
through ONE door, ``handle``, which returns verbs and notes (a code and fields; the shell renders
the line from ``log_lines``); ``next_deadline_ms`` says when to send the next ``Tick``; ``finish``
gives the call's ``Ending``. Nothing here touches a socket or a clock.

Each concern is a part that owns its state and its transitions (a table that raises on a forbidden
move): ``CallerTurn`` (the caller's audio: VAD, whose voice, echo gate, barge-in judge, batches
for the model), ``ResponseBook`` (the model's responses: the guard, cancelled and abandoned ones,
the one that is audible, drains), ``ModelLink`` (sessions, losses, reconnects, renewals),
``CallEnding`` (closing after the AI's line, hangup, transfer, a draining server),
``ToolDesk`` (tool calls and their I/O), ``AnswerClock`` (when an answer was asked for and how
long the caller waited), ``ReplyHold``, ``SilencePolicy``, ``ReplyHistory`` (replies heard whole
re-read by the model as text), the ``PlayoutLedger`` (what the caller heard and what is still to
play) and the ``PipelineMachine`` (LISTENING, PROCESSING, SPEAKING:
the next state computed from the cause of the move). This class only routes facts to parts and
does what spans several of them:

* Turn: a valid end of utterance commits the caller's audio (``CommitAndTrigger``); the audio
  sender reports ``CommitSent`` once the commit went after every frame queued before it, and only
  then is ``response.create`` asked of the guard (``_on_trigger``: the only producer of
  ``SendResponseCreate``; active-or-pending -> skip). Every other answer (greeting, prompt,
  goodbye, keypad, a tool's follow-up, a turn owed across a reconnection) is ``_ask_model``: the
  pipeline moves, the answer clock starts, a ``QueueTrigger`` comes back as ``TriggerReached``.
* Hold: the reply to a caller turn is asked for at the end of utterance but its playout events
  wait in ``ReplyHold`` until the caller has been silent ``reply_hold_ms``; a caller who resumes
  first gets that unheard reply cancelled and its items deleted, and one reply after the real end.
* Barge-in: a sound over the AI pauses its playout; a short one is a backchannel (resumed); a long
  one cancels what is in flight, clears Twilio's buffer, truncates the item at what was played.
* AI side: the first audio delta makes the AI audible (SPEAKING); its ``output_audio.done`` starts
  one drain check (polled every ``drain_poll_ms`` against the ledger); the end of playout sends
  ``assistant_tts_end``, whose ack returns the pipeline to LISTENING and lets a closing call hang up.
* Tools: answers go back once their response is done (and their I/O is in); the follow-up is one
  more guarded trigger (at most ``MAX_TOOL_CHAIN`` in a row). A caller who resumes while a tool's
  I/O runs is not talked over: if they are still talking when it is in, their turn's answer sees
  the tool's (``answer_with_turn``); if their turn was answered meanwhile, the follow-up goes after
  that answer (``ResponseBook.defer``), never lost to the busy guard. Keypad digits are actions,
  never speech.
* Time: watchdogs (no ``response.created``, no audio), the silence clock, drains, the status line,
  session renewal and a draining server's goodbye limit all report their deadlines; conditions that
  events change (a draining server's goodbye, a hangup after a goodbye never heard) are re-checked
  after every event.
"""
from __future__ import annotations

import base64
from typing import Mapping, Sequence

from server.core import realtime_protocol as rt
from server.core.answer_clock import AnswerClock
from server.core.barge_in import Interrupt, Resume
from server.core.caller_turn import CallerTurn, echo_text
from server.core.conversation import Conversation
from server.core.ending import MODEL_FAILING, CallEnding, CallStats, Ending
from server.core.energy_vad import SpeechStarted, UtteranceEnded, VadState
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerDigit, CallerFrame,
                                CommitAndTrigger, CommitSent, ConfigureSession, CoreAction, CoreEvent, MarkAcked,
                                QueueTrigger, RealtimeLinkLost, RealtimeReceived, ReconnectFailed, RenewSession,
                                ResumePlayout, SendResponseCreate, ShutdownRequested, Tick, ToolIoDone,
                                TriggerReached, note)
from server.core.keypad import KEYPAD_PROMPTS, Keypad
from server.core.model_link import ModelLink
from server.core.pipeline import Cause, Pipeline, PipelineMachine
from server.core.playback import TTS_END_MARK, Playback
from server.core.reply_hold import HoldState, ReplyHold
from server.core.reply_history import ReplyHistory
from server.core.response_book import ResponseBook
from server.core.response_guard import ResponseGuard
from server.core.silence_policy import SilencePolicy, SilenceStep
from server.core.status_line import StatusLine
from server.core.timeline import Timeline
from server.core.tool_desk import ABANDONED, LeadUpdated, Tool, ToolContext, ToolDesk, WantsPerson
from server.core.turn_config import TurnConfig
from server.leads.capture import LeadCapture

__all__ = ["CallCore", "TTS_END_MARK", "TOOL_RESULT"]
TOOL_RESULT = "tool_result"                # trigger reason of the response that follows a tool answer


def _unhandled(e, out: list[CoreAction]) -> None:
    out.append(note('DEBUG', 'realtime_event', event=e))


class CallCore:
    def __init__(self, config: TurnConfig, prompts: Mapping[str, str] | None = None, voice_decider=None,
                 echo_detection: bool = True, lead: LeadCapture | None = None, session_renew_ms: int | None = None,
                 transfer_allowed: bool = False, keypad: Mapping[str, str] | None = None,
                 tools: Sequence[Tool] = ()) -> None:
        """``voice_decider`` and ``echo_detection``: see ``CallerTurn`` (other detectors measured
        under the same rules). ``session_renew_ms``: age of a model session at which it is renewed
        (None: never). ``transfer_allowed``: a person can take the call now (the business's number
        and hours); ``keypad``: digit -> ``person`` or ``repeat``; ``tools``: this call's tools."""
        self.cfg = config
        self.prompts = {**KEYPAD_PROMPTS, **dict(prompts or {})}
        self.keypad = Keypad(keypad)
        self.stats = CallStats()
        self.timeline = Timeline()
        self.turn = CallerTurn(config, self.stats, self.timeline, voice_decider, echo_detection)
        self.book = ResponseBook(ResponseGuard(config.response_created_timeout_ms))
        self.link = ModelLink(session_renew_ms)
        self.ending = CallEnding(transfer_allowed)
        self.desk = ToolDesk.of(tools, lead)
        self.clock = AnswerClock(config.no_audio_timeout_ms, self.stats, self.timeline)
        self.hold = ReplyHold(config.reply_hold_ms, config.reply_hold_max_ms)
        self.silence = SilencePolicy(config.silence_timeout_ms, config.max_silence_warnings)
        self.playback = Playback(config.drain_timeout_ms, config.echo_window_ms, self.timeline)
        self.pipeline = PipelineMachine()
        self.conversation = Conversation(self.stats)
        self.history = ReplyHistory()                # heard replies re-read as text, not audio
        self.status = StatusLine(config.status_interval_ms)
        self._now_ms = 0
        self._handlers = {
            CallerFrame: self._on_caller_frame,
            RealtimeReceived: lambda ev, out: self._realtime.get(type(ev.event), _unhandled)(ev.event, out),
            AssistantFramePlayed: self._on_frame_played, AssistantPlayoutFinished: self._on_playout_finished,
            MarkAcked: self._on_mark_acked, Tick: self._on_tick, CommitSent: self._on_trigger,
            TriggerReached: self._on_trigger, ToolIoDone: self._on_tool_io, ShutdownRequested: self._on_shutdown,
            RealtimeLinkLost: self._on_link_lost, ReconnectFailed: self._on_reconnect_failed,
            CallerDigit: self._on_digit,
        }
        self._realtime = {
            rt.SessionCreated: lambda e, out: out.append(ConfigureSession()),   # every new session: our settings
            rt.SessionUpdated: self._on_session_updated, rt.ResponseCreated: self._on_response_created,
            rt.AudioDelta: lambda e, out: self._on_audio_delta(e, out, received=True),
            rt.AudioDone: lambda e, out: (self.hold.keep(e.response_id, e) if self.hold.holds(e.response_id)
                                          else self._end_audio(e.response_id, out)),
            rt.ResponseDone: self._on_response_done,
            rt.TranscriptDone: lambda e, out: (self.conversation.ai_said(e, e.response_id in self.book.abandoned, out),
                                               self.history.said(e, e.response_id in self.book.abandoned)),
            rt.InputTranscription: lambda e, out: self.conversation.caller_said(e, self.desk.lead,
                                                                                self.turn.last_utterance_ms, out),
            rt.FunctionCallDone: self._on_function_call,
            rt.RealtimeError: lambda e, out: self.book.on_error(e, self.stats, out),
            rt.UnknownServerEvent: lambda e, out: out.append(note('WARNING', 'unreadable_event', event=e)),
            rt.MalformedServerEvent: lambda e, out: out.append(note('WARNING', 'unreadable_event', event=e)),
        }

    # --- the door -----------------------------------------------------------------------------

    def handle(self, event: CoreEvent) -> list[CoreAction]:
        out: list[CoreAction] = []
        self._now_ms = event.now_ms
        self._handlers[type(event)](event, out)
        if self.ending.shutdown_at_ms is not None or self.ending.after_playout is not None:
            self._check_ending(out)
        self.history.watch(out)
        self.timeline.on_notes(event.now_ms, out)
        return out

    def next_deadline_ms(self) -> int | None:
        """When the shell must send the next ``Tick`` (None: no timer needed until the next event)."""
        deadlines = [self.book.guard.next_deadline_ms(), self.link.renew_at_ms, self.status.due_ms(self._now_ms),
                     self.ending.shutdown_deadline_ms()]
        if self.playback.drains and not self.turn.judge.paused:
            deadlines.append(self._now_ms + self.cfg.drain_poll_ms)
        if self.state is Pipeline.PROCESSING:
            deadlines.append(self.clock.deadline_ms())
        if self.state is Pipeline.LISTENING and not self.ending.ended:
            deadlines.append(self.silence.deadline_ms(self._now_ms))
        return min((d for d in deadlines if d is not None), default=None)

    def finish(self, stream_end_reason: str | None = None) -> Ending:
        """The call is over. ``stream_end_reason``: why the stream ended when the core did not end it
        (the caller hung up, a socket or the model went away); None when it ended on our verb."""
        return self.ending.finish(stream_end_reason, self.desk.lead, self.desk.complete_lead_written, self.stats,
                                  self.conversation.replay(), self.timeline.to_dict(self._now_ms), self.link.up)

    # --- what several parts answer together ---------------------------------------------------

    @property
    def state(self) -> Pipeline:
        return self.pipeline.state

    @property
    def is_ai_speaking(self) -> bool:
        return self.playback.audible

    @property
    def lead(self) -> LeadCapture | None:
        return self.desk.lead

    def _idle(self) -> bool:
        """Between turns: listening, no response asked for or in flight, nothing audible."""
        return self.state is Pipeline.LISTENING and not self.book.busy and not self.playback.audible

    def _move(self, cause: Cause, detail: str, out: list[CoreAction]) -> None:
        new = self.pipeline.move(cause, detail)
        if new is None:
            return
        if new is Pipeline.LISTENING:
            self.silence.restart(self._now_ms)
        out.append(note('INFO', 'state_changed', state=new.value, detail=detail))

    def _ask_model(self, reason: str, out: list[CoreAction], cause: Cause | None = None, detail: str = "") -> None:
        """An answer the core wants (not a caller's turn), asked behind the caller audio already queued."""
        if cause is not None:
            self._move(cause, detail, out)
        self.clock.asked(self._now_ms)
        out.append(QueueTrigger(reason))

    def _on_trigger(self, ev: CommitSent | TriggerReached, out: list[CoreAction]) -> None:
        """The one way to a ``response.create``: guarded against active or pending responses."""
        if ev.reason == TOOL_RESULT:
            self.desk.follow_up_owed = False
        if self.ending.ended:
            out.append(note('INFO', 'guard_call_ending', reason=ev.reason))
            return
        send, notes = self.book.ask(ev.reason, ev.now_ms)
        out.extend(notes)
        if send:
            self.clock.create_sent(ev.now_ms, caller_turn=isinstance(ev, CommitSent))
            out.append(SendResponseCreate(ev.reason, self.prompts.get(ev.reason)))
            out.append(note('INFO', 'response_create_sent', reason=ev.reason))

    def _hang_up(self, reason: str, out: list[CoreAction]) -> None:
        self.ending.hang_up(reason, self.desk.lead_complete, out)

    def _stop_speaking(self, out: list[CoreAction] | None = None) -> None:
        """The AI is no longer audible: nothing plays and nothing stays paused (``out`` given: a paused
        playout is resumed for what comes next; a ClearPlayback ends the pause in the shell itself)."""
        if self.turn.judge.paused and out is not None:
            out.append(ResumePlayout())
        self.playback.playing = None
        self.turn.judge.reset()

    # --- the caller -----------------------------------------------------------------------------

    def _on_caller_frame(self, ev: CallerFrame, out: list[CoreAction]) -> None:
        turn = self.turn
        heard = turn.listen(ev, self.playback.echo_blocked(ev.now_ms), self.playback.audible, out)
        if isinstance(heard.verdict, Resume):
            self.playback.shift_drains(heard.verdict.paused_ms)
        elif isinstance(heard.verdict, Interrupt):
            self._barge_in(heard.verdict, heard.gate.verdict, out)
        if turn.take(ev, heard, heard.opened or heard.gate.forward, out):
            self.silence.restart(ev.now_ms)
        for rec in heard.records:
            if isinstance(rec, SpeechStarted):
                turn.speech_started(rec, out)
            elif isinstance(rec, UtteranceEnded):
                self._on_utterance_end(rec, ev.now_ms, out)
        turn.after_frame(heard, out)
        if self.hold.state is not HoldState.IDLE:
            start_ms = turn.resumed_speech_start()      # the caller's speech, not a click, noise or the room
            if start_ms is not None:
                self._on_caller_resumed(start_ms, out)
        self._release_if_quiet(out, heard.audible)

    def _on_utterance_end(self, rec: UtteranceEnded, now_ms: int, out: list[CoreAction]) -> None:
        utterance = self.turn.judge_utterance(rec, now_ms, out)
        if utterance is None:
            if self.desk.answer_with_turn and not self.book.busy:    # not a turn after all: the answers
                self.desk.answer_with_turn = False                   # get their own follow-up now
                self._ask_model(TOOL_RESULT, out, Cause.TOOL, "tool answers after the caller's words")
            return
        if self.ending.winding_up and not self.desk.answer_with_turn:
            out.append(note('INFO', 'utterance_call_ending'))
            return
        if not self.link.up:
            # The audio never reached OpenAI; the answer is asked for once the link is back.
            self.link.answer_owed = True
            self.stats.turns += 1
            self._move(Cause.UTTERANCE, "utterance during reconnection", out)
            out.append(note('WARNING', 'utterance_link_down'))
            return
        self.turn.answered(utterance)
        self.stats.turns += 1
        self.silence.on_caller_turn(now_ms)
        self.conversation.caller_turn(rec.end_ms, utterance.duration_ms, out)
        self._move(Cause.UTTERANCE, f"len={self.turn.sound.bytes} | silence_ms={rec.silence_ms}", out)
        self.clock.turn_ended(now_ms, utterance.speech_end_ms)
        self.desk.chain, self.desk.answer_with_turn = 0, False
        if self.cfg.reply_hold_ms > 0:
            self.hold.arm(rec.end_ms, self.turn.last_audible_ms)
        self.turn.committed(out)              # every frame of the utterance before its commit
        out.append(CommitAndTrigger("end_of_speech"))
        out.append(note('INFO', 'trigger_queued'))
        if self.stats.turns >= self.cfg.max_turns:
            out.append(note('WARNING', 'turn_limit', max_turns=self.cfg.max_turns))
            self.ending.close_after_playout("max_turns")

    def _barge_in(self, verdict: Interrupt, echo, out: list[CoreAction]) -> None:
        self.stats.barge_ins += 1
        self.clock.cut()                          # an answer cut before it was heard has no latency
        out.append(note('INFO', 'barge_in', sound_ms=verdict.sound_ms, echo_text=echo_text(echo),
                        paused_ms=verdict.paused_ms, rid=self.playback.playing))
        self.playback.clear(self.book.barge_in(self.playback.playing, out), out)
        self._stop_speaking()
        self._move(Cause.BARGE_IN, "barge-in", out)

    def _on_caller_resumed(self, start_ms: int, out: list[CoreAction]) -> None:
        abandoned = self.hold.on_caller_resumed(start_ms)
        if abandoned is None:
            return
        self.stats.resumed_turns += 1
        out.append(note('INFO', 'hold_resumed', pause_ms=abandoned.pause_ms,
                        response=abandoned.response_id or '(not created yet)'))
        self.book.abandon(abandoned.response_id, abandoned.item_ids, out)
        self.desk.abandon_parked()         # a tool's I/O still running: no follow-up over the caller
        self.clock.abandon()
        self.turn.turn_resumed = True      # its first part was speech: the rest is not vetoed as steady sound
        if self.state is Pipeline.PROCESSING:
            self._move(Cause.RESUMED, "caller resumed during the hold", out)

    def _release_if_quiet(self, out: list[CoreAction], audible: bool = False) -> None:
        quiet = self.turn.quiet(holding=self.hold.state is HoldState.HOLDING)
        released = self.hold.on_caller_audio(self.turn.audio_now_ms, quiet, audible)
        if released is None:
            return
        out.append(note('INFO', 'hold_released', response_id=released.response_id, silence_ms=released.silence_ms,
                        audio_ms=released.audio_ms))
        for e in released.held:
            if isinstance(e, rt.AudioDelta):
                self._on_audio_delta(e, out)
            elif isinstance(e, rt.AudioDone):
                self._end_audio(e.response_id, out)
            else:
                self._after_response_done(e, out)

    def _on_digit(self, ev: CallerDigit, out: list[CoreAction]) -> None:
        reason = self.keypad.press(ev.digit, self.ending, out)
        if reason is not None and not self.ending.ended and self._idle():
            self._ask_model(reason, out, Cause.PROMPT, f"keypad {ev.digit}")
        # AI speaking or a response in flight: its playout ends first; a transfer follows it then

    # --- the model ------------------------------------------------------------------------------

    def _on_session_updated(self, e: rt.SessionUpdated, out: list[CoreAction]) -> None:
        what = self.link.on_ready(self._now_ms, self.conversation.replay(), out)
        if what == "greet":
            self._ask_model("greeting", out, Cause.GREETING, "greeting")
        elif what == "restore" and self.link.answer_owed:
            self.link.answer_owed = False
            self._ask_model("resume", out)

    def _on_response_created(self, e: rt.ResponseCreated, out: list[CoreAction]) -> None:
        self.stats.responses_created += 1
        if self.book.on_created(e.response_id, out) and self.hold.bind(e.response_id):
            out.append(note('INFO', 'hold_armed', response_id=e.response_id, reply_hold_ms=self.cfg.reply_hold_ms))

    def _on_audio_delta(self, e: rt.AudioDelta, out: list[CoreAction], received: bool = False) -> None:
        """``received``: as it came from the model (a held reply keeps it); False when released."""
        if e.response_id in self.book.cancelled:
            self.stats.dropped_deltas += 1
            return
        if received and self.hold.holds(e.response_id):
            self.hold.keep(e.response_id, e, e.item_id)
            self._release_if_quiet(out)           # the caller may have been quiet long enough already
            return
        first = self.book.on_audio(e.response_id, e.item_id)
        if first:
            self.clock.first_audio(self._now_ms, e.item_id)
            self._move(Cause.FIRST_AUDIO, f"first audio of {e.response_id}", out)
        self.playback.queue(e.response_id, e.item_id, base64.b64decode(e.audio_b64), first, out)

    def _end_audio(self, response_id: str, out: list[CoreAction]) -> None:
        if self.book.end_audio(response_id):
            self.playback.end(response_id, self._now_ms, out)

    def _on_response_done(self, e: rt.ResponseDone, out: list[CoreAction]) -> None:
        if self.book.on_done(e, self.stats, out) and not self.ending.ended:
            out.append(note('ERROR', 'model_failing', failed=self.book.failed_in_row, code=e.error_code or "unknown"))
            self._hang_up(MODEL_FAILING, out)
        self.book.forget_abandoned(e.response_id, e.item_ids, out)
        if not self.hold.holds(e.response_id):
            self._after_response_done(e, out)
        elif self.hold.has_events():
            self.hold.keep(e.response_id, e)          # its end of audio and tool answers follow the release
        elif self._after_response_done(e, out):
            self.hold.rearm()                          # no audio but a tool call: the follow-up is held instead
        else:
            self.hold.cancel()

    def _after_response_done(self, e: rt.ResponseDone, out: list[CoreAction]) -> bool:
        """The end of a response's audio, its tool answers, the pipeline after it. True when a
        follow-up response is owed (or waits for a tool's I/O)."""
        self._end_audio(e.response_id, out)
        if self.desk.has_answers(e.response_id):
            if self.desk.waiting_on(e.response_id):
                self.desk.park(e.response_id, e.status)        # answered when the I/O is in
                return True
            if self._send_answers(e.response_id, e.status, out):
                return True
        self._settle(e.response_id, out)
        return False

    def _settle(self, response_id: str, out: list[CoreAction]) -> None:
        """A response is over with no follow-up: without audio the pipeline listens again (and a
        closing call hangs up); a request deferred behind it goes now."""
        if not self.book.had_audio(response_id) and self.state is Pipeline.PROCESSING:
            self.clock.stop_waiting()
            self._move(Cause.NO_AUDIO, "response ended without audio", out)
            if self.ending.after_playout is not None:
                self._hang_up(self.ending.after_playout, out)
        deferred = self.book.take_deferred(response_id)
        if deferred is not None:
            out.append(QueueTrigger(deferred))

    def _on_link_lost(self, ev: RealtimeLinkLost, out: list[CoreAction]) -> None:
        if self.book.link_lost() or self.state is Pipeline.PROCESSING:
            self.link.answer_owed = True               # a turn was waiting for its answer
        if not self.link.on_lost(ev.now_ms, ev.reason, out):
            self.ending.hang_up("realtime_closed", self.desk.lead_complete, out, announce=False)
            return
        self.hold.cancel()                # a held reply died with the session; the owed turn is re-asked
        self.desk.clear()                 # their calls died with the session; the lead itself is kept
        self.clock.stop_waiting()
        out.append(note('WARNING', 'link_lost', reason=ev.reason, turns=len(self.conversation),
                        owed='; an answer is owed' if self.link.answer_owed else ''))

    def _on_reconnect_failed(self, ev: ReconnectFailed, out: list[CoreAction]) -> None:
        """Bounded backoff, then the call ends with the fallback message (the shell's apology)."""
        if not self.link.on_reconnect_failed(ev.attempt, ev.reason, out):
            self.ending.hang_up("realtime_closed", self.desk.lead_complete, out, announce=False)

    # --- tools ----------------------------------------------------------------------------------

    def _tool_context(self) -> ToolContext:
        return ToolContext(self.desk.lead, self.ending.person_available)

    def _on_function_call(self, e: rt.FunctionCallDone, out: list[CoreAction]) -> None:
        """Answer now (or ask for its I/O), send after the response is done."""
        self.stats.tool_calls += 1
        self._carry_out(self.desk.on_call(e, self._tool_context(), out), out)

    def _on_tool_io(self, ev: ToolIoDone, out: list[CoreAction]) -> None:
        response_id, effects = self.desk.on_io_done(ev.ticket, ev.result, ev.error, self._tool_context(), out)
        self._carry_out(effects, out)
        talking = self.turn.vad.state is not VadState.SILENCE
        status = self.desk.unpark(response_id, self.conversation.tool_answered, talking, out) if response_id else None
        if status is not None and not self._send_answers(response_id, status, out):
            self._settle(response_id, out)     # its response ended while the I/O ran: nothing follows

    def _carry_out(self, effects, out: list[CoreAction]) -> None:
        for effect in effects:
            if isinstance(effect, WantsPerson):
                self.ending.ask_for_person(effect.reason, out)
            elif (isinstance(effect, LeadUpdated) and self.desk.lead_updated(effect, self.ending.asked_for_person, out)
                  and self.ending.close_after_playout("lead_captured")):
                out.append(note('INFO', 'lead_complete'))

    def _send_answers(self, response_id: str, status: str, out: list[CoreAction]) -> bool:
        """Send this response's tool answers and, unless it was cancelled, ask for the follow-up.
        True when a follow-up is owed (the pipeline stays PROCESSING for it)."""
        self.desk.send_answers(response_id, self.conversation.tool_answered, out)
        if (status == "cancelled" or response_id in self.book.cancelled or self.ending.ended
                or not self.desk.chain_allows(out)):
            return False              # the caller is talking; their turn's response sees the answer
        self.desk.follow_up_owed = True
        if status == ABANDONED and self.book.busy:    # the caller's turn was answered without them: after it
            self.book.defer(TOOL_RESULT)
            out.append(note('INFO', 'tool_answers_deferred', response_id=response_id))
            return True
        self._ask_model(TOOL_RESULT, out, None if self.playback.audible else Cause.TOOL,
                        f"tool answer for {response_id}")
        return True

    # --- playout --------------------------------------------------------------------------------

    def _on_frame_played(self, ev: AssistantFramePlayed, out: list[CoreAction]) -> None:
        self.clock.frame_played(ev.item_id, ev.now_ms)
        self.playback.played(ev, self.turn.gate.on_played)

    def _on_playout_finished(self, ev: AssistantPlayoutFinished, out: list[CoreAction]) -> None:
        self.playback.finished(ev.response_id, ev.response_id in self.book.cancelled, out)

    def _on_mark_acked(self, ev: MarkAcked, out: list[CoreAction]) -> None:
        if not self.playback.acked(ev.name, out):
            return
        self._stop_speaking(out)
        self.history.heard_whole(self.book.busy or self.desk.owes_follow_up or any(self.playback.ledger.queues()), out)
        if self.state is Pipeline.SPEAKING:
            self._move(Cause.PLAYED, "buffer_reset", out)
        if self.ending.after_playout is not None and not self.book.busy and not self.desk.owes_follow_up:
            self._hang_up(self.ending.after_playout, out)

    # --- time and the call's end ------------------------------------------------------------------

    def _on_tick(self, ev: Tick, out: list[CoreAction]) -> None:
        self._poll_drains(ev.now_ms, out)
        if self.book.expired(ev.now_ms, out) and self.state is Pipeline.PROCESSING:
            self.clock.stop_waiting()
            self._move(Cause.NO_AUDIO, "watchdog: no response.created", out)
        overdue_ms = self.clock.overdue_ms(ev.now_ms) if self.state is Pipeline.PROCESSING else None
        if overdue_ms is not None:
            out.append(note('WARNING', 'watchdog_no_audio', waited_ms=overdue_ms))
            self.clock.abandon()                   # unanswered: no latency figure for this turn
            self._move(Cause.NO_AUDIO, "watchdog: no audio", out)
        self._check_silence(ev.now_ms, out)
        if self.link.renewal_due(ev.now_ms, self._idle()):
            out.append(note('INFO', 'session_renewal'))
            out.append(RenewSession())
        deadline_ms = self.ending.shutdown_deadline_ms()
        if deadline_ms is not None and ev.now_ms >= deadline_ms:
            out.append(note('WARNING', 'shutdown_limit', limit_ms=deadline_ms - self.ending.shutdown_at_ms))
            self._hang_up("shutdown", out)
        if self.status.on_tick(ev.now_ms):
            out.append(note('INFO', 'pipeline_status', frames_sent=self.stats.frames_sent,
                            frames_blocked=self.stats.frames_blocked,
                            active_response_id=self.book.guard.active_response_id,
                            is_ai_speaking=self.playback.audible, user_has_spoken=self.turn.user_has_spoken))

    def _poll_drains(self, now_ms: int, out: list[CoreAction]) -> None:
        # a paused playout drains nothing; the deadlines move on resume
        if not self.turn.judge.paused and self.playback.poll_drains(now_ms, self.book.guard.active_response_id, out):
            self._stop_speaking(out)

    def _check_silence(self, now_ms: int, out: list[CoreAction]) -> None:
        listening = (self.link.up and self._idle() and self.turn.vad.state is VadState.SILENCE
                     and not self.ending.winding_up and not self.playback.echo_blocked(now_ms))
        step = self.silence.on_tick(now_ms, listening, out)
        if step is SilenceStep.WARN:
            self._ask_model(SilenceStep.WARN.value, out, Cause.PROMPT, "silence_warning")
        elif step is SilenceStep.GOODBYE:
            self.ending.close_after_playout("silence_timeout")
            self._ask_model(SilenceStep.GOODBYE.value, out, Cause.PROMPT, "goodbye")

    def _on_shutdown(self, ev: ShutdownRequested, out: list[CoreAction]) -> None:
        if self.ending.shutdown(ev.now_ms):
            out.append(note('INFO', 'shutdown_requested'))

    def _check_ending(self, out: list[CoreAction]) -> None:
        """After every event once the call is ending: start a draining server's goodbye when the
        call is idle; hang up when a goodbye ended without being heard (failed or no audio)."""
        idle, ending = self._idle(), self.ending
        if (ending.shutdown_at_ms is not None and self.link.up and ending.after_playout is None
                and not ending.ended and idle):
            ending.close_after_playout("shutdown")
            self._ask_model(SilenceStep.GOODBYE.value, out, Cause.PROMPT, "goodbye (shutdown)")
        elif (ending.after_playout is not None and idle and not self.desk.owes_follow_up
                and not self.playback.ledger.marks_pending):
            self._hang_up(ending.after_playout, out)
