"""Drain check: when may we say the AI stopped speaking?

``response.output_audio.done`` arrives long before the caller has heard the audio (deltas come
faster than real time and wait in our queues). So one check per response id polls the playout
ledger every ``drain_poll_ms``: the AI stops counting as speaking when both queues are empty,
or ``drain_timeout_ms`` after the queued audio should have finished playing, at the latest. (A
timeout counted from ``audio.done`` itself fires while seconds of audio still wait: the model
sends a 5 s answer in well under a second.) The timeout is the safety net for a stalled TX loop.
If another response became active meanwhile the check is abandoned without clearing anything:
the flags now belong to the newer response.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Drained:
    response_id: str
    after_ms: int


@dataclass(frozen=True)
class DrainTimedOut:
    response_id: str


@dataclass(frozen=True)
class DrainSuperseded:
    response_id: str
    newer_response_id: str


DrainResult = Drained | DrainTimedOut | DrainSuperseded


class DrainCheck:
    def __init__(self, response_id: str, started_ms: int, timeout_ms: int, queued_audio_ms: int = 0) -> None:
        self.response_id = response_id
        self.started_ms = started_ms
        self.timeout_ms = timeout_ms
        self.deadline_ms = started_ms + queued_audio_ms + timeout_ms

    def poll(self, now_ms: int, queues_empty: bool, active_response_id: str | None) -> DrainResult | None:
        """None means: keep polling."""
        if active_response_id is not None and active_response_id != self.response_id:
            return DrainSuperseded(self.response_id, active_response_id)
        if queues_empty:
            return Drained(self.response_id, now_ms - self.started_ms)
        if now_ms >= self.deadline_ms:
            return DrainTimedOut(self.response_id)
        return None
