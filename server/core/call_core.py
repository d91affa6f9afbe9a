"""The decisions of one call, as a pure state machine.

Theory of operation. The shell feeds facts (``server.core.events``) stamped with ``now_ms``;
``handle`` returns verbs. Nothing here touches a socket or a clock.

* Caller side: EVERY inbound frame goes through the VAD, whatever the echo state. The echo gate
  (AI audio played within ``echo_window_ms``) only decides whether the frame is forwarded to
  OpenAI. An utterance that reached OpenAI with less than ``min_utterance_ms`` of audio (i.e. it
  lay inside the echo block) does not trigger.
* Turn trigger: a valid end of utterance yields ``CommitAndTrigger``; the shell commits after the
  audio already queued and then calls ``request_response``, the ONLY producer of
  ``SendResponseCreate``, guarded by ``ResponseGuard`` (active-or-pending -> skip).
* AI side: the first audio delta of a response makes the AI "speaking" (``PROCESSING ->
  SPEAKING``). ``response.output_audio.done`` starts one drain check bound to that response id;
  the TX loop reports played frames and the end of playout, which sends ``assistant_tts_end``;
  its ack returns the pipeline to ``LISTENING``.
* Stale events expected from the race between two peers (a delta of a cancelled response, the
  echo of a cleared mark) are dropped quietly and counted.
"""
from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from server.core import realtime_protocol as rt
from server.core.drain import DrainCheck, Drained, DrainSuperseded, DrainTimedOut
from server.core.energy_vad import EnergyVad, SpeechStarted, UtteranceEnded, VadState
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerFrame,
                                CommitAndTrigger, CoreAction, CoreEvent, EndAssistantAudio,
                                ForwardAudio, HangUp, MarkAcked, Note, QueueAssistantAudio,
                                QueueTrigger, RealtimeReceived, SendMark, SendResponseCreate,
                                SessionReady, Tick)
from server.core.playout import PlayoutLedger
from server.core.response_guard import ResponseGuard, SendCreate
from server.core.turn_config import TurnConfig
from server.core.ulaw import BYTES_PER_MS, FRAME_MS, rms

TTS_END_MARK = "assistant_tts_end"
MIN_COMMIT_BYTES = 100 * BYTES_PER_MS      # OpenAI refuses commits under 100 ms


class Pipeline(Enum):
    LISTENING = "LISTENING"
    PROCESSING = "PROCESSING"
    SPEAKING = "SPEAKING"


_PIPELINE_ALLOWED = {
    (Pipeline.LISTENING, Pipeline.PROCESSING),
    (Pipeline.PROCESSING, Pipeline.SPEAKING),
    (Pipeline.PROCESSING, Pipeline.LISTENING),
    (Pipeline.SPEAKING, Pipeline.LISTENING),
    (Pipeline.SPEAKING, Pipeline.PROCESSING),
    (Pipeline.LISTENING, Pipeline.SPEAKING),     # audio of a response triggered while listening
}


@dataclass
class ResponseTrack:
    reason: str | None = None
    audio_started: bool = False
    audio_ended: bool = False
    item_id: str | None = None


@dataclass
class CallStats:
    frames_sent: int = 0
    frames_blocked: int = 0
    turns: int = 0
    responses_created: int = 0
    errors: Counter = field(default_factory=Counter)
    dropped_deltas: int = 0
    skipped_utterances: int = 0
    echo_blocked_utterances: int = 0
    user_transcripts: list[str] = field(default_factory=list)
    ai_transcripts: list[str] = field(default_factory=list)


class CallCore:
    def __init__(self, config: TurnConfig, greeting_instructions: str | None) -> None:
        self.cfg = config
        self.greeting_instructions = greeting_instructions
        self.vad = EnergyVad(config)
        self.guard = ResponseGuard(config.response_created_timeout_ms)
        self.ledger = PlayoutLedger()
        self.state = Pipeline.LISTENING
        self.is_ai_speaking = False
        self.user_has_spoken = False
        self.conversation_index = 0
        self.stats = CallStats()
        self._responses: dict[str, ResponseTrack] = {}
        self._cancelled: set[str] = set()
        self._drains: dict[str, DrainCheck] = {}
        self._forwarded_since_commit_bytes = 0
        self._utt_forwarded_ms = 0
        self._utt_bytes = 0
        self._utt_blocked_at_start = False
        self._last_utterance_ms = 0
        self._eou_at_ms: int | None = None
        self._last_status_ms: int | None = None
        self._handlers = {
            SessionReady: self._on_session_ready, CallerFrame: self._on_caller_frame,
            RealtimeReceived: self._on_realtime, AssistantFramePlayed: self._on_frame_played,
            AssistantPlayoutFinished: self._on_playout_finished, MarkAcked: self._on_mark_acked,
            Tick: self._on_tick,
        }

    # --- the two entry points ---------------------------------------------------------------

    def handle(self, event: CoreEvent) -> list[CoreAction]:
        out: list[CoreAction] = []
        self._handlers[type(event)](event, out)
        return out

    def request_response(self, reason: str, now_ms: int) -> list[CoreAction]:
        """The one way to a ``response.create``: guarded against active or pending responses."""
        decision = self.guard.request(reason, now_ms)
        if not isinstance(decision, SendCreate):
            return [Note("INFO", f"[RESPONSE GUARD] Active response in progress ({decision.blocking}) "
                                 f"– skipping new response ({reason})")]
        instructions = self.greeting_instructions if reason == "greeting" else None
        return [SendResponseCreate(reason, instructions),
                Note("INFO", f"✅ [BUILD 196.2] response.create sent (manual trigger) reason={reason}")]

    def echo_blocked(self, now_ms: int) -> bool:
        return self.ledger.audible_or_echoing(now_ms, self.cfg.echo_window_ms)

    # --- state funnel -----------------------------------------------------------------------

    def _set_state(self, new: Pipeline, note: str, out: list[CoreAction]) -> None:
        if new is self.state:
            return
        if (self.state, new) not in _PIPELINE_ALLOWED:
            out.append(Note("WARNING", f"[STATE] unexpected {self.state.value} -> {new.value} ({note})"))
        self.state = new
        out.append(Note("INFO", f"STATE -> {new.value} | {note}"))

    # --- caller side ------------------------------------------------------------------------

    def _on_session_ready(self, ev: SessionReady, out: list[CoreAction]) -> None:
        out.append(Note("INFO", "[GREETING] Bot speaks first..."))
        out.append(Note("INFO", "[GREETING] Using OpenAI Realtime for greeting (same session, same pipeline)"))
        self._set_state(Pipeline.PROCESSING, "greeting", out)
        self._eou_at_ms = ev.now_ms
        out.append(QueueTrigger("greeting"))

    def _on_caller_frame(self, ev: CallerFrame, out: list[CoreAction]) -> None:
        blocked = self.echo_blocked(ev.now_ms)
        before = self.vad.state
        records = self.vad.on_frame(rms(ev.audio), ev.audio_end_ms, track_floor=not blocked)
        if blocked:
            self.stats.frames_blocked += 1
        else:
            self.stats.frames_sent += 1
            self._forwarded_since_commit_bytes += len(ev.audio)
            out.append(ForwardAudio(ev.payload_b64))
        if before is VadState.SILENCE and self.vad.state is not VadState.SILENCE:
            self._utt_forwarded_ms, self._utt_bytes, self._utt_blocked_at_start = 0, 0, blocked
        if before is not VadState.SILENCE or self.vad.state is not VadState.SILENCE:
            self._utt_bytes += len(ev.audio)
            if not blocked:
                self._utt_forwarded_ms += FRAME_MS
        for rec in records:
            if isinstance(rec, SpeechStarted):
                if not self._utt_blocked_at_start:
                    self.user_has_spoken = True
                out.append(Note("INFO", f"🎤 [REALTIME] User started speaking - echo_blocked={self._utt_blocked_at_start}"))
                out.append(Note("INFO", f"[UTT] START at {rec.start_ms}ms"))
            elif isinstance(rec, UtteranceEnded):
                self._on_utterance_end(rec, ev.now_ms, out)

    def _on_utterance_end(self, rec: UtteranceEnded, now_ms: int, out: list[CoreAction]) -> None:
        blocked = self._utt_forwarded_ms < self.cfg.min_utterance_ms
        dur = rec.duration_ms
        out.append(Note("INFO", f"🎤 END OF UTTERANCE candidate: {dur}ms echo_blocked={blocked}"))
        if dur < self.cfg.min_utterance_ms:
            self.stats.skipped_utterances += 1
            out.append(Note("INFO", f"[UTT] SKIPPED: duration={dur}ms < MIN_UTTERANCE_MS={self.cfg.min_utterance_ms}ms"))
            return
        out.append(Note("INFO", f"🎤 END OF UTTERANCE: {dur / 1000:.1f}s, echo_blocked={blocked}"))
        if blocked:
            self.stats.echo_blocked_utterances += 1
            out.append(Note("INFO", "[BUILD 196.3] SPEECH→SILENCE during echo block - NOT triggering (echo protection)"))
            return
        if self._forwarded_since_commit_bytes < MIN_COMMIT_BYTES:
            out.append(Note("WARNING", f"[UTT] only {self._forwarded_since_commit_bytes} bytes forwarded since "
                                       "the last commit - not committing"))
            return
        self.user_has_spoken = True
        self.stats.turns += 1
        self.conversation_index += 1
        self._last_utterance_ms = dur
        out.append(Note("INFO", f"[UTT] END at {rec.end_ms}ms, duration={dur}ms, triggering response"))
        out.append(Note("INFO", f"🎯 [BUILD 196.3] SPEECH→SILENCE: Triggering AI response "
                                f"(conversation #{self.conversation_index})"))
        self._set_state(Pipeline.PROCESSING, f"len={self._utt_bytes} | silence_ms={rec.silence_ms}", out)
        self._eou_at_ms = now_ms
        self._forwarded_since_commit_bytes = 0
        out.append(CommitAndTrigger("end_of_speech"))
        out.append(Note("INFO", "✅ [BUILD 196.3] response.create queued (end of speech)"))
        if self.stats.turns >= self.cfg.max_turns:
            out.append(Note("WARNING", f"[TURNS] safety limit of {self.cfg.max_turns} turns reached"))
            out.append(HangUp("max_turns"))

    # --- AI side ----------------------------------------------------------------------------

    def _on_realtime(self, ev: RealtimeReceived, out: list[CoreAction]) -> None:
        e = ev.event
        if isinstance(e, rt.ResponseCreated):
            self.guard.on_created(e.response_id)
            self.stats.responses_created += 1
            self._responses.setdefault(e.response_id, ResponseTrack())
            out.append(Note("INFO", f"🔊 [REALTIME] response.created: id={e.response_id}"))
        elif isinstance(e, rt.AudioDelta):
            self._on_audio_delta(e, ev.now_ms, out)
        elif isinstance(e, rt.AudioDone):
            self._end_audio(e.response_id, ev, out)
        elif isinstance(e, rt.ResponseDone):
            self._on_response_done(e, ev, out)
        elif isinstance(e, rt.TranscriptDone):
            self.stats.ai_transcripts.append(e.transcript)
            out.append(Note("INFO", f"🤖 [REALTIME] AI said: {e.transcript}"))
        elif isinstance(e, rt.InputTranscription):
            self.stats.user_transcripts.append(e.transcript)
            out.append(Note("INFO", f"ASR_TEXT: {e.transcript} | dur_ms={self._last_utterance_ms}"))
        elif isinstance(e, rt.RealtimeError):
            self._on_error(e, out)
        elif isinstance(e, (rt.UnknownServerEvent, rt.MalformedServerEvent)):
            out.append(Note("WARNING", f"[REALTIME] unreadable server event: {e}"))
        elif isinstance(e, (rt.SessionCreated, rt.SessionUpdated, rt.InputCommitted, rt.ItemAdded,
                            rt.ItemTruncated, rt.Ignored)):
            out.append(Note("DEBUG", f"[REALTIME] {e}"))

    def _on_audio_delta(self, e: rt.AudioDelta, now_ms: int, out: list[CoreAction]) -> None:
        if e.response_id in self._cancelled:
            self.stats.dropped_deltas += 1
            return
        audio = base64.b64decode(e.audio_b64)
        track = self._responses.setdefault(e.response_id, ResponseTrack())
        track.item_id = e.item_id
        self.ledger.on_received(e.response_id, e.item_id, len(audio))
        if not track.audio_started:
            track.audio_started = True
            self.is_ai_speaking = True
            self._eou_at_ms = None
            self._set_state(Pipeline.SPEAKING, f"first audio of {e.response_id}", out)
            out.append(Note("INFO", f"TTS_START | frames={len(audio) // 160}"))
        out.append(QueueAssistantAudio(e.response_id, e.item_id, audio))

    def _end_audio(self, response_id: str, ev: RealtimeReceived, out: list[CoreAction]) -> None:
        track = self._responses.get(response_id)
        if track is None or not track.audio_started or track.audio_ended:
            return
        track.audio_ended = True
        out.append(Note("INFO", f"🔇 [AUDIO_DONE] Received for response_id={response_id}, "
                                f"queues: tx={ev.tx_frames}, audio_out={ev.out_chunks}"))
        self._drains[response_id] = DrainCheck(response_id, ev.now_ms, self.cfg.drain_timeout_ms, ev.queued_audio_ms)
        out.append(EndAssistantAudio(response_id))

    def _on_response_done(self, e: rt.ResponseDone, ev: RealtimeReceived, out: list[CoreAction]) -> None:
        self.guard.on_done(e.response_id)
        level = "INFO" if e.status in ("completed", "cancelled") else "WARNING"
        out.append(Note(level, f"[REALTIME] response.done: id={e.response_id} status={e.status} reason={e.reason}"))
        self._end_audio(e.response_id, ev, out)
        track = self._responses.get(e.response_id)
        if (track is None or not track.audio_started) and self.state is Pipeline.PROCESSING:
            self._eou_at_ms = None
            self._set_state(Pipeline.LISTENING, "response ended without audio", out)

    def _on_error(self, e: rt.RealtimeError, out: list[CoreAction]) -> None:
        code = e.code or "unknown"
        self.stats.errors[code] += 1
        if code == "conversation_already_has_active_response":
            self.guard.on_create_rejected()
        level = "INFO" if code == "response_cancel_not_active" else "ERROR"
        out.append(Note(level, f"[REALTIME] error code={code} type={e.error_type} message={e.message}"))

    # --- playout ----------------------------------------------------------------------------

    def _on_frame_played(self, ev: AssistantFramePlayed, out: list[CoreAction]) -> None:
        self.ledger.on_frame_played(ev.item_id, ev.now_ms)

    def _on_playout_finished(self, ev: AssistantPlayoutFinished, out: list[CoreAction]) -> None:
        if ev.response_id in self._cancelled:
            return
        self.ledger.on_mark_sent(TTS_END_MARK)
        out.append(SendMark(TTS_END_MARK))
        out.append(Note("INFO", f"MARK_SENT {TTS_END_MARK}"))

    def _on_mark_acked(self, ev: MarkAcked, out: list[CoreAction]) -> None:
        if not self.ledger.on_mark_acked(ev.name):
            out.append(Note("DEBUG", f"[MARK] ignored ack {ev.name}"))
            return
        out.append(Note("INFO", f"MARK_ACK {ev.name}"))
        if ev.name == TTS_END_MARK and not self.ledger.marks_pending:
            self.is_ai_speaking = False
            if self.state is Pipeline.SPEAKING:
                self._set_state(Pipeline.LISTENING, "buffer_reset", out)

    # --- time -------------------------------------------------------------------------------

    def _on_tick(self, ev: Tick, out: list[CoreAction]) -> None:
        for response_id, check in list(self._drains.items()):
            result = check.poll(ev.now_ms, ev.tx_frames, ev.out_chunks, self.guard.active_response_id)
            if result is None:
                continue
            del self._drains[response_id]
            if isinstance(result, Drained):
                self.is_ai_speaking = False
                out.append(Note("INFO", f"✅ [AUDIO_DRAIN] Queues empty after {result.after_ms}ms - clearing is_ai_speaking"))
            elif isinstance(result, DrainTimedOut):
                self.is_ai_speaking = False
                out.append(Note("INFO", f"⏱ [AUDIO_DRAIN] Timeout ({self.cfg.drain_timeout_ms / 1000:.1f}s) - clearing "
                                        f"is_ai_speaking even with queues: tx={result.tx_frames}, audio_out={result.out_chunks}"))
            elif isinstance(result, DrainSuperseded):
                out.append(Note("DEBUG", f"[AUDIO_DRAIN] {response_id} superseded by {result.newer_response_id}"))
        expired = self.guard.on_deadline(ev.now_ms)
        if expired is not None:
            out.append(Note("WARNING", f"[WATCHDOG] no response.created {expired.waited_ms}ms after response.create "
                                       f"({expired.reason}) - clearing pending, not re-sending"))
            if self.state is Pipeline.PROCESSING:
                self._eou_at_ms = None
                self._set_state(Pipeline.LISTENING, "watchdog: no response.created", out)
        if (self.state is Pipeline.PROCESSING and self._eou_at_ms is not None
                and ev.now_ms - self._eou_at_ms >= self.cfg.no_audio_timeout_ms):
            out.append(Note("WARNING", f"[WATCHDOG] no AI audio {ev.now_ms - self._eou_at_ms}ms after end of "
                                       "utterance - back to LISTENING, no new response"))
            self._eou_at_ms = None
            self._set_state(Pipeline.LISTENING, "watchdog: no audio", out)
        if self._last_status_ms is None:
            self._last_status_ms = ev.now_ms
        elif ev.now_ms - self._last_status_ms >= self.cfg.status_interval_ms:
            self._last_status_ms = ev.now_ms
            out.append(Note("INFO", f"[PIPELINE STATUS] sent={self.stats.frames_sent} blocked={self.stats.frames_blocked} "
                                    f"| active_response={self.guard.active_response_id} | ai_speaking={self.is_ai_speaking} "
                                    f"| user_has_spoken={self.user_has_spoken}"))
