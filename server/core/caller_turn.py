"""The caller's side of one call (pure): every inbound frame heard, judged and batched.

EVERY inbound frame goes through the VAD, whatever the echo state. ``CallerVoice`` keeps the
room's level (other voices, a street) and the caller's; the room raises the VAD's threshold, and a
sound that is the room's, not the caller's, neither triggers, nor resumes a turn over a held reply,
nor keeps that reply held. The ``CallerGate`` decides whether a frame reaches the model: only
utterances do (with their pre-roll); inside the echo window they are held back, released when the
echo detector sees sustained speech the AI's echo cannot explain. While the AI is audible the
``BargeInJudge`` pauses, resumes or interrupts it. Audio for the model goes in appends of
``append_batch_ms`` (``AudioBatch``), and whatever is gathered goes before a commit and at the end
of an utterance.

The conductor (``CallCore``) calls the steps of one frame in order (``listen``, ``take``, the VAD's
records, ``after_frame``) and does what concerns the rest of the call between them: a barge-in,
the end of a turn, a held reply. ``judge_utterance`` says whether an ended utterance is a caller's
turn (long enough, not the echo, not the room, not a steady noise, enough audio for a commit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from server.core.barge_in import BargeInJudge, Interrupt, Pause, Resume, Verdict
from server.core.caller_gate import CallerGate, GateResult
from server.core.caller_voice import CallerVoice
from server.core.ending import CallStats
from server.core.energy_vad import EnergyVad, SpeechStarted, UtteranceEnded, VadState
from server.core.events import CallerFrame, CoreAction, ForwardAudio, PausePlayout, ResumePlayout, note
from server.core.room_level import level_db
from server.core.speech_likeness import SpeechLikeness
from server.core.timeline import Timeline
from server.core.turn_config import TurnConfig
from server.core.ulaw import BYTES_PER_MS, FRAME_MS, rms

MIN_COMMIT_BYTES = 100 * BYTES_PER_MS      # OpenAI refuses commits under 100 ms


@dataclass
class AudioBatch:
    """Caller audio gathered for the next ``input_audio_buffer.append``."""
    size_bytes: int
    since_commit_bytes: int = 0
    _audio: bytearray = field(default_factory=bytearray)

    def add(self, audio: bytes) -> None:
        self._audio += audio

    @property
    def full(self) -> bool:
        return len(self._audio) >= self.size_bytes

    def flush(self, out: list[CoreAction]) -> None:
        if self._audio:
            out.append(ForwardAudio(bytes(self._audio)))
            self._audio.clear()


@dataclass
class Sound:
    """The current sound, from the VAD's onset: its frames' levels and what reached the model."""
    rms: list = field(default_factory=list)
    bytes: int = 0
    forwarded_ms: int = 0
    blocked_at_start: bool = False
    level: tuple = (None, 0.0)
    """(frames, level) of the sound as last measured: a sort per 100 ms of sound, not per frame."""
    room: bool = False
    """Judged not the caller's (the room, a steady noise)."""
    answered: bool = False
    """Answered: the caller's."""


@dataclass(frozen=True)
class Heard:
    """One frame as heard: what the VAD and the gate made of it."""
    before: VadState
    records: list
    gate: GateResult
    verdict: Verdict | None
    """The barge-in judge's word, when the AI is audible."""
    opened: tuple[bytes, ...]
    """On an interrupt: the held frames of the caller's speech, forwarded now."""
    audible: bool
    """Above the hold's quiet level (a soft tail or onset the VAD's threshold misses)."""
    frame_rms: float


@dataclass(frozen=True)
class Utterance:
    """An utterance judged a caller's turn."""
    duration_ms: int
    level_db: float
    speech_end_ms: int


class CallerTurn:
    def __init__(self, cfg: TurnConfig, stats: CallStats, timeline: Timeline, voice_decider=None,
                 echo_detection: bool = True) -> None:
        """``voice_decider`` (frame -> voiced) replaces the energy decision of the VAD and
        ``echo_detection=False`` treats every voiced frame as the caller's: both exist so other
        detectors can be measured under exactly the same turn-taking rules (scripts/bench_vad.py)."""
        self.cfg, self.stats, self.timeline = cfg, stats, timeline
        self.voice_decider = voice_decider
        self.echo_detection = echo_detection
        self.vad = EnergyVad(cfg)
        self.likeness = SpeechLikeness(cfg.speech_min_modulation_db)
        self.voice = CallerVoice(cfg, enabled=voice_decider is None)
        self.gate = CallerGate(cfg)
        self.judge = BargeInJudge(cfg.barge_in_min_ms, cfg.barge_in_confirm_ms, cfg.backchannel_resume_ms,
                                  cfg.backchannel_max_ms, cfg.speech_min_modulation_db,
                                  cfg.speech_min_modulation_db * cfg.onset_modulation_pct / 100)
        self.batch = AudioBatch(cfg.append_batch_ms * BYTES_PER_MS)
        self.sound = Sound()
        self.last_audible_ms = 0                   # end of the last caller frame above the hold's quiet level
        self.audio_now_ms = 0                      # end of the latest caller frame, caller-audio time
        self.turn_resumed = False                  # this utterance goes on a turn already proven to be speech
        self.user_has_spoken = False
        self.last_utterance_ms = 0
        self._echo_path_noted: tuple[int | None, float] | None = None

    # --- one frame, in steps ----------------------------------------------------------------

    def listen(self, ev: CallerFrame, in_window: bool, ai_audible: bool, out: list[CoreAction]) -> Heard:
        """The VAD, the voices, the gate and (over the AI) the barge-in judge hear the frame."""
        frame_rms = rms(ev.audio)
        before = self.vad.state
        self.audio_now_ms = ev.audio_end_ms
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
            self.last_audible_ms = ev.audio_end_ms
        barge_threshold = max(floor_rms * self.cfg.barge_in_ratio_pct / 100 + self.cfg.barge_in_offset_rms,
                              room_rms * self.voice.barge_over_room)
        if voiced is not None:
            barge_threshold = 0.0 if voiced else float("inf")
        gate = self.gate.on_caller_frame(ev.audio, frame_rms ** 2, ev.now_ms, in_window, barge_threshold,
                                         speech_in_progress=self.vad.state is not VadState.SILENCE,
                                         explain_echo=self.echo_detection, self_open=not ai_audible)
        self._note_echo_path(gate.verdict, out)
        if gate.opened:
            out.append(note('INFO', 'echo_gate_opened', echo_text=echo_text(gate.verdict)))
        verdict, opened = None, ()
        if ai_audible:
            verdict = self._judge(gate, frame_rms, ev.now_ms, out)
            if isinstance(verdict, Interrupt):
                opened = self.gate.open()
        return Heard(before, records, gate, verdict, opened, audible, frame_rms)

    def _judge(self, gate: GateResult, frame_rms: float, now_ms: int, out: list[CoreAction]) -> Verdict | None:
        """Pause or resume the AI (``BargeInJudge``); an interrupt is the conductor's to carry out."""
        verdict = self.judge.on_frame(gate.near_end, now_ms, 10.0 * math.log10(frame_rms * frame_rms + 1.0))
        if self.judge.paused or verdict is not None:
            self.gate.echo.hold_learning(now_ms)       # double talk: no echo path is learnt from it
        if isinstance(verdict, Pause):
            self.stats.pauses += 1
            out.append(PausePlayout())
            out.append(note('INFO', 'playout_paused', sound_ms=verdict.sound_ms, echo_text=echo_text(gate.verdict)))
        elif isinstance(verdict, Resume):
            self.stats.backchannels += 1
            out.append(ResumePlayout())
            what = "steady sound (not speech)" if verdict.steady else "sound"
            out.append(note('INFO', 'backchannel', sound_ms=verdict.sound_ms, what=what, paused_ms=verdict.paused_ms))
        return verdict

    def take(self, ev: CallerFrame, heard: Heard, forward: tuple[bytes, ...], out: list[CoreAction]) -> bool:
        """Forward what the gate let through and follow the current sound; True while in a sound."""
        gate = heard.gate
        if gate.blocked and not forward:
            self.stats.frames_blocked += 1
            if self.vad.state is not VadState.SILENCE:
                self.timeline.run(ev.now_ms - FRAME_MS, ev.now_ms, "gate", "echo_blocked")
        else:
            self.stats.frames_sent += len(forward)
        if forward:
            self.timeline.run(ev.now_ms - len(forward) * FRAME_MS, ev.now_ms, "gate", "forwarded")
        for audio in forward:
            self.batch.add(audio)
        if self.batch.full:
            self.batch.flush(out)
        self.batch.since_commit_bytes += len(forward) * len(ev.audio)
        if heard.before is VadState.SILENCE and self.vad.state is not VadState.SILENCE:
            self.sound = Sound(blocked_at_start=gate.blocked, room=self.sound.room, answered=self.sound.answered)
            self.likeness.start()
        in_sound = heard.before is not VadState.SILENCE or self.vad.state is not VadState.SILENCE
        if in_sound:
            self.likeness.add(self.voice.speech_energy(heard.frame_rms ** 2))
            self.sound.rms.append(heard.frame_rms)
            self.sound.bytes += len(ev.audio)
            self.sound.forwarded_ms += len(forward) * FRAME_MS
        return in_sound

    def speech_started(self, rec: SpeechStarted, out: list[CoreAction]) -> None:
        if not self.sound.blocked_at_start:
            self.user_has_spoken = True
        out.append(note('INFO', 'speech_started', echo_blocked=self.sound.blocked_at_start))
        out.append(note('INFO', 'utterance_start', start_ms=rec.start_ms))

    def after_frame(self, heard: Heard, out: list[CoreAction]) -> None:
        """A sound that ended and was not the caller's joins the room (so does a short one at the
        room's level); the gate closes and the utterance's tail goes to the model."""
        if self.vad.state is not VadState.SILENCE or heard.before is VadState.SILENCE:
            return
        self.voice.sound_ended(self.sound.room or (not self.sound.answered and not self.sounds_callers(False)))
        self.sound.room = self.sound.answered = False
        self.gate.close()
        self.batch.flush(out)

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
            out.append(note('INFO', 'echo_path', what=what, echo_text=echo_text(verdict),
                            lag_ms=verdict.lag_ms, gain_db=round(verdict.gain_db, 1)))

    # --- questions the conductor asks -------------------------------------------------------

    def sounds_callers(self, within_turn: bool = True) -> bool:
        """Is the current sound (up to its last voiced frame) the caller's voice, not the room's?
        ``within_turn``: it goes on the caller's turn (see ``CallerVoice.is_callers``)."""
        start_ms, end_ms = self.vad.utterance_start_ms, self.vad.last_voiced_end_ms
        utt_rms = self.sound.rms
        duration_ms = end_ms - start_ms if start_ms is not None and end_ms is not None else len(utt_rms) * FRAME_MS
        n = min(len(utt_rms), max(1, duration_ms // FRAME_MS))
        if n == 0:
            return True
        if self.sound.level[0] is None or abs(n - self.sound.level[0]) >= 5:    # a sort per 100 ms of sound
            self.sound.level = (n, self.voice.sound_level_db(utt_rms[:n]))
        return self.voice.is_callers(self.sound.level[1], self.vad.floor_rms, within_turn)

    def _judged_long(self) -> bool:
        start_ms, end_ms = self.vad.utterance_start_ms, self.vad.last_voiced_end_ms
        return start_ms is not None and end_ms is not None and end_ms - start_ms >= self.cfg.min_utterance_ms

    def resumed_speech_start(self) -> int | None:
        """The onset of the caller's speech (not a click, noise or the room) long enough to count
        as a resumed turn, or None."""
        if self._judged_long() and self.sounds_callers():
            return self.vad.utterance_start_ms
        return None

    def quiet(self, holding: bool) -> bool:
        """Quiet enough to release a held reply: silence, or (once it is long enough to tell) a
        sound that is not the caller's (the room is not a turn; the caller's next onset is soft)."""
        return (self.vad.state is VadState.SILENCE
                or (holding and self._judged_long() and not self.sounds_callers()))

    def judge_utterance(self, rec: UtteranceEnded, now_ms: int, out: list[CoreAction]) -> Utterance | None:
        """An ended utterance: the caller's turn, or None (too short, the echo, the room, steady
        noise, too little audio for a commit), each logged and counted."""
        blocked = self.sound.forwarded_ms < self.cfg.min_utterance_ms
        dur = rec.duration_ms
        speech_end_ms = now_ms - rec.silence_ms
        self.timeline.span(speech_end_ms - dur, speech_end_ms, "caller", "speech")
        out.append(note('INFO', 'utterance_candidate', dur=dur, blocked=blocked))
        if dur < self.cfg.min_utterance_ms:
            self.stats.skipped_utterances += 1
            out.append(note('INFO', 'utterance_skipped', dur=dur, min_utterance_ms=self.cfg.min_utterance_ms))
            return None
        out.append(note('INFO', 'utterance_end', seconds=dur / 1000, blocked=blocked))
        if blocked:
            self.stats.echo_blocked_utterances += 1
            out.append(note('INFO', 'utterance_echo_blocked'))
            return None
        level = self.voice.sound_level_db(self.sound.rms[: max(1, dur // FRAME_MS)])
        if not self.turn_resumed and not self.voice.is_callers(level, self.vad.floor_rms):
            self.stats.room_utterances += 1
            self.sound.room = True
            caller_db = self.voice.caller_db
            out.append(note('INFO', 'utterance_room', level_db=round(level),
                            room_db=round(level_db(self.voice.room_loud_rms(self.vad.floor_rms))),
                            caller_db='unknown' if caller_db is None else f"{caller_db:.0f}dB"))
            return None
        if dur >= self.cfg.speech_veto_min_ms and not self.likeness.is_speech(dur) and not self.turn_resumed:
            self.stats.vetoed_utterances += 1
            self.sound.room = True
            steady = sorted(self.sound.rms[: max(1, dur // FRAME_MS)])
            self.vad.adopt_floor(steady[len(steady) // 2])
            out.append(note('INFO', 'utterance_vetoed', modulation_db=self.likeness.modulation_db(dur),
                            speech_min_modulation_db=self.cfg.speech_min_modulation_db,
                            noise_floor_rms=self.vad.noise_floor_rms))
            return None
        if self.batch.since_commit_bytes < MIN_COMMIT_BYTES:
            out.append(note('WARNING', 'utterance_too_little_audio',
                            forwarded_since_commit_bytes=self.batch.since_commit_bytes))
            return None
        return Utterance(dur, level, speech_end_ms)

    def answered(self, utterance: Utterance) -> None:
        """The utterance is answered: it was the caller's voice."""
        self.user_has_spoken = True
        self.sound.answered = True
        self.voice.answered(utterance.level_db)
        self.last_utterance_ms = utterance.duration_ms

    def committed(self, out: list[CoreAction]) -> None:
        """The turn goes to the model: every frame of it before the commit."""
        self.batch.since_commit_bytes = 0
        self.turn_resumed = False
        self.batch.flush(out)


def echo_text(verdict) -> str:
    gain = "?" if verdict.gain_db is None else f"{verdict.gain_db:.0f}dB"
    return f"echo lag={verdict.lag_ms}ms gain={gain}"
