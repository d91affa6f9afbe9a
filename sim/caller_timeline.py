"""What the simulated caller says and sends, frame by frame: the scenario's timeline of steps and the
phone line the frames go through.

``Timeline`` turns the scenario's steps (``say``, pauses, silence, noise, waits for the AI, key
presses, hangup) into one 20 ms frame of caller audio at a time and writes the ground truth of each
turn into the caller's record; a ``press`` is one frame of silence (the key's tone is not in the
audio) and a key the caller collects with ``take_presses`` and sends as ``dtmf`` before that frame;
``InboundAudio`` mixes that frame with what the caller heard, through the
scenario's ``PhoneLine`` (or the legacy noise + echo mix). Split from ``sim.twilio_caller``, which
owns the sockets, the clock and the calls' control flow.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from sim import audio as sim_audio
from sim import line_model
from sim.audio import FRAME_BYTES, FRAME_MS
from sim.scenario import Scenario, Step


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
        from sim.real_speech import SPEECH_DBFS
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


class Timeline:
    """Turns scenario steps into one caller frame (int16 samples as float) per 20 ms."""

    def __init__(self, steps: list[Step], caller) -> None:
        """``caller``: the ``TwilioCaller`` whose record, rng, scenario and events the timeline uses."""
        self.steps = list(steps)
        self.caller = caller
        self.index = -1
        self.frames: list[np.ndarray] = []
        self.step_started_ms = 0
        self._pause_from_ms: int | None = None
        self._voices = voices_for(caller.scenario)
        self._said = {"utterance": 0, "short": 0}
        self._presses: list[str] = []
        self._advance(0)

    def take_presses(self) -> list[str]:
        """The keys pressed since the last call, in order: the caller sends each as a ``dtmf`` message
        before the frame ``next_frame`` just returned."""
        presses, self._presses = self._presses, []
        return presses

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
        elif step.kind == "press":
            self._presses.append(step.digit)
            self.frames = [np.zeros(FRAME_BYTES)]
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
