"""The echo gate: which caller frames reach OpenAI, and when real speech over the AI opens it.

Theory of operation. A frame inside the echo window (AI audio played within ``echo_window_ms``)
is held back, never dropped from the VAD. Every frame is also judged by the ``EchoDetector``: a
voiced frame (above ``noise_floor * ratio + barge_in_offset_rms``) that the predicted echo cannot
explain counts as near-end speech. When near-end speech has been sustained for
``barge_in_min_ms`` (a leaky count: a frame the echo explains takes one back), the gate opens: the held-back
``pre_roll_ms`` are forwarded first, then every frame, until the utterance ends. The call core
turns an opening while the AI is still speaking into a barge-in. When the echo window simply
expires in the middle of an utterance, the held-back start of that utterance is forwarded too:
discarding it cut the first syllables of callers who answered quickly.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from server.core.echo_detector import EchoDetector, EchoVerdict
from server.core.turn_config import TurnConfig
from server.core.ulaw import FRAME_MS


@dataclass(frozen=True)
class GateResult:
    forward: tuple[str, ...]
    """Payloads to forward now, oldest first (pre-roll, then this frame); empty when held back."""
    blocked: bool
    opened: bool
    """The gate opened on this frame: sustained speech the echo does not explain."""
    verdict: EchoVerdict


class CallerGate:
    def __init__(self, cfg: TurnConfig) -> None:
        self.cfg = cfg
        self.echo = EchoDetector(cfg.echo_max_lag_ms, cfg.echo_learn_window_ms, cfg.echo_margin_db,
                                 cfg.echo_min_corr_pct)
        self.is_open = False
        self.near_end_ms = 0
        self._held: deque[str] = deque(maxlen=max(1, cfg.pre_roll_ms // FRAME_MS))

    def on_played(self, now_ms: int, energy: float) -> None:
        self.echo.on_reference(now_ms, energy)

    def on_caller_frame(self, payload_b64: str, energy: float, now_ms: int, in_echo_window: bool,
                        barge_threshold_rms: float, speech_in_progress: bool,
                        explain_echo: bool = True) -> GateResult:
        """``explain_echo=False``: every loud frame counts as the caller's (the field's plain rule)."""
        verdict = self.echo.on_inbound(now_ms, energy)
        near_end = (verdict.near_end or not explain_echo) and energy > barge_threshold_rms ** 2
        self.near_end_ms = self.near_end_ms + FRAME_MS if near_end else max(0, self.near_end_ms - FRAME_MS)
        if not in_echo_window:
            held = tuple(self._held) if speech_in_progress else ()
            self._held.clear()
            return GateResult(held + (payload_b64,), False, False, verdict)
        if self.is_open:
            return GateResult((payload_b64,), False, False, verdict)
        if self.near_end_ms >= self.cfg.barge_in_min_ms:
            self.is_open = True
            held = tuple(self._held)
            self._held.clear()
            return GateResult(held + (payload_b64,), False, True, verdict)
        self._held.append(payload_b64)
        return GateResult((), True, False, verdict)

    def close(self) -> None:
        """The caller's utterance is over: the next one must prove itself again."""
        self.is_open = False
        self.near_end_ms = 0
