"""Caller voice activity: a per-frame energy state machine ``SILENCE <-> MAYBE_SPEECH <-> SPEECH``.

Theory of operation: every inbound 20 ms frame is scored by its RMS against a threshold derived
from the noise floor (calibrated on the first ``calibration_ms`` of the call, then tracked on
silent frames). Time here is *audio time*: the end of the frame in ms since the stream started,
so the machine is deterministic and never reads a clock. A voiced run of ``speech_confirm_ms``
confirms speech; the utterance ends when ``eou_silence_ms`` have passed since the last voiced
frame (measured from that frame, not accumulated, so silence can never be stuck at 0).

The floor the threshold uses is the larger of that tracked floor and a *minimum statistic*: a low
percentile (``floor_percentile``) of all frames of the last ``floor_window_ms``, whatever the state.
Noise that swells for seconds (a passing car, a handset's AGC pumping the line up in a pause)
never lets the tracked floor learn it, because it keeps the machine in SPEECH; the minimum
statistic rises with it within a window, so the swell stops counting as speech. Speech has
closures and gaps between words, so its low percentile stays near the real floor. The other way,
a line that turns 6 dB quieter than the tracked floor for ``_QUIETER_FRAMES`` frames in a row (a
handset's AGC backing off as the caller starts talking, after pumping the noise up in the pause)
pulls the tracked floor down to it at once; digital silence (concealed packet loss) does not count.

This is the first, energy-only detector. It runs on EVERY frame whatever the echo state: echo
protection gates forwarding and triggering elsewhere, never the VAD. The speech-likeness veto
and echo correlation plug in beside it without changing its interface.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from server.core.turn_config import TurnConfig
from server.core.ulaw import FRAME_MS


_DIGITAL_SILENCE_RMS = 2.0      # µ-law silence decodes to 0: a concealed lost packet, not a quieter line
_QUIETER_FRAMES = 3


class VadState(Enum):
    SILENCE = "SILENCE"
    MAYBE_SPEECH = "MAYBE_SPEECH"
    SPEECH = "SPEECH"


_ALLOWED = {
    (VadState.SILENCE, VadState.MAYBE_SPEECH),
    (VadState.MAYBE_SPEECH, VadState.SPEECH),
    (VadState.MAYBE_SPEECH, VadState.SILENCE),
    (VadState.SPEECH, VadState.SILENCE),
}


@dataclass(frozen=True)
class VadStateChanged:
    old: VadState
    new: VadState
    reason: str


@dataclass(frozen=True)
class SpeechStarted:
    start_ms: int


@dataclass(frozen=True)
class UtteranceEnded:
    start_ms: int
    end_ms: int
    """End of the last voiced frame."""
    silence_ms: int
    forced: bool = False

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


VadRecord = VadStateChanged | SpeechStarted | UtteranceEnded


class EnergyVad:
    def __init__(self, config: TurnConfig) -> None:
        self.cfg = config
        self.state = VadState.SILENCE
        self.noise_floor_rms = 0.0
        self._calibration: list[float] = []
        self._calibrated = False
        self._candidate_start_ms = 0
        self._voiced_ms = 0
        self._gap_ms = 0
        self.utterance_start_ms: int | None = None
        self.last_voiced_end_ms: int | None = None
        self._recent: deque[float] = deque(maxlen=max(1, config.floor_window_ms // FRAME_MS))
        self._min_stat = 0.0
        self._quieter = 0


    @property
    def floor_rms(self) -> float:
        """The noise floor the decisions use: tracked in silence, raised by the minimum statistic."""
        return max(self.noise_floor_rms, self._min_stat)

    @property
    def threshold_rms(self) -> float:
        return self.cfg.threshold_rms(self.floor_rms)

    def _set_state(self, new: VadState, reason: str, out: list[VadRecord]) -> None:
        if (self.state, new) not in _ALLOWED:
            raise AssertionError(f"VAD transition {self.state} -> {new} not allowed")
        out.append(VadStateChanged(self.state, new, reason))
        self.state = new

    def _calibrate(self, rms: float, frame_end_ms: int) -> None:
        self._calibration.append(rms)
        # Mean of the quieter half: a caller who talks during calibration does not inflate it.
        quiet = sorted(self._calibration)[: max(1, len(self._calibration) // 2)]
        self.noise_floor_rms = sum(quiet) / len(quiet)
        if frame_end_ms >= self.cfg.calibration_ms:
            self._calibrated = True
            self._calibration = []

    def on_frame(self, rms: float, frame_end_ms: int, track_floor: bool = True,
                 voiced: bool | None = None, min_threshold_rms: float = 0.0) -> list[VadRecord]:
        """``voiced`` overrides the energy decision (another detector driving the same machine);
        ``min_threshold_rms``: a frame needs at least this to be voiced (the room's level)."""
        out: list[VadRecord] = []
        if not self._calibrated:
            self._calibrate(rms, frame_end_ms)
        self._recent.append(rms)
        if len(self._recent) >= 20 and frame_end_ms % (5 * FRAME_MS) == 0:
            ordered = sorted(self._recent)            # every 100 ms: the statistic moves slowly anyway
            self._min_stat = ordered[len(ordered) * self.cfg.floor_percentile // 100]
        if self._calibrated and _DIGITAL_SILENCE_RMS < rms < self.noise_floor_rms / 2:
            self._quieter += 1
            if self._quieter >= _QUIETER_FRAMES:          # the line went 6 dB quieter (an AGC backing off)
                self.noise_floor_rms = max(list(self._recent)[-_QUIETER_FRAMES:])
                self._min_stat = min(self._min_stat, self.noise_floor_rms)
        else:
            self._quieter = 0
        if voiced is None:
            voiced = rms > max(self.threshold_rms, min_threshold_rms)
        frame_start_ms = frame_end_ms - FRAME_MS
        if self.state is VadState.SILENCE:
            if voiced:
                self._candidate_start_ms, self._voiced_ms, self._gap_ms = frame_start_ms, FRAME_MS, 0
                self._set_state(VadState.MAYBE_SPEECH, f"rms={rms:.0f}>{self.threshold_rms:.0f}", out)
                self._maybe_confirm(frame_end_ms, out)
            elif track_floor and self._calibrated:
                self.noise_floor_rms += (rms - self.noise_floor_rms) * self.cfg.floor_track_pct / 100.0
        elif self.state is VadState.MAYBE_SPEECH:
            if voiced:
                self._voiced_ms += FRAME_MS
                self._gap_ms = 0
                self._maybe_confirm(frame_end_ms, out)
            else:
                self._gap_ms += FRAME_MS
                if self._gap_ms > self.cfg.maybe_speech_gap_ms:
                    self._set_state(VadState.SILENCE, "too short to be speech", out)
        else:  # SPEECH
            if voiced:
                self.last_voiced_end_ms = frame_end_ms
            assert self.utterance_start_ms is not None and self.last_voiced_end_ms is not None
            silence_ms = frame_end_ms - self.last_voiced_end_ms
            if silence_ms >= self.cfg.eou_silence_ms:
                self._end(silence_ms, False, out)
            elif frame_end_ms - self.utterance_start_ms >= self.cfg.max_utterance_ms:
                self._end(silence_ms, True, out)
        return out

    def adopt_floor(self, rms: float) -> None:
        """A steady sound (vetoed as not speech) becomes the new noise floor, so speech over it still
        stands out and the sound itself stops holding the VAD in SPEECH."""
        self.noise_floor_rms = max(self.noise_floor_rms, rms)

    def _maybe_confirm(self, frame_end_ms: int, out: list[VadRecord]) -> None:
        if self._voiced_ms >= self.cfg.speech_confirm_ms:
            self.utterance_start_ms = self._candidate_start_ms
            self.last_voiced_end_ms = frame_end_ms
            self._set_state(VadState.SPEECH, f"{self._voiced_ms}ms voiced", out)
            out.append(SpeechStarted(self._candidate_start_ms))

    def _end(self, silence_ms: int, forced: bool, out: list[VadRecord]) -> None:
        assert self.utterance_start_ms is not None and self.last_voiced_end_ms is not None
        record = UtteranceEnded(self.utterance_start_ms, self.last_voiced_end_ms, silence_ms, forced)
        self._set_state(VadState.SILENCE, "max utterance length" if forced else f"silence {silence_ms}ms", out)
        self.utterance_start_ms = self.last_voiced_end_ms = None
        out.append(record)
