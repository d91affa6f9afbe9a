"""The decisions of one call, as a pure state machine.

Theory of operation. The shell feeds facts (``server.core.events``) stamped with ``now_ms``;
``handle`` returns verbs and notes (a code and fields; the shell renders the line from
``log_lines``). Nothing here touches a socket or a clock.

* Model session: each ``session.created`` is answered with ``ConfigureSession``; the first
  ``session.updated`` opens the caller's audio path (``StartAudio``) and asks for the greeting; one
  after a lost link restores it (``ReplayConversation``, then the answer that was owed). A lost
  link is retried on this module's backoff (``Reconnect`` out, ``ReconnectFailed`` in), then the
  call ends with the fallback. A model that loses every session soon after opening it cannot
  loop: sessions lost within ``STABLE_SESSION_MS`` of opening spend one budget of
  ``MAX_QUICK_LOSSES`` (a healthy session's loss starts a new one), and no call replaces its link
  more than ``MAX_LINK_LOSSES`` times. ``MAX_FAILED_RESPONSES`` responses failed in a row end the
  call with the fallback too (``MODEL_FAILING``), the lead so far kept. ``finish`` gives the
  call's outcome and the lead to keep.
* Caller side: EVERY inbound frame goes through the VAD, whatever the echo state. The
  ``CallerGate`` decides whether the frame reaches OpenAI: only utterances do (with their
  pre-roll); inside the echo window they are held back, released when the echo detector sees
  sustained speech the AI's echo cannot explain. An utterance that reached OpenAI with less than
  ``min_utterance_ms`` of audio lay inside the echo block and does not trigger.
* Whose voice: ``CallerVoice`` keeps the room's level (other voices, a street) and the caller's;
  the room raises the VAD's threshold, and a sound that is the room's, not the caller's, neither
  triggers, nor resumes a turn over a held reply, nor keeps that reply held.
* Barge-in: caller speech the echo cannot explain, sustained ``barge_in_min_ms`` over the AI,
  *pauses* the AI's playout at once (``BargeInJudge``). A sound that ends within
  ``barge_in_confirm_ms`` is a backchannel: playout resumes where it stopped. A longer one is a
  barge-in: the gate opens, the response is cancelled, Twilio's buffer and our queues cleared, the
  assistant item truncated at what was played, late deltas dropped. The caller's end of utterance
  then yields exactly one new response (deferred until the cancelled one's ``response.done`` if it
  is still finishing).
* Turn trigger: a valid end of utterance yields ``CommitAndTrigger``; the shell commits after the
  audio already queued and then calls ``request_response``, the ONLY producer of
  ``SendResponseCreate``, guarded by ``ResponseGuard`` (active-or-pending -> skip).
* Hold: the reply to a caller turn is asked for at the end of utterance but its playout events
  wait in ``ReplyHold`` until the caller has been silent ``reply_hold_ms``; a caller who resumes
  first gets that unheard reply cancelled and its items deleted, and one reply after the real end.
* AI side: the first audio delta of a response makes the AI "speaking" (``-> SPEAKING``).
  ``response.output_audio.done`` starts one drain check bound to that response id; the TX loop
  reports played frames and the end of playout, which sends ``assistant_tts_end``; its ack returns
  the pipeline to ``LISTENING``.
* Silence: ``SilencePolicy`` asks for labelled prompts, then a goodbye; the smart hangup follows
  the goodbye's playout.
* Lead capture: a ``save_lead`` tool call (``response.function_call_arguments.done``) is answered
  by ``LeadCapture``; the answer goes back as ``SendToolOutput`` once that response is done, and
  the follow-up response is one more ``QueueTrigger`` through the same guard (never a second
  response in flight). A lead that becomes complete makes the follow-up the goodbye, and the
  smart hangup follows its playout (``Lead captured: True``).
* Transfer to a person: the model's ``transfer_to_human`` tool, or a keypad key mapped to
  ``person``. Where transfers are allowed (the shell says so at the start, from the business's
  hours), the AI says one short line through the guarded trigger, its audio plays to the end, then
  ``TransferCall`` (the shell redirects the call to ``<Dial>``); elsewhere the tool answers
  "unavailable" and the model offers a call back. Either way the call is marked as having asked
  for a person. A keypad digit is never speech: only its mapped action (``person``, ``repeat``).
* Time: the core says when it next needs waking (``next_deadline_ms``) and the shell sends a
  ``Tick`` then, never on a fixed poll: response and audio watchdogs, the silence clock, the
  drain of a finished response (polled every ``drain_poll_ms`` while one is pending), the status
  line, the session renewal before OpenAI's 60-minute limit (``RenewSession`` once the call is
  idle) and the goodbye limit of a draining server. Conditions that events change (the goodbye of
  a draining server, the hangup after a goodbye that never played) are re-checked after every
  event, so they need no timer.
* Stale events expected from the race between two peers (a delta of a cancelled response, the
  echo of a cleared mark) are dropped quietly and counted.

The detectors and policies live in their own modules (VAD, gate, echo detector, guard, drain,
silence, speech-likeness); this file is only their composition and the pipeline's transitions.
It stays one file, longer than the others, because splitting one state machine's transitions
across files would hide which event can move which state.
"""
from __future__ import annotations

import base64
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Mapping

from server.core import realtime_protocol as rt
from server.core.barge_in import BargeInJudge, Interrupt, Pause, Resume
from server.core.caller_gate import CallerGate
from server.core.caller_voice import CallerVoice
from server.core.drain import DrainCheck, Drained, DrainSuperseded, DrainTimedOut
from server.core.energy_vad import EnergyVad, SpeechStarted, UtteranceEnded, VadState
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerDigit, CallerFrame, CancelResponse,
                                ClearPlayback, CommitAndTrigger, ConfigureSession, CoreAction, CoreEvent, DeleteItem,
                                EndAssistantAudio, ForwardAudio, HangUp, LeadChanged, MarkAcked, Note, note,
                                PausePlayout, QueueAssistantAudio, QueueTrigger, RealtimeLinkLost, RealtimeReceived,
                                Reconnect, ReconnectFailed, RenewSession, ReplayConversation, ResumePlayout, SendMark,
                                SendResponseCreate, SendToolOutput, ShutdownRequested, StartAudio, Tick,
                                TransferCall, TruncateAssistant)
from server.core.playout import PlayoutLedger
from server.core.reply_hold import HoldState, ReplyHold
from server.core.room_level import level_db
from server.core.response_guard import ResponseGuard, SendCreate
from server.core.silence_policy import SilencePolicy, SilenceStep
from server.core.speech_likeness import SpeechLikeness
from server.core.timeline import Timeline
from server.core.turn_config import TurnConfig
from server.core.ulaw import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, energy, rms
from server.leads.capture import LeadCapture, LeadSnapshot

TTS_END_MARK = "assistant_tts_end"
MIN_COMMIT_BYTES = 100 * BYTES_PER_MS      # OpenAI refuses commits under 100 ms
TOOL_RESULT = "tool_result"                # trigger reason of the response that follows a tool answer
MAX_TOOL_CHAIN = 3                         # tool answers in a row without the caller speaking
SHUTDOWN_GOODBYE_LIMIT_MS = 20000          # under gunicorn's graceful_timeout (25 s)
RENEW_RETRY_MS = 1000                      # a renewal that found the call busy looks again this much later
RECONNECT_BACKOFF_MS = (250, 1000, 2500)   # bounded: three tries, ~4 s, then the fallback message
STABLE_SESSION_MS = 15000                  # a session that lived this long was healthy: its loss starts a new budget
MAX_QUICK_LOSSES = 3                       # sessions lost within STABLE_SESSION_MS of opening, in a row
MAX_LINK_LOSSES = 6                        # whatever happens, a call replaces its model link at most this often
MAX_FAILED_RESPONSES = 2                   # responses failed in a row (rate limits, server errors): then the apology
MODEL_FAILING = "realtime_failing"         # the hangup reason of a model that fails every response
TRANSFER_TOOL = "transfer_to_human"
TRANSFER_TOOL_SPEC = {
    "type": "function",
    "name": TRANSFER_TOOL,
    "description": ("Transfer the call to a person at the business, when the caller asks to speak with a person "
                    "or needs something you may not handle. Its answer says whether a person can take the call now."),
    "parameters": {"type": "object", "properties": {
        "reason": {"type": "string", "description": "Why, in a few words (e.g. 'asked for a person')."}},
        "required": ["reason"]},
}
TRANSFERRED = "transferred"                # the hangup reason of a call handed to a person
KEYPAD_PROMPTS = {
    "transfer": "The caller asked for a person. Say in one short sentence, in the caller's language, that you "
                "are transferring them now. Say nothing else.",
    "transfer_unavailable": "The caller asked for a person, but no one can take the call right now. Say so "
                            "briefly, offer that someone will call back, and take the caller's details.",
    "repeat": "The caller asked you to repeat. Repeat your last answer briefly.",
}
TRANSFER_TOOL_ANSWERS = {
    True: '{"status":"transferring","next":"Tell the caller in one short sentence that you are transferring '
          'them to a person now. Say nothing else."}',
    False: '{"status":"unavailable","next":"No one can take the call right now. Say so briefly, offer that '
           'someone will call back, and take the caller\'s details."}',
}


class Pipeline(Enum):
    LISTENING = "LISTENING"
    PROCESSING = "PROCESSING"
    SPEAKING = "SPEAKING"


class Cause(Enum):
    """Why the pipeline moves: the transition table allows each move for some causes only."""
    GREETING = "greeting"
    UTTERANCE = "end of utterance"
    TOOL = "tool answer"
    PROMPT = "silence prompt or goodbye"
    FIRST_AUDIO = "first audio"
    NO_AUDIO = "response ended without audio or a watchdog gave up"
    RESUMED = "caller resumed during the hold"
    BARGE_IN = "barge-in"
    PLAYED = "played to the end"


_L, _P, _S = Pipeline.LISTENING, Pipeline.PROCESSING, Pipeline.SPEAKING
_PIPELINE_ALLOWED: dict[tuple[Pipeline, Pipeline], frozenset[Cause]] = {
    (_L, _P): frozenset({Cause.GREETING, Cause.UTTERANCE, Cause.TOOL, Cause.PROMPT}),
    (_P, _S): frozenset({Cause.FIRST_AUDIO}),
    (_L, _S): frozenset({Cause.FIRST_AUDIO}),           # audio of a response asked for while listening
    (_P, _L): frozenset({Cause.NO_AUDIO, Cause.RESUMED, Cause.BARGE_IN}),
    (_S, _L): frozenset({Cause.PLAYED, Cause.BARGE_IN, Cause.NO_AUDIO}),
    # The reply's first frames are queued, not played yet, when the caller's turn ends or a tool's
    # answer comes: a new turn begins over an AI that was never heard.
    (_S, _P): frozenset({Cause.UTTERANCE, Cause.TOOL}),
}
"""Forbidden, among others: a greeting, silence prompt or goodbye over an AI that is speaking;
SPEAKING or LISTENING from anything but a response's first audio."""

STRICT_TRANSITIONS = False
"""Tests set it: a forbidden transition raises instead of being logged (a warning in production)."""


class ForbiddenTransition(RuntimeError):
    pass


@dataclass
class ResponseTrack:
    audio_started: bool = False
    audio_ended: bool = False
    item_id: str | None = None


@dataclass
class CallStats:
    frames_sent: int = 0
    frames_blocked: int = 0
    turns: int = 0
    responses_created: int = 0
    barge_ins: int = 0
    errors: Counter = field(default_factory=Counter)
    dropped_deltas: int = 0
    skipped_utterances: int = 0
    echo_blocked_utterances: int = 0
    vetoed_utterances: int = 0
    room_utterances: int = 0
    """Utterances that were the room's (other voices, a street), not the caller's: not answered."""
    latencies_ms: list = field(default_factory=list)
    """Caller's last voiced frame -> first AI audio released to the caller, per answered caller turn."""
    eou_to_create_ms: list = field(default_factory=list)
    """Caller's last voiced frame -> ``response.create`` sent, per caller turn."""
    played_latencies_ms: list = field(default_factory=list)
    """Caller's last voiced frame -> the answer's first frame sent to Twilio, per answered caller turn."""
    tool_calls: int = 0
    pauses: int = 0
    backchannels: int = 0
    resumed_turns: int = 0
    """Replies requested at an end of utterance and abandoned unheard because the caller went on."""


@dataclass(frozen=True)
class CallOutcome:
    outcome: str
    """``lead_captured``, ``partial_lead``, ``no_lead`` or ``failed``."""
    hangup_reason: str
    lead: LeadSnapshot | None
    stats: CallStats
    transcript: tuple[tuple[str, str], ...]
    timeline: dict = field(default_factory=dict)
    """The call's picture as data (``server.core.timeline``), stored with the call."""
    asked_for_person: bool = False
    """The caller asked for a person (the tool or the keypad), transferred or not."""


class CallCore:
    def __init__(self, config: TurnConfig, prompts: Mapping[str, str] | None = None,
                 voice_decider: Callable[[bytes], bool] | None = None, echo_detection: bool = True,
                 lead: LeadCapture | None = None, session_renew_ms: int | None = None,
                 transfer_allowed: bool = False, keypad: Mapping[str, str] | None = None) -> None:
        """``voice_decider`` (frame -> voiced) replaces the energy decision of the VAD and
        ``echo_detection=False`` treats every voiced frame as the caller's: both exist so other
        detectors can be measured under exactly the same turn-taking rules (scripts/bench_vad.py).
        ``session_renew_ms``: age of a model session at which it is renewed (None: never).
        ``transfer_allowed``: a person can take the call now (the business's number and hours);
        ``keypad``: digit -> ``person`` or ``repeat``."""
        self.cfg = config
        self.session_renew_ms = session_renew_ms
        self._renew_at_ms: int | None = None
        self._session_ready = False
        self._shutdown_at_ms: int | None = None
        self.prompts = {**KEYPAD_PROMPTS, **dict(prompts or {})}
        self.transfer_allowed = transfer_allowed
        self.keypad = dict(keypad or {})
        self.asked_for_person = False
        self._transfer_reason = ""
        self.voice_decider = voice_decider
        self.echo_detection = echo_detection
        self.lead = lead
        self._tool_outputs: dict[str, list[tuple[str, str, str]]] = {}   # response -> (call id, output, tool)
        self._follow_up_owed = False
        self._tool_chain = 0
        self._caller_speech_end_ms: int | None = None
        self._first_play_awaited: tuple[str, int] | None = None   # (item, caller's speech end) of an answer
        self.vad = EnergyVad(config)
        self.likeness = SpeechLikeness(config.speech_min_modulation_db)
        self.voice = CallerVoice(config, enabled=voice_decider is None)
        self._sound_room = False                   # the current sound was judged not the caller's
        self._utt_rms: list[float] = []
        self._sound_answered = False               # the current sound was answered: the caller's
        self._sound_level: tuple[int | None, float] = (None, 0.0)   # (frames, level) of the current sound
        self.gate = CallerGate(config)
        self.judge = BargeInJudge(config.barge_in_min_ms, config.barge_in_confirm_ms, config.backchannel_resume_ms,
                                  config.backchannel_max_ms, config.speech_min_modulation_db,
                                  config.speech_min_modulation_db * config.onset_modulation_pct / 100)
        self.hold = ReplyHold(config.reply_hold_ms, config.reply_hold_max_ms)
        self._last_audible_ms = 0                  # end of the last caller frame above the hold's quiet level
        self._abandoned: set[str] = set()         # held replies cancelled unheard: their items are deleted
        self._deleted_items: set[str] = set()
        self._audio_now_ms = 0                     # end of the latest caller frame, caller-audio time
        self._turn_resumed = False                 # this utterance goes on a turn already proven to be speech
        self._echo_path_noted: tuple[int | None, float] | None = None
        self.guard = ResponseGuard(config.response_created_timeout_ms)
        self.silence = SilencePolicy(config.silence_timeout_ms, config.max_silence_warnings)
        self.ledger = PlayoutLedger()
        self.state = Pipeline.LISTENING
        self.user_has_spoken = False
        self.conversation_index = 0
        self.stats = CallStats()
        self.timeline = Timeline()
        self.hangup_reason: str | None = None
        self._now_ms = 0
        self._responses: dict[str, ResponseTrack] = {}
        self._cancelled: set[str] = set()
        self._playing_response: str | None = None
        """The one owner of "the AI is audible": the response whose audio is playing (None: quiet)."""
        self._deferred_reason: str | None = None
        self._cancel_when_created = False
        self._shutdown = False
        self.link_up = True
        self._resume_after_restore = False
        self._session_began_ms: int | None = None   # when the current model session became ready
        self._quick_losses = 0                       # sessions lost soon after opening, in a row
        self._link_losses = 0
        self._failed_in_row = 0                      # responses failed in a row
        self.conversation: list[tuple[str, str]] = []
        """(role, text) of every transcribed turn, in order: replayed into a new session."""
        self._hangup_after_playout: str | None = None
        self._drains: dict[str, DrainCheck] = {}
        self._forwarded_since_commit_bytes = 0
        self._outgoing = bytearray()               # caller audio gathered for the next append
        self._append_batch_bytes = config.append_batch_ms * BYTES_PER_MS
        self._utt_forwarded_ms = 0
        self._utt_bytes = 0
        self._utt_blocked_at_start = False
        self._last_utterance_ms = 0
        self._eou_at_ms: int | None = None
        self._last_status_ms: int | None = None
        self._handlers = {
            CallerFrame: self._on_caller_frame,
            RealtimeReceived: self._on_realtime, AssistantFramePlayed: self._on_frame_played,
            AssistantPlayoutFinished: self._on_playout_finished, MarkAcked: self._on_mark_acked,
            Tick: self._on_tick, ShutdownRequested: self._on_shutdown,
            RealtimeLinkLost: self._on_link_lost,
            ReconnectFailed: self._on_reconnect_failed,
            CallerDigit: self._on_digit,
        }

    # --- the two entry points ---------------------------------------------------------------

    def handle(self, event: CoreEvent) -> list[CoreAction]:
        out: list[CoreAction] = []
        self._now_ms = event.now_ms
        self._handlers[type(event)](event, out)
        if self._shutdown or self._hangup_after_playout is not None:
            self._check_ending(out)
        self.timeline.on_notes(event.now_ms, out)
        return out

    def next_deadline_ms(self) -> int | None:
        """When the shell must send the next ``Tick`` (None: no timer needed until the next event)."""
        deadlines = [self.guard.next_deadline_ms(), self._renew_at_ms, self._status_due_ms()]
        if self._drains and not self.judge.paused:
            deadlines.append(self._now_ms + self.cfg.drain_poll_ms)
        if self.state is Pipeline.PROCESSING and self._eou_at_ms is not None:
            deadlines.append(self._eou_at_ms + self.cfg.no_audio_timeout_ms)
        if self.state is Pipeline.LISTENING and self.hangup_reason is None:
            deadlines.append(self.silence.deadline_ms(self._now_ms))
        if self._shutdown_at_ms is not None and self.hangup_reason is None:
            deadlines.append(self._shutdown_at_ms + SHUTDOWN_GOODBYE_LIMIT_MS)
        return min((d for d in deadlines if d is not None), default=None)

    def _status_due_ms(self) -> int:
        return (self._now_ms if self._last_status_ms is None else self._last_status_ms) + self.cfg.status_interval_ms

    def request_response(self, reason: str, now_ms: int) -> list[CoreAction]:
        """The one way to a ``response.create``: guarded against active or pending responses."""
        self._now_ms = now_ms
        if reason == TOOL_RESULT:
            self._follow_up_owed = False
        if self.hangup_reason is not None:
            return [note('INFO', 'guard_call_ending', reason=reason)]
        if self.guard.active_response_id is not None and self.guard.active_response_id in self._cancelled:
            self._deferred_reason = reason
            return [note('INFO', 'guard_deferred', active_response_id=self.guard.active_response_id, reason=reason)]
        decision = self.guard.request(reason, now_ms)
        if not isinstance(decision, SendCreate):
            return [note('INFO', 'guard_skipped', blocking=decision.blocking, reason=reason)]
        if reason == "end_of_speech" and self._caller_speech_end_ms is not None:
            self.stats.eou_to_create_ms.append(now_ms - self._caller_speech_end_ms)
            self.timeline.response_requested(now_ms)
        sent = note('INFO', 'response_create_sent', reason=reason)
        self.timeline.on_note(now_ms, sent)
        return [SendResponseCreate(reason, self.prompts.get(reason)), sent]

    def echo_blocked(self, now_ms: int) -> bool:
        return self.ledger.audible_or_echoing(now_ms, self.cfg.echo_window_ms)

    # --- state funnel -----------------------------------------------------------------------

    def _set_state(self, new: Pipeline, cause: Cause, detail: str, out: list[CoreAction]) -> None:
        if new is self.state:
            return
        if cause not in _PIPELINE_ALLOWED.get((self.state, new), ()):
            if STRICT_TRANSITIONS:
                raise ForbiddenTransition(f"{self.state.value} -> {new.value} on {cause.value} ({detail})")
            out.append(note('WARNING', 'state_unexpected', old=self.state.value, new=new.value, detail=detail))
        self.state = new
        if new is Pipeline.LISTENING:
            self.silence.restart(self._now_ms)
        out.append(note('INFO', 'state_changed', state=new.value, detail=detail))

    # --- the model session ------------------------------------------------------------------

    def _on_session_updated(self, now_ms: int, out: list[CoreAction]) -> None:
        """The first configured session opens the audio path and greets; one after a reconnect is
        the link restored; any other ``session.updated`` changes nothing."""
        if not self._session_ready:
            self._on_session_ready(now_ms, out)
        elif not self.link_up:
            self._on_link_restored(now_ms, out)

    def _on_session_ready(self, now_ms: int, out: list[CoreAction]) -> None:
        self._session_ready = True
        self._session_started(now_ms)
        out.append(StartAudio())
        out.append(note('INFO', 'greeting_first'))
        out.append(note('INFO', 'greeting_same_session'))
        self._set_state(Pipeline.PROCESSING, Cause.GREETING, "greeting", out)
        self._eou_at_ms = now_ms
        out.append(QueueTrigger("greeting"))

    def _on_caller_frame(self, ev: CallerFrame, out: list[CoreAction]) -> None:
        in_window = self.echo_blocked(ev.now_ms)
        frame_rms = rms(ev.audio)
        before = self.vad.state
        self._audio_now_ms = ev.audio_end_ms
        voiced = self.voice_decider(ev.audio) if self.voice_decider is not None else None
        room_rms = self.voice.room_loud_rms(self.vad.floor_rms)        # how loud the room gets: 0 when quiet
        records = self.vad.on_frame(frame_rms, ev.audio_end_ms, track_floor=not in_window, voiced=voiced,
                                    min_threshold_rms=room_rms * self.voice.voiced_over_room)
        self.voice.on_frame(level_db(frame_rms), ev.audio_end_ms, in_window,
                            in_sound=before is not VadState.SILENCE or self.vad.state is not VadState.SILENCE)
        floor_rms = self.vad.floor_rms
        audible = frame_rms > max(floor_rms * self.cfg.hold_quiet_ratio_pct / 100 + self.cfg.hold_quiet_offset_rms,
                                  room_rms) if voiced is None else voiced
        if audible:
            self._last_audible_ms = ev.audio_end_ms
        barge_threshold = max(floor_rms * self.cfg.barge_in_ratio_pct / 100 + self.cfg.barge_in_offset_rms,
                              room_rms * self.voice.barge_over_room)
        if voiced is not None:
            barge_threshold = 0.0 if voiced else float("inf")
        ai_audible = self.is_ai_speaking
        gate = self.gate.on_caller_frame(ev.audio, frame_rms ** 2, ev.now_ms, in_window, barge_threshold,
                                         speech_in_progress=self.vad.state is not VadState.SILENCE,
                                         explain_echo=self.echo_detection, self_open=not ai_audible)
        forward = gate.forward
        self._note_echo_path(gate.verdict, out)
        if gate.opened:
            out.append(note('INFO', 'echo_gate_opened', echo_text=self._echo_text(gate.verdict)))
        if ai_audible:
            forward = self._judge_sound_over_ai(gate, frame_rms, ev.now_ms, out) or forward
        if gate.blocked and not forward:
            self.stats.frames_blocked += 1
            if self.vad.state is not VadState.SILENCE:
                self.timeline.run(ev.now_ms - FRAME_MS, ev.now_ms, "gate", "echo_blocked")
        else:
            self.stats.frames_sent += len(forward)
        if forward:
            self.timeline.run(ev.now_ms - len(forward) * FRAME_MS, ev.now_ms, "gate", "forwarded")
        for audio in forward:
            self._outgoing += audio
        if len(self._outgoing) >= self._append_batch_bytes:
            self._flush_forward(out)
        self._forwarded_since_commit_bytes += len(forward) * len(ev.audio)
        if before is VadState.SILENCE and self.vad.state is not VadState.SILENCE:
            self._utt_forwarded_ms, self._utt_bytes, self._utt_blocked_at_start = 0, 0, gate.blocked
            self.likeness.start()
            self._utt_rms = []
            self._sound_level = (None, 0.0)
        if before is not VadState.SILENCE or self.vad.state is not VadState.SILENCE:
            self.likeness.add(self.voice.speech_energy(frame_rms ** 2))
            self._utt_rms.append(frame_rms)
            self._utt_bytes += len(ev.audio)
            self._utt_forwarded_ms += len(forward) * FRAME_MS
            self.silence.restart(ev.now_ms)
        for rec in records:
            if isinstance(rec, SpeechStarted):
                if not self._utt_blocked_at_start:
                    self.user_has_spoken = True
                out.append(note('INFO', 'speech_started', echo_blocked=self._utt_blocked_at_start))
                out.append(note('INFO', 'utterance_start', start_ms=rec.start_ms))
            elif isinstance(rec, UtteranceEnded):
                self._on_utterance_end(rec, ev.now_ms, out)
        if self.vad.state is VadState.SILENCE and before is not VadState.SILENCE:
            # a sound that was not the caller's joins the room; so does a short one at the room's level
            self.voice.sound_ended(self._sound_room or (not self._sound_answered
                                                        and not self._sounds_callers(within_turn=False)))
            self._sound_room = self._sound_answered = False
            self.gate.close()
            self._flush_forward(out)          # the utterance is over: its tail goes now
        start_ms, voiced_end_ms = self.vad.utterance_start_ms, self.vad.last_voiced_end_ms
        if (self.hold.state is not HoldState.IDLE and start_ms is not None and voiced_end_ms is not None
                and voiced_end_ms - start_ms >= self.cfg.min_utterance_ms and self._sounds_callers()):
            self._on_caller_resumed(start_ms, out)    # the caller's speech, not a click, noise or the room
        self._release_if_quiet(out, audible)

    def _sounds_callers(self, within_turn: bool = True) -> bool:
        """Is the current sound (up to its last voiced frame) the caller's voice, not the room's?
        ``within_turn``: it goes on the caller's turn (see ``CallerVoice.is_callers``)."""
        start_ms, end_ms = self.vad.utterance_start_ms, self.vad.last_voiced_end_ms
        duration_ms = end_ms - start_ms if start_ms is not None and end_ms is not None else len(self._utt_rms) * FRAME_MS
        n = min(len(self._utt_rms), max(1, duration_ms // FRAME_MS))
        if n == 0:
            return True
        if self._sound_level[0] is None or abs(n - self._sound_level[0]) >= 5:    # a sort per 100 ms of sound
            self._sound_level = (n, self.voice.sound_level_db(self._utt_rms[:n]))
        return self.voice.is_callers(self._sound_level[1], self.vad.floor_rms, within_turn)

    def _flush_forward(self, out: list[CoreAction]) -> None:
        """Caller audio for the model goes in appends of ``append_batch_ms`` (one message, not ten),
        and whatever is gathered goes before a commit and at the end of an utterance."""
        if self._outgoing:
            out.append(ForwardAudio(bytes(self._outgoing)))
            self._outgoing.clear()

    def _judge_sound_over_ai(self, gate, frame_rms: float, now_ms: int, out: list[CoreAction]) -> tuple[str, ...]:
        """Pause, resume or interrupt the AI (``BargeInJudge``); the frames to forward on a barge-in."""
        verdict = self.judge.on_frame(gate.near_end, now_ms, 10.0 * math.log10(frame_rms * frame_rms + 1.0))
        if self.judge.paused or verdict is not None:
            self.gate.echo.hold_learning(now_ms)       # double talk: no echo path is learnt from it
        if isinstance(verdict, Pause):
            self.stats.pauses += 1
            out.append(PausePlayout())
            out.append(note('INFO', 'playout_paused', sound_ms=verdict.sound_ms,
                            echo_text=self._echo_text(gate.verdict)))
        elif isinstance(verdict, Resume):
            self.stats.backchannels += 1
            for check in self._drains.values():
                check.deadline_ms += verdict.paused_ms     # nothing drained while paused
            out.append(ResumePlayout())
            what = "steady sound (not speech)" if verdict.steady else "sound"
            out.append(note('INFO', 'backchannel', sound_ms=verdict.sound_ms, what=what, paused_ms=verdict.paused_ms))
        elif isinstance(verdict, Interrupt):
            forward = self.gate.open()
            self._barge_in(verdict, gate.verdict, out)
            return forward
        return ()

    def _note_echo_path(self, verdict, out: list[CoreAction]) -> None:
        """Log the echo path when it is learnt or moves (the lag by more than two frames, the gain by
        3 dB): rare, and what an operator needs to read a barge-in line."""
        if verdict.gain_db is None:
            return
        known = self._echo_path_noted
        moved = known is not None and (
            (known[0] is None) != (verdict.lag_ms is None)
            or (known[0] is not None and abs(known[0] - verdict.lag_ms) > 2 * FRAME_MS))
        if known is None or moved or abs(known[1] - verdict.gain_db) >= 3:
            self._echo_path_noted = (verdict.lag_ms, verdict.gain_db)
            what = "no echo, quiet line" if verdict.lag_ms is None else "echo path"
            out.append(note('INFO', 'echo_path', what=what, echo_text=self._echo_text(verdict),
                            lag_ms=verdict.lag_ms, gain_db=round(verdict.gain_db, 1)))

    @staticmethod
    def _echo_text(verdict) -> str:
        gain = "?" if verdict.gain_db is None else f"{verdict.gain_db:.0f}dB"
        return f"echo lag={verdict.lag_ms}ms gain={gain}"

    def _barge_in(self, verdict: Interrupt, echo, out: list[CoreAction]) -> None:
        rid = self._playing_response
        track = self._responses.get(rid, ResponseTrack())
        self.stats.barge_ins += 1
        self._first_play_awaited = None           # an answer cut before it was heard has no latency
        out.append(note('INFO', 'barge_in', sound_ms=verdict.sound_ms, echo_text=self._echo_text(echo),
                        paused_ms=verdict.paused_ms, rid=rid))
        # The caller is talking: whatever response is in flight is stale, not only the one playing.
        active = self.guard.active_response_id
        if active is not None:
            out.append(CancelResponse(active))
            self._cancelled.add(active)
        elif self.guard.pending_reason is not None:
            self._cancel_when_created = True
        out.append(ClearPlayback())
        self.ledger.on_clear()
        if track.item_id is not None:
            out.append(TruncateAssistant(track.item_id, self.ledger.truncate_point_ms(track.item_id)))
        self._cancelled.add(rid)
        self._drains.pop(rid, None)
        self._stop_speaking()
        self._set_state(Pipeline.LISTENING, Cause.BARGE_IN, "barge-in", out)

    def _stop_speaking(self, out: list[CoreAction] | None = None) -> None:
        """The AI is no longer audible: nothing plays and nothing stays paused (``out`` given: a paused
        playout is resumed for what comes next; a ClearPlayback ends the pause in the shell itself)."""
        if self.judge.paused and out is not None:
            out.append(ResumePlayout())
        self._playing_response = None
        self.judge.reset()

    # --- the hold of a reply ----------------------------------------------------------------

    def _on_caller_resumed(self, start_ms: int, out: list[CoreAction]) -> None:
        abandoned = self.hold.on_caller_resumed(start_ms)
        if abandoned is None:
            return
        rid = abandoned.response_id
        self.stats.resumed_turns += 1
        out.append(note('INFO', 'hold_resumed', pause_ms=abandoned.pause_ms, response=rid or '(not created yet)'))
        if rid is None:
            if self.guard.pending_reason is not None:
                self._cancel_when_created = True
        else:
            if self.guard.active_response_id == rid:
                out.append(CancelResponse(rid))
            self._cancelled.add(rid)
            self._abandoned.add(rid)
            self._delete_items(abandoned.item_ids, out)
        self._eou_at_ms = None
        self._caller_speech_end_ms = None
        self._turn_resumed = True          # its first part was speech: the rest is not vetoed as steady sound
        if self.state is Pipeline.PROCESSING:
            self._set_state(Pipeline.LISTENING, Cause.RESUMED, "caller resumed during the hold", out)

    def _delete_items(self, item_ids, out: list[CoreAction]) -> None:
        for item_id in item_ids:
            if item_id not in self._deleted_items:
                self._deleted_items.add(item_id)
                out.append(DeleteItem(item_id))

    def _release_if_quiet(self, out: list[CoreAction], audible: bool = False) -> None:
        # a sound that is not the caller's does not hold the reply back (the room is not a turn), once
        # it is long enough to tell: the onset of the caller's next words is soft
        start_ms, end_ms = self.vad.utterance_start_ms, self.vad.last_voiced_end_ms
        judged = start_ms is not None and end_ms is not None and end_ms - start_ms >= self.cfg.min_utterance_ms
        quiet = (self.vad.state is VadState.SILENCE
                 or (self.hold.state is HoldState.HOLDING and judged and not self._sounds_callers()))
        released = self.hold.on_caller_audio(self._audio_now_ms, quiet, audible)
        if released is None:
            return
        audio_ms = sum(len(r.event.audio_b64) * 3 // 4 // BYTES_PER_MS for r in released.held
                       if isinstance(r.event, rt.AudioDelta))
        out.append(note('INFO', 'hold_released', response_id=released.response_id, silence_ms=released.silence_ms,
                        audio_ms=audio_ms))
        for held in released.held:
            ev = RealtimeReceived(held.event, self._now_ms, held.tx_frames, held.out_chunks, audio_ms)
            if isinstance(held.event, rt.AudioDelta):
                self._on_audio_delta(held.event, out)
            elif isinstance(held.event, rt.AudioDone):
                self._end_audio(held.event.response_id, ev, out)
            else:
                self._after_response_done(held.event, ev, out)

    def _on_utterance_end(self, rec: UtteranceEnded, now_ms: int, out: list[CoreAction]) -> None:
        blocked = self._utt_forwarded_ms < self.cfg.min_utterance_ms
        dur = rec.duration_ms
        speech_end_ms = now_ms - rec.silence_ms
        self.timeline.span(speech_end_ms - dur, speech_end_ms, "caller", "speech")
        out.append(note('INFO', 'utterance_candidate', dur=dur, blocked=blocked))
        if dur < self.cfg.min_utterance_ms:
            self.stats.skipped_utterances += 1
            out.append(note('INFO', 'utterance_skipped', dur=dur, min_utterance_ms=self.cfg.min_utterance_ms))
            return
        out.append(note('INFO', 'utterance_end', seconds=dur / 1000, blocked=blocked))
        if blocked:
            self.stats.echo_blocked_utterances += 1
            out.append(note('INFO', 'utterance_echo_blocked'))
            return
        level = self.voice.sound_level_db(self._utt_rms[: max(1, dur // FRAME_MS)])
        if not self._turn_resumed and not self.voice.is_callers(level, self.vad.floor_rms):
            self.stats.room_utterances += 1
            self._sound_room = True
            caller_db = self.voice.caller_db
            out.append(note('INFO', 'utterance_room', level_db=round(level),
                            room_db=round(level_db(self.voice.room_loud_rms(self.vad.floor_rms))),
                            caller_db='unknown' if caller_db is None else f"{caller_db:.0f}dB"))
            return
        if (dur >= self.cfg.speech_veto_min_ms and not self.likeness.is_speech(dur)
                and not self._turn_resumed):
            self.stats.vetoed_utterances += 1
            self._sound_room = True
            steady = sorted(self._utt_rms[: max(1, dur // FRAME_MS)])
            self.vad.adopt_floor(steady[len(steady) // 2])
            out.append(note('INFO', 'utterance_vetoed', modulation_db=self.likeness.modulation_db(dur),
                            speech_min_modulation_db=self.cfg.speech_min_modulation_db,
                            noise_floor_rms=self.vad.noise_floor_rms))
            return
        if self._forwarded_since_commit_bytes < MIN_COMMIT_BYTES:
            out.append(note('WARNING', 'utterance_too_little_audio',
                            forwarded_since_commit_bytes=self._forwarded_since_commit_bytes))
            return
        if self.hangup_reason is not None or self._hangup_after_playout is not None:
            out.append(note('INFO', 'utterance_call_ending'))
            return
        if not self.link_up:
            # The audio never reached OpenAI; the answer is asked for once the link is back.
            self._resume_after_restore = True
            self.stats.turns += 1
            self._set_state(Pipeline.PROCESSING, Cause.UTTERANCE, "utterance during reconnection", out)
            out.append(note('WARNING', 'utterance_link_down'))
            return
        self.user_has_spoken = True
        self._sound_answered = True
        self.voice.answered(level)
        self.stats.turns += 1
        self.conversation_index += 1
        self._last_utterance_ms = dur
        self.silence.on_caller_turn(now_ms)
        out.append(note('INFO', 'utterance_triggering', end_ms=rec.end_ms, dur=dur))
        out.append(note('INFO', 'trigger_response', conversation_index=self.conversation_index))
        self._set_state(Pipeline.PROCESSING, Cause.UTTERANCE, f"len={self._utt_bytes} | silence_ms={rec.silence_ms}",
                        out)
        self._eou_at_ms = now_ms
        self._caller_speech_end_ms = speech_end_ms
        self.timeline.turn_ended(speech_end_ms)
        self._tool_chain = 0
        self._forwarded_since_commit_bytes = 0
        self._turn_resumed = False
        if self.cfg.reply_hold_ms > 0:
            self.hold.arm(rec.end_ms, self._last_audible_ms)
        self._flush_forward(out)              # every frame of the utterance before its commit
        out.append(CommitAndTrigger("end_of_speech"))
        out.append(note('INFO', 'trigger_queued'))
        if self.stats.turns >= self.cfg.max_turns:
            out.append(note('WARNING', 'turn_limit', max_turns=self.cfg.max_turns))
            self._hangup_after_playout = "max_turns"

    # --- AI side ----------------------------------------------------------------------------

    def _on_realtime(self, ev: RealtimeReceived, out: list[CoreAction]) -> None:
        e = ev.event
        if isinstance(e, rt.SessionCreated):
            out.append(ConfigureSession())             # every new session: server VAD off, our settings
        elif isinstance(e, rt.SessionUpdated):
            self._on_session_updated(ev.now_ms, out)
        elif isinstance(e, rt.RealtimeError) and e.code == "session_expired":
            self.stats.errors[e.code] += 1
            out.append(note('WARNING', 'session_expired'))
            out.append(RenewSession())
        elif isinstance(e, rt.ResponseCreated):
            self.guard.on_created(e.response_id)
            self.stats.responses_created += 1
            self._responses.setdefault(e.response_id, ResponseTrack())
            out.append(note('INFO', 'response_created', response_id=e.response_id))
            if self._cancel_when_created:
                self._cancel_when_created = False
                self._cancelled.add(e.response_id)
                out.append(note('INFO', 'cancel_when_created', response_id=e.response_id))
                out.append(CancelResponse(e.response_id))
            elif self.hold.bind(e.response_id):
                out.append(note('INFO', 'hold_armed', response_id=e.response_id, reply_hold_ms=self.cfg.reply_hold_ms))
        elif isinstance(e, rt.AudioDelta):
            self._on_audio_delta(e, out, ev)
        elif isinstance(e, rt.AudioDone):
            if self.hold.holds(e.response_id):
                self.hold.keep(e.response_id, ev)
            else:
                self._end_audio(e.response_id, ev, out)
        elif isinstance(e, rt.ResponseDone):
            self._on_response_done(e, ev, out)
        elif isinstance(e, rt.TranscriptDone):
            if e.response_id in self._abandoned:        # never heard, and deleted from the conversation
                out.append(note('INFO', 'hold_transcript_dropped', response_id=e.response_id, transcript=e.transcript))
                return
            if e.transcript:
                self.conversation.append(("assistant", e.transcript))
            out.append(note('INFO', 'ai_said', transcript=e.transcript))
        elif isinstance(e, rt.FunctionCallDone):
            self._on_function_call(e, out)
        elif isinstance(e, rt.InputTranscription):
            if e.transcript:
                self.conversation.append(("user", e.transcript))
                if self.lead is not None:
                    self.lead.on_caller_text(e.transcript)
            out.append(note('INFO', 'asr_text', transcript=e.transcript, last_utterance_ms=self._last_utterance_ms))
        elif isinstance(e, rt.RealtimeError):
            self._on_error(e, out)
        elif isinstance(e, (rt.UnknownServerEvent, rt.MalformedServerEvent)):
            out.append(note('WARNING', 'unreadable_event', event=e))
        else:
            out.append(note('DEBUG', 'realtime_event', event=e))

    def _on_audio_delta(self, e: rt.AudioDelta, out: list[CoreAction], ev: RealtimeReceived | None = None) -> None:
        """``ev``: the event as received (a held reply keeps it); None when the hold releases it."""
        if e.response_id in self._cancelled:
            self.stats.dropped_deltas += 1
            return
        if ev is not None and self.hold.holds(e.response_id):
            self.hold.keep(e.response_id, ev, e.item_id)
            self._release_if_quiet(out)           # the caller may have been quiet long enough already
            return
        audio = base64.b64decode(e.audio_b64)
        track = self._responses.setdefault(e.response_id, ResponseTrack())
        track.item_id = e.item_id
        self.ledger.on_received(e.response_id, e.item_id, len(audio))
        if not track.audio_started:
            track.audio_started = True
            self._playing_response = e.response_id
            self._eou_at_ms = None
            if self._caller_speech_end_ms is not None:
                self.stats.latencies_ms.append(self._now_ms - self._caller_speech_end_ms)
                self._first_play_awaited = (e.item_id, self._caller_speech_end_ms)
                self._caller_speech_end_ms = None
            self._set_state(Pipeline.SPEAKING, Cause.FIRST_AUDIO, f"first audio of {e.response_id}", out)
            out.append(note('INFO', 'tts_start', frames=len(audio) // 160))
        out.append(QueueAssistantAudio(e.response_id, e.item_id, audio))

    def _end_audio(self, response_id: str, ev: RealtimeReceived, out: list[CoreAction]) -> None:
        track = self._responses.get(response_id)
        if track is None or not track.audio_started or track.audio_ended or response_id in self._cancelled:
            return
        track.audio_ended = True
        out.append(note('INFO', 'audio_done', response_id=response_id, tx_frames=ev.tx_frames,
                        out_chunks=ev.out_chunks))
        self._drains[response_id] = DrainCheck(response_id, ev.now_ms, self.cfg.drain_timeout_ms, ev.queued_audio_ms)
        out.append(EndAssistantAudio(response_id))

    def _on_response_done(self, e: rt.ResponseDone, ev: RealtimeReceived, out: list[CoreAction]) -> None:
        self.guard.on_done(e.response_id)
        level = "INFO" if e.status in ("completed", "cancelled") else "WARNING"
        out.append(note(level, 'response_done', response_id=e.response_id, status=e.status, reason=e.reason))
        if e.status == "failed":
            # Rate limits, server errors, quota: counted and logged, never retried blindly; the
            # pipeline listens again and the caller's next turn (or the silence prompt) goes on,
            # unless the model failed MAX_FAILED_RESPONSES in a row: then the caller hears the
            # fallback at once rather than silence.
            code = e.error_code or "unknown"
            self.stats.errors[f"response_failed:{code}"] += 1
            self._failed_in_row += 1
            out.append(note('WARNING', 'response_failed', response_id=e.response_id, code=code))
            if self._failed_in_row >= MAX_FAILED_RESPONSES and self.hangup_reason is None:
                out.append(note('ERROR', 'model_failing', failed=self._failed_in_row, code=code))
                self._hang_up(MODEL_FAILING, out)
        elif e.status == "completed":
            self._failed_in_row = 0
        if e.response_id in self._abandoned:
            self._abandoned.discard(e.response_id)
            self._delete_items(e.item_ids, out)     # the unheard reply leaves the conversation
        if not self.hold.holds(e.response_id):
            self._after_response_done(e, ev, out)
        elif self.hold.has_events():
            self.hold.keep(e.response_id, ev)          # its end of audio and tool answers follow the release
        elif self._after_response_done(e, ev, out):
            self.hold.rearm()                          # no audio but a tool call: the follow-up is held instead
        else:
            self.hold.cancel()

    def _after_response_done(self, e: rt.ResponseDone, ev: RealtimeReceived, out: list[CoreAction]) -> bool:
        """The end of a response's audio, its tool answers, the pipeline after it. True when a
        follow-up response is owed."""
        self._end_audio(e.response_id, ev, out)
        if self._answer_tool_calls(e, out):
            return True
        track = self._responses.get(e.response_id)
        if (track is None or not track.audio_started) and self.state is Pipeline.PROCESSING:
            self._eou_at_ms = None
            self._set_state(Pipeline.LISTENING, Cause.NO_AUDIO, "response ended without audio", out)
            if self._hangup_after_playout is not None:
                self._hang_up(self._hangup_after_playout, out)
        if self._deferred_reason is not None and e.response_id in self._cancelled:
            out.append(QueueTrigger(self._deferred_reason))
            self._deferred_reason = None
        return False

    def _on_error(self, e: rt.RealtimeError, out: list[CoreAction]) -> None:
        code = e.code or "unknown"
        self.stats.errors[code] += 1
        if code == "conversation_already_has_active_response":
            self.guard.on_create_rejected()
        level = "INFO" if code == "response_cancel_not_active" else "ERROR"
        out.append(note(level, 'realtime_error', code=code, error_type=e.error_type, message=e.message))

    # --- playout ----------------------------------------------------------------------------

    def _on_frame_played(self, ev: AssistantFramePlayed, out: list[CoreAction]) -> None:
        """Each frame of the message is placed at its own play slot (the echo reference and the
        ledger advance 20 ms per frame)."""
        if self._first_play_awaited is not None and self._first_play_awaited[0] == ev.item_id:
            self.stats.played_latencies_ms.append(ev.now_ms - self._first_play_awaited[1])
            self._first_play_awaited = None
            self.timeline.answer_heard(ev.now_ms)
        self.timeline.run(ev.now_ms, ev.now_ms + max(FRAME_MS, len(ev.audio) // BYTES_PER_MS), "playout", "ai_audio")
        if not ev.audio:
            self.ledger.on_frame_played(ev.item_id, ev.now_ms)
            return
        for offset in range(0, len(ev.audio), FRAME_BYTES):
            at_ms = ev.now_ms + offset // BYTES_PER_MS
            self.ledger.on_frame_played(ev.item_id, at_ms)
            self.gate.on_played(at_ms, energy(ev.audio[offset:offset + FRAME_BYTES]))

    def _on_playout_finished(self, ev: AssistantPlayoutFinished, out: list[CoreAction]) -> None:
        if ev.response_id in self._cancelled:
            return
        self.ledger.on_mark_sent(TTS_END_MARK)
        out.append(SendMark(TTS_END_MARK))
        out.append(note('INFO', 'mark_sent', name=TTS_END_MARK))

    def _on_mark_acked(self, ev: MarkAcked, out: list[CoreAction]) -> None:
        if not self.ledger.on_mark_acked(ev.name):
            out.append(note('DEBUG', 'mark_ignored', name=ev.name))
            return
        out.append(note('INFO', 'mark_ack', name=ev.name))
        if ev.name == TTS_END_MARK and not self.ledger.marks_pending:
            self._stop_speaking(out)
            if self.state is Pipeline.SPEAKING:
                self._set_state(Pipeline.LISTENING, Cause.PLAYED, "buffer_reset", out)
            if self._hangup_after_playout is not None and not self.guard.busy and not self._follow_up_owed:
                self._hang_up(self._hangup_after_playout, out)

    def _hang_up(self, reason: str, out: list[CoreAction]) -> None:
        if self.hangup_reason is not None:
            return
        self.hangup_reason = reason
        if reason == TRANSFERRED:
            out.append(note('INFO', 'transfer_now', reason=self._transfer_reason))
            out.append(TransferCall(self._transfer_reason))
            return
        out.append(note('INFO', 'hangup', reason=reason))
        out.append(note('INFO', 'hangup_lead', lead_captured=self.lead_captured))
        out.append(HangUp(reason))

    def finish(self, hangup_reason: str, failed: bool) -> "CallOutcome":
        """The call is over: what it achieved, the lead to keep (complete, or partial when the
        caller left first), its figures and transcript. ``failed``: the call ended on a failure."""
        lead = self.lead
        outcome, kept = "no_lead", None
        if lead is not None and lead.complete:
            outcome, kept = "lead_captured", lead.snapshot()
        elif lead is not None and lead.has_content:
            outcome, kept = "partial_lead", lead.snapshot()
        if failed and outcome != "lead_captured":
            outcome = "failed"               # the lead so far is kept all the same
        return CallOutcome(outcome, hangup_reason, kept, self.stats, tuple(self.conversation),
                           self.timeline.to_dict(self._now_ms), self.asked_for_person)

    @property
    def is_ai_speaking(self) -> bool:
        return self._playing_response is not None

    @property
    def lead_captured(self) -> bool:
        return self.lead is not None and self.lead.complete

    # --- tools ------------------------------------------------------------------------------

    def _on_function_call(self, e: rt.FunctionCallDone, out: list[CoreAction]) -> None:
        """Answer now, send after the response is done (its ``response.done`` ends the tool turn)."""
        self.stats.tool_calls += 1
        if e.name == TRANSFER_TOOL:
            allowed = self._ask_for_person(_tool_reason(e.arguments), out)
            self._tool_outputs.setdefault(e.response_id, []).append((e.call_id, TRANSFER_TOOL_ANSWERS[allowed], e.name))
            return
        if self.lead is None:
            answer_text = '{"status":"error","error":"no tools are available in this call"}'
            self._tool_outputs.setdefault(e.response_id, []).append((e.call_id, answer_text, e.name))
            out.append(note('WARNING', 'tool_without_lead', name=e.name))
            return
        answer = self.lead.on_tool_call(e.name, e.arguments)
        self._tool_outputs.setdefault(e.response_id, []).append((e.call_id, answer.output, e.name))
        lead = self.lead.snapshot()
        out.append(note('INFO', 'lead_tool_answer', name=e.name, status=answer.status, service=lead.service,
                        city=lead.city, city_served=lead.city_served, missing=list(answer.missing)))
        if answer.changed:
            out.append(LeadChanged(lead, deliver=self.lead.complete, asked_for_person=self.asked_for_person))
        if answer.became_complete and self._hangup_after_playout is None:
            out.append(note('INFO', 'lead_complete'))
            self._hangup_after_playout = "lead_captured"

    def _answer_tool_calls(self, e: rt.ResponseDone, out: list[CoreAction]) -> bool:
        """Send the answers of this response's tool calls and, unless it was cancelled, queue the
        follow-up. True when a follow-up is owed (the pipeline stays PROCESSING for it)."""
        answers = self._tool_outputs.pop(e.response_id, [])
        if not answers:
            return False
        for call_id, output, tool in answers:
            out.append(SendToolOutput(call_id, output))
            self.conversation.append(("system", f"{tool} answered: {output}"))
        if e.status == "cancelled" or e.response_id in self._cancelled or self.hangup_reason is not None:
            return False              # the caller is talking; their turn's response sees the answer
        self._tool_chain += 1
        if self._tool_chain > MAX_TOOL_CHAIN:
            out.append(note('WARNING', 'tool_chain_limit', tool_chain=self._tool_chain))
            return False
        self._follow_up_owed = True
        if not self.is_ai_speaking:
            self._set_state(Pipeline.PROCESSING, Cause.TOOL, f"tool answer for {e.response_id}", out)
        self._eou_at_ms = self._now_ms
        out.append(QueueTrigger(TOOL_RESULT))
        return True

    def _ask_for_person(self, reason: str, out: list[CoreAction]) -> bool:
        """The caller wants a person: transfer after the AI's next line where allowed. True if so."""
        self.asked_for_person = True
        if not self.transfer_allowed or self.hangup_reason is not None:
            why = "the call is ending" if self.hangup_reason is not None else "transfers are not allowed now"
            out.append(note('INFO', 'transfer_unavailable', reason=reason, why=why))
            return False
        self._transfer_reason = reason
        self._hangup_after_playout = TRANSFERRED       # over a goodbye or a lead's end: a person comes first
        out.append(note('INFO', 'transfer_requested', reason=reason))
        return True

    def _on_digit(self, ev: CallerDigit, out: list[CoreAction]) -> None:
        """A key is an action, never speech: the VAD, the silence clock and the turn count ignore it."""
        action = self.keypad.get(ev.digit, "none")
        out.append(note('INFO', 'keypad', digit=ev.digit, action=action))
        if action == "person" and self._hangup_after_playout != TRANSFERRED:
            reason = "transfer" if self._ask_for_person(f"keypad {ev.digit}", out) else "transfer_unavailable"
        elif action == "repeat":
            reason = "repeat"
        else:
            return
        if self.hangup_reason is None and self.state is Pipeline.LISTENING and not self.guard.busy:
            self._set_state(Pipeline.PROCESSING, Cause.PROMPT, f"keypad {ev.digit}", out)
            self._eou_at_ms = ev.now_ms
            out.append(QueueTrigger(reason))
        # AI speaking or a response in flight: its playout ends first; a transfer follows it then

    def _on_link_lost(self, ev: RealtimeLinkLost, out: list[CoreAction]) -> None:
        self.link_up = False
        self._link_losses += 1
        lived_ms = None if self._session_began_ms is None else ev.now_ms - self._session_began_ms
        self._quick_losses = self._quick_losses + 1 if lived_ms is None or lived_ms < STABLE_SESSION_MS else 1
        if self._quick_losses > MAX_QUICK_LOSSES or self._link_losses > MAX_LINK_LOSSES:
            out.append(note('ERROR', 'reconnect_budget_spent', losses=self._link_losses, quick=self._quick_losses,
                            lived_ms=lived_ms if lived_ms is not None else -1, reason=ev.reason))
            out.append(HangUp("realtime_closed"))
            return
        self._renew_at_ms = None
        in_flight = self.guard.active_response_id
        if in_flight is not None:
            self._cancelled.add(in_flight)
        if self.guard.busy or self.state is Pipeline.PROCESSING:
            self._resume_after_restore = True          # a turn was waiting for its answer
        self.guard.reset()
        self.hold.cancel()                # a held reply died with the session; the owed turn is re-asked
        self._tool_outputs.clear()        # their calls died with the session; the lead itself is kept
        self._follow_up_owed = False
        self._eou_at_ms = None
        # the backoff grows with the losses in a row: a model that drops every session is asked less often
        out.append(Reconnect(RECONNECT_BACKOFF_MS[min(self._quick_losses, len(RECONNECT_BACKOFF_MS)) - 1], 1))
        out.append(note('WARNING', 'link_lost', reason=ev.reason, turns=len(self.conversation),
                        owed='; an answer is owed' if self._resume_after_restore else ''))

    def _on_reconnect_failed(self, ev: ReconnectFailed, out: list[CoreAction]) -> None:
        """Bounded backoff, then the call ends with the fallback message (the shell's apology)."""
        tries = len(RECONNECT_BACKOFF_MS)
        out.append(note('WARNING', 'reconnect_failed', attempt=ev.attempt, tries=tries, reason=ev.reason))
        if ev.attempt < tries:
            out.append(Reconnect(RECONNECT_BACKOFF_MS[ev.attempt], ev.attempt + 1))
            return
        out.append(note('ERROR', 'reconnect_given_up', reason=ev.reason))
        out.append(HangUp("realtime_closed"))

    def _session_started(self, now_ms: int) -> None:
        self._session_began_ms = now_ms
        self._renew_at_ms = None if self.session_renew_ms is None else now_ms + self.session_renew_ms

    def _on_link_restored(self, now_ms: int, out: list[CoreAction]) -> None:
        self.link_up = True
        self._session_started(now_ms)
        out.append(ReplayConversation(tuple(self.conversation)))
        out.append(note('INFO', 'link_restored', turns=len(self.conversation)))
        if self._resume_after_restore:
            self._resume_after_restore = False
            self._eou_at_ms = now_ms
            out.append(QueueTrigger("resume"))

    def _on_shutdown(self, ev: ShutdownRequested, out: list[CoreAction]) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._shutdown_at_ms = ev.now_ms
        out.append(note('INFO', 'shutdown_requested'))

    # --- time -------------------------------------------------------------------------------

    def _on_tick(self, ev: Tick, out: list[CoreAction]) -> None:
        self._poll_drains(ev, out)
        expired = self.guard.on_deadline(ev.now_ms)
        if expired is not None:
            out.append(note('WARNING', 'watchdog_no_created', waited_ms=expired.waited_ms, reason=expired.reason))
            if self.state is Pipeline.PROCESSING:
                self._eou_at_ms = None
                self._set_state(Pipeline.LISTENING, Cause.NO_AUDIO, "watchdog: no response.created", out)
        if (self.state is Pipeline.PROCESSING and self._eou_at_ms is not None
                and ev.now_ms - self._eou_at_ms >= self.cfg.no_audio_timeout_ms):
            out.append(note('WARNING', 'watchdog_no_audio', waited_ms=ev.now_ms - self._eou_at_ms))
            self._eou_at_ms = None
            self._caller_speech_end_ms = None      # unanswered: no latency figure for this turn
            self._set_state(Pipeline.LISTENING, Cause.NO_AUDIO, "watchdog: no audio", out)
        self._check_silence(ev.now_ms, out)
        self._check_renewal(ev.now_ms, out)
        if (self._shutdown_at_ms is not None and self.hangup_reason is None
                and ev.now_ms - self._shutdown_at_ms >= SHUTDOWN_GOODBYE_LIMIT_MS):
            out.append(note('WARNING', 'shutdown_limit', limit_ms=SHUTDOWN_GOODBYE_LIMIT_MS))
            self._hang_up("shutdown", out)
        if self._last_status_ms is None:
            self._last_status_ms = ev.now_ms
        elif ev.now_ms - self._last_status_ms >= self.cfg.status_interval_ms:
            self._last_status_ms = ev.now_ms
            out.append(note('INFO', 'pipeline_status', frames_sent=self.stats.frames_sent,
                            frames_blocked=self.stats.frames_blocked,
                            active_response_id=self.guard.active_response_id, is_ai_speaking=self.is_ai_speaking,
                            user_has_spoken=self.user_has_spoken))

    def _poll_drains(self, ev: Tick, out: list[CoreAction]) -> None:
        if self.judge.paused:
            return                        # a paused playout drains nothing; the deadlines move on resume
        for response_id, check in list(self._drains.items()):
            result = check.poll(ev.now_ms, ev.tx_frames, ev.out_chunks, self.guard.active_response_id)
            if result is None:
                continue
            del self._drains[response_id]
            if isinstance(result, Drained):
                self._stop_speaking(out)
                out.append(note('INFO', 'drained', after_ms=result.after_ms, response_id=response_id))
            elif isinstance(result, DrainTimedOut):
                self._stop_speaking(out)
                out.append(note('INFO', 'drain_timeout', timeout_s=self.cfg.drain_timeout_ms / 1000,
                                tx_frames=result.tx_frames, out_chunks=result.out_chunks))
            elif isinstance(result, DrainSuperseded):
                out.append(note('DEBUG', 'drain_superseded', response_id=response_id,
                                newer_response_id=result.newer_response_id))

    def _check_ending(self, out: list[CoreAction]) -> None:
        """After every event once the call is ending: start a draining server's goodbye when the
        call is idle; hang up when a goodbye ended without being heard (failed or no audio)."""
        idle = self.state is Pipeline.LISTENING and not self.guard.busy and not self.is_ai_speaking
        if (self._shutdown and self.link_up and self._hangup_after_playout is None and self.hangup_reason is None
                and idle):
            self._hangup_after_playout = "shutdown"
            self._set_state(Pipeline.PROCESSING, Cause.PROMPT, "goodbye (shutdown)", out)
            self._eou_at_ms = self._now_ms
            out.append(QueueTrigger(SilenceStep.GOODBYE.value))
        elif (self._hangup_after_playout is not None and idle and not self._follow_up_owed
                and not self.ledger.marks_pending):
            self._hang_up(self._hangup_after_playout, out)     # the goodbye failed or had no audio

    def _check_renewal(self, now_ms: int, out: list[CoreAction]) -> None:
        """A model session is renewed before OpenAI's 60-minute limit, between turns only."""
        if self._renew_at_ms is None or now_ms < self._renew_at_ms:
            return
        if not (self.link_up and self.state is Pipeline.LISTENING and not self.guard.busy and not self.is_ai_speaking):
            self._renew_at_ms = now_ms + RENEW_RETRY_MS
            return
        self._renew_at_ms = None
        out.append(note('INFO', 'session_renewal'))
        out.append(RenewSession())

    def _check_silence(self, now_ms: int, out: list[CoreAction]) -> None:
        listening = (self.link_up and self.state is Pipeline.LISTENING and not self.guard.busy
                     and not self.is_ai_speaking
                     and self.vad.state is VadState.SILENCE and self.hangup_reason is None
                     and self._hangup_after_playout is None and not self.echo_blocked(now_ms))
        step = self.silence.on_tick(now_ms, listening)
        if step is SilenceStep.WARN:
            out.append(note('INFO', 'silence_prompt', silence_timeout_ms=self.cfg.silence_timeout_ms,
                            warnings=self.silence.warnings, max_silence_warnings=self.cfg.max_silence_warnings))
            self._set_state(Pipeline.PROCESSING, Cause.PROMPT, "silence_warning", out)
            self._eou_at_ms = now_ms
            out.append(QueueTrigger(SilenceStep.WARN.value))
        elif step is SilenceStep.GOODBYE:
            out.append(note('INFO', 'silence_goodbye'))
            self._hangup_after_playout = "silence_timeout"
            self._set_state(Pipeline.PROCESSING, Cause.PROMPT, "goodbye", out)
            self._eou_at_ms = now_ms
            out.append(QueueTrigger(SilenceStep.GOODBYE.value))


def _tool_reason(arguments: str) -> str:
    """``transfer_to_human``'s ``reason`` argument (the model's JSON), short, or a default."""
    try:
        reason = json.loads(arguments or "{}").get("reason")
    except (ValueError, AttributeError):
        reason = None
    return str(reason)[:80] if reason else "caller asked"
