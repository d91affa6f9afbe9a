"""Barge-in or backchannel? Pause the AI at once, decide while it is paused.

Theory of operation. Callers say «כן», «אהה», «בסדר», cough or laugh while the AI talks; those
sounds last up to ~400 ms and are not a request to stop. A real interruption goes on. The TX loop
sends only ~40 ms ahead of playout, so the server can *pause* the AI almost instantly without
Twilio's ``clear`` and resume it later with nothing lost. So:

* ``WATCHING`` -> ``PAUSED`` when caller speech the echo cannot explain has been sustained
  ``barge_in_min_ms`` over the AI (counted over the last ``WINDOW_FRAMES`` frames while the AI was
  audible: speech has soft stretches the echo masks) and the last ``_ONSET_FRAMES`` frames are not as
  steady as noise (street noise swelling past the threshold varies under 1 dB over 160 ms; the
  onset of a word, 2 dB and more): the AI is audibly stopped within ~150 ms of onset.
* ``PAUSED`` -> ``WATCHING`` with ``Interrupt`` when the sound reaches ``barge_in_confirm_ms`` (counted
  from its onset, quiet frames not counted) or spans ``backchannel_max_ms`` from its onset (speech
  with soft stretches): a barge-in, executed by the core as before (cancel, clear, truncate at what
  was played). Unless the sound is as steady as noise (a passing car, a door: its frame energies
  vary less than ``min_modulation_db``), which resumes the AI like a backchannel.
* ``PAUSED`` -> ``WATCHING`` with ``Resume`` after ``backchannel_resume_ms`` of quiet: the sound was a
  backchannel; playout continues where it stopped.

A paused AI also stops feeding the line's echo, so after the echo delay every loud frame really
is the caller: the pause itself probes for double talk. Pure: frames in, verdicts out.

The sound is measured on the caller's sound only: at the pause, from the first near-end frame of
the current burst (stray frames before a 60 ms gap belong to something else); while paused, a
frame counts only within ``PEAK_RANGE_DB`` of the loudest frame of the sound so far, so an echo
tail, the room or the caller's breath after a 340 ms «כן» never stretches it to the barge-in
length.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from server.core.speech_likeness import modulation_db
from server.core.ulaw import FRAME_MS


_ONSET_FRAMES = 8
WINDOW_FRAMES = 12
GAP_FRAMES = 3                  # a burst begins after this many frames without near-end sound
PEAK_RANGE_DB = 20.0            # while paused, a frame this far under the sound's loudest is not the sound


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
    steady: bool = False
    """The sound was long but as steady as noise, not speech."""


@dataclass(frozen=True)
class Interrupt:
    sound_ms: int
    paused_ms: int


Verdict = Pause | Resume | Interrupt


class BargeInJudge:
    def __init__(self, pause_after_ms: int, confirm_ms: int, resume_after_ms: int, max_span_ms: int = 10**9,
                 min_modulation_db: float = 0.0, onset_modulation_db: float = 0.0) -> None:
        self.pause_after_ms = pause_after_ms
        self.confirm_ms = confirm_ms
        self.resume_after_ms = resume_after_ms
        self.max_span_ms = max_span_ms
        self.min_modulation_db = min_modulation_db
        self.onset_modulation_db = onset_modulation_db
        self._recent_db: deque[float] = deque(maxlen=_ONSET_FRAMES)
        self._window: deque[bool] = deque(maxlen=WINDOW_FRAMES)
        self.phase = Phase.WATCHING
        self.sound_ms = 0
        self._quiet_ms = 0
        self._paused_at_ms = 0
        self._onset_ms = 0
        self._db: list[float] = []
        self._burst_ms = 0              # near-end frames since the current burst began
        self._gap = GAP_FRAMES
        self._peak_db = 0.0

    @property
    def paused(self) -> bool:
        return self.phase is Phase.PAUSED

    def _set(self, new: Phase) -> None:
        if (self.phase, new) not in _ALLOWED:
            raise AssertionError(f"barge-in transition {self.phase} -> {new} not allowed")
        self.phase = new

    def on_frame(self, near_end: bool, now_ms: int, energy_db: float = 0.0) -> Verdict | None:
        """One caller frame while the AI is audible (playing or paused). ``near_end``: this frame is
        caller speech the echo cannot explain; ``energy_db``: its energy (how steady a sound is)."""
        self._recent_db.append(energy_db)
        self._window.append(near_end)
        sustained_ms = sum(self._window) * FRAME_MS
        if self.phase is Phase.WATCHING:
            if near_end:
                if self._gap >= GAP_FRAMES:
                    self._burst_ms = 0
                self._gap = 0
                self._burst_ms += FRAME_MS
            else:
                self._gap += 1
            if sustained_ms >= self.pause_after_ms and modulation_db(self._recent_db) >= self.onset_modulation_db:
                self._set(Phase.PAUSED)
                self.sound_ms = min(sustained_ms, self._burst_ms)
                self._quiet_ms, self._paused_at_ms = 0, now_ms
                self._onset_ms, self._db = now_ms - sustained_ms, list(self._recent_db)   # with its rise
                self._peak_db = max(self._db[-max(1, self.sound_ms // FRAME_MS):])
                return Pause(self.sound_ms)
            return None
        if near_end:
            self._peak_db = max(self._peak_db, energy_db)
            near_end = energy_db >= self._peak_db - PEAK_RANGE_DB
        if near_end:
            self.sound_ms += FRAME_MS
            self._quiet_ms = 0
            self._db.append(energy_db)
        else:
            self._quiet_ms += FRAME_MS
        long_sound = self.sound_ms >= self.confirm_ms or (near_end and now_ms - self._onset_ms >= self.max_span_ms)
        if long_sound:
            self._set(Phase.WATCHING)
            self._window.clear()
            self._burst_ms, self._gap = 0, GAP_FRAMES
            if modulation_db(self._db) < self.min_modulation_db:
                return Resume(self.sound_ms, now_ms - self._paused_at_ms, steady=True)
            return Interrupt(self.sound_ms, now_ms - self._paused_at_ms)
        if self._quiet_ms >= self.resume_after_ms:
            self._set(Phase.WATCHING)
            self._window.clear()
            self._burst_ms, self._gap = 0, GAP_FRAMES
            return Resume(self.sound_ms, now_ms - self._paused_at_ms)
        return None

    def reset(self) -> None:
        """The AI stopped being audible (cleared, finished): nothing is paused any more."""
        self.phase = Phase.WATCHING
        self.sound_ms = self._quiet_ms = self._burst_ms = 0
        self._gap = GAP_FRAMES
        self._window.clear()
        self._recent_db.clear()
