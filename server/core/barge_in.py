"""Barge-in or backchannel? Pause the AI at once, decide while it is paused.

Theory of operation. Callers say «כן», «אהה», «בסדר», cough or laugh while the AI talks; those
sounds last up to ~400 ms and are not a request to stop. A real interruption goes on. The TX loop
sends only ~40 ms ahead of playout, so the server can *pause* the AI almost instantly without
Twilio's ``clear`` and resume it later with nothing lost. So:

* ``WATCHING`` -> ``PAUSED`` when caller speech the echo cannot explain has been sustained
  ``barge_in_min_ms`` (the gate's leaky count): the AI is audibly stopped within ~150 ms of onset.
* ``PAUSED`` -> ``WATCHING`` with ``Interrupt`` when the sound reaches ``barge_in_confirm_ms`` (counted
  from its onset, quiet frames not counted): a barge-in, executed by the core as before
  (cancel, clear, truncate at what was played).
* ``PAUSED`` -> ``WATCHING`` with ``Resume`` after ``backchannel_resume_ms`` of quiet: the sound was a
  backchannel; playout continues where it stopped.

A paused AI also stops feeding the line's echo, so after the echo delay every loud frame really
is the caller: the pause itself probes for double talk. Pure: frames in, verdicts out.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from server.core.ulaw import FRAME_MS


class Phase(Enum):
    WATCHING = "WATCHING"
    PAUSED = "PAUSED"


_ALLOWED = {(Phase.WATCHING, Phase.PAUSED), (Phase.PAUSED, Phase.WATCHING)}


@dataclass(frozen=True)
class Pause:
    sound_ms: int


@dataclass(frozen=True)
class Resume:
    sound_ms: int
    paused_ms: int


@dataclass(frozen=True)
class Interrupt:
    sound_ms: int
    paused_ms: int


Verdict = Pause | Resume | Interrupt


class BargeInJudge:
    def __init__(self, pause_after_ms: int, confirm_ms: int, resume_after_ms: int) -> None:
        self.pause_after_ms = pause_after_ms
        self.confirm_ms = confirm_ms
        self.resume_after_ms = resume_after_ms
        self.phase = Phase.WATCHING
        self.sound_ms = 0
        self._quiet_ms = 0
        self._paused_at_ms = 0

    @property
    def paused(self) -> bool:
        return self.phase is Phase.PAUSED

    def _set(self, new: Phase) -> None:
        if (self.phase, new) not in _ALLOWED:
            raise AssertionError(f"barge-in transition {self.phase} -> {new} not allowed")
        self.phase = new

    def on_frame(self, near_end: bool, sustained_ms: int, now_ms: int) -> Verdict | None:
        """One caller frame while the AI is audible (playing or paused). ``near_end``: this frame is
        caller speech the echo cannot explain; ``sustained_ms``: the gate's leaky count of those."""
        if self.phase is Phase.WATCHING:
            if sustained_ms >= self.pause_after_ms:
                self._set(Phase.PAUSED)
                self.sound_ms, self._quiet_ms, self._paused_at_ms = sustained_ms, 0, now_ms
                return Pause(self.sound_ms)
            return None
        if near_end:
            self.sound_ms += FRAME_MS
            self._quiet_ms = 0
        else:
            self._quiet_ms += FRAME_MS
        if self.sound_ms >= self.confirm_ms:
            self._set(Phase.WATCHING)
            return Interrupt(self.sound_ms, now_ms - self._paused_at_ms)
        if self._quiet_ms >= self.resume_after_ms:
            self._set(Phase.WATCHING)
            return Resume(self.sound_ms, now_ms - self._paused_at_ms)
        return None

    def reset(self) -> None:
        """The AI stopped being audible (cleared, finished): nothing is paused any more."""
        self.phase = Phase.WATCHING
        self.sound_ms = self._quiet_ms = 0
