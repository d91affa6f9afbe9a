"""The echo gate: which caller frames reach OpenAI, and when real speech over the AI opens it.

Theory of operation. A frame inside the echo window (AI audio played within ``echo_window_ms``)
is held back, never dropped from the VAD. Every frame is also judged by the ``EchoDetector``: a
voiced frame (above ``noise_floor * ratio + barge_in_offset_rms``) that the predicted echo cannot
explain counts as near-end speech; ``near_end_ms`` counts those frames over the last
``NEAR_END_WINDOW_MS`` (speech has soft stretches the echo masks: a window keeps a caller talking
over the AI counted, where a leaky count lost them; an echo's stray frames stay far below it). While the AI is audible the core decides when to open (``BargeInJudge``: pause first,
interrupt on sustained speech) and calls ``open``; in the echo tail after the AI spoke the gate
opens itself after ``barge_in_min_ms`` of near-end speech. Opening forwards the held-back start of
the speech plus ``pre_roll_ms`` before it, then every frame until the utterance ends.

An utterance that *began* inside the echo window stays held when the window expires, until the
echo detector has seen it as the caller's (the gate opens) or it ends: a speakerphone's echo tail
outlasts the window, and forwarding it made the AI answer its own voice. An utterance that began
outside the window is forwarded from its start.

Between utterances nothing reaches OpenAI: the model bills every second of input audio it is
sent (and reads it again on later turns), and the line between turns carries nothing it needs.
The last ``pre_roll_ms`` of that quiet is kept and goes out with the utterance's first frame, so
the onset the VAD needed a frame or two to be sure of is never lost. An utterance's audio is
therefore its pre-roll, its speech and the end-of-utterance silence up to the commit.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from server.core.echo_detector import EchoDetector, EchoVerdict
from server.core.turn_config import TurnConfig
from server.core.ulaw import FRAME_MS


@dataclass(frozen=True)
class GateResult:
    forward: tuple[bytes, ...]
    """Frames to forward now, oldest first (pre-roll, then this frame); empty when held back."""
    blocked: bool
    opened: bool
    """The gate opened on this frame: sustained speech the echo does not explain."""
    verdict: EchoVerdict
    near_end: bool
    """This frame is caller speech the echo cannot explain."""


NEAR_END_WINDOW_MS = 240


class CallerGate:
    def __init__(self, cfg: TurnConfig) -> None:
        self.cfg = cfg
        self.echo = EchoDetector(cfg.echo_max_lag_ms, cfg.echo_learn_window_ms, cfg.echo_margin_db,
                                 cfg.echo_min_corr_pct)
        self.is_open = False
        self.near_end_ms = 0
        self._recent: deque[bool] = deque(maxlen=NEAR_END_WINDOW_MS // FRAME_MS)
        self._run_ms = 0                       # length of the current near-end run, from its first frame
        self._born_in_window = False
        self._speaking = False
        self._pre_roll_frames = cfg.pre_roll_ms // FRAME_MS
        self._held: deque[bytes] = deque(maxlen=max(1, (cfg.pre_roll_ms + cfg.barge_in_confirm_ms) // FRAME_MS + 1))

    def on_played(self, now_ms: int, energy: float) -> None:
        self.echo.on_reference(now_ms, energy)

    def on_caller_frame(self, audio: bytes, energy: float, now_ms: int, in_echo_window: bool,
                        barge_threshold_rms: float, speech_in_progress: bool,
                        explain_echo: bool = True, self_open: bool = True) -> GateResult:
        """``explain_echo=False``: every loud frame counts as the caller's (the field's plain rule).
        ``self_open=False``: the AI is audible and the core decides when to open (``open``)."""
        verdict = self.echo.on_inbound(now_ms, energy)
        near_end = (verdict.near_end or not explain_echo) and energy > barge_threshold_rms ** 2
        self._recent.append(near_end)
        self.near_end_ms = sum(self._recent) * FRAME_MS
        self._run_ms = 0 if self.near_end_ms == 0 else self._run_ms + FRAME_MS
        if speech_in_progress and not self._speaking:
            self._born_in_window = in_echo_window
            while len(self._held) > self._pre_roll_frames:    # quiet before the onset: its pre-roll only
                self._held.popleft()
        self._speaking = speech_in_progress
        if self.is_open or (not in_echo_window and not (speech_in_progress and self._born_in_window)):
            if not speech_in_progress and not self.is_open:
                self._held.append(audio)              # between utterances: the next one's pre-roll
                return GateResult((), False, False, verdict, near_end)
            held = tuple(self._held) if not self.is_open else ()
            self._held.clear()
            return GateResult(held + (audio,), False, False, verdict, near_end)
        if self_open and self.near_end_ms >= self.cfg.barge_in_min_ms:
            return GateResult(self.open(audio), False, True, verdict, near_end)
        self._held.append(audio)
        return GateResult((), True, False, verdict, near_end)

    def open(self, audio: bytes | None = None) -> tuple[bytes, ...]:
        """Open for the caller's speech: the held frames since its onset plus ``pre_roll_ms`` before
        it (oldest first), then ``audio`` (this frame, if it was not held yet)."""
        self.is_open = True
        keep = (self._run_ms + self.cfg.pre_roll_ms) // FRAME_MS
        held = tuple(self._held)[-keep:] if keep else ()
        self._held.clear()
        return held + ((audio,) if audio is not None else ())

    def close(self) -> None:
        """The caller's utterance is over: the next one must prove itself again."""
        self.is_open = False
        self.near_end_ms = self._run_ms = 0
        self._recent.clear()
        self._born_in_window = self._speaking = False
