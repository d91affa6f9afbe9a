"""The room: how loud the sound that is not the caller gets.

A café's other voices, a street or a car are not steady like line hiss: several voices rise and
fall by 10 dB and more (the 10th to the 90th percentile of their 20 ms frames), so a threshold a
few dB over their quiet frames (the VAD's noise floor) is crossed all the time. This keeps the
level distribution of the frames that are known not to be the caller's (``add``; the caller's
own are never added) over the last ``window_frames``: ``loud_db`` (the ``percentile``, 90th) is
how loud the room gets, ``mean_energy`` what it adds to every frame on average. Recomputed every
``_EVERY`` frames (a sort of at most 150 numbers); levels in dB of int16 RMS. Pure.
"""
from __future__ import annotations

import math
from collections import deque

_EVERY = 5
_MIN_FRAMES = 15               # 300 ms of room before it says anything


def level_db(rms: float) -> float:
    """dB of an int16 RMS (0 dB = RMS 1)."""
    return 20.0 * math.log10(rms + 1.0)


def rms_of(db: float) -> float:
    return 10.0 ** (db / 20.0)


class RoomLevel:
    def __init__(self, window_frames: int, percentile: int = 90) -> None:
        self._db: deque[float] = deque(maxlen=max(_MIN_FRAMES, window_frames))
        self.percentile = percentile
        self.loud_db: float | None = None
        """The room's loud level (None until ``_MIN_FRAMES`` frames were added)."""
        self.loud_rms = 0.0
        """``loud_db`` as an RMS (0 while unknown)."""
        self.mean_energy = 0.0
        """The room's mean energy (int16 RMS squared)."""
        self._since = 0
        self._energy_sum = 0.0                                   # running sums over the window
        self._change_sum = 0.0
        self.roughness_db = 0.0
        """Mean change between consecutive frames of the room (dB): voices jump by 3-5 dB from frame to
        frame, line hiss or a pumped-up pink noise by under one."""

    @property
    def frames(self) -> int:
        """How many frames of the room it holds (at most the window)."""
        return len(self._db)

    def add(self, db: float) -> None:
        if len(self._db) == self._db.maxlen:                     # the oldest frame leaves the window
            gone = self._db[0]
            self._energy_sum -= 10.0 ** (gone / 10.0)
            self._change_sum -= abs(self._db[1] - gone)
        if self._db:
            self._change_sum += abs(db - self._db[-1])
        self._db.append(db)
        self._energy_sum += 10.0 ** (db / 10.0)
        self._since += 1
        if self._since >= _EVERY and len(self._db) >= _MIN_FRAMES:
            self._since = 0
            ordered = sorted(self._db)
            self.loud_db = ordered[min(len(ordered) - 1, len(ordered) * self.percentile // 100)]
            self.loud_rms = rms_of(self.loud_db)
            self.mean_energy = max(0.0, self._energy_sum) / len(self._db)
            self.roughness_db = max(0.0, self._change_sum) / (len(self._db) - 1)

    def above(self, energy: float) -> float:
        """A frame's energy less the room's mean (what the room cannot account for), never below a
        twentieth of the frame's own: the speech-likeness of a sound is measured on this, so that a
        word in a café rises and falls as it does on a quiet line."""
        return max(energy - self.mean_energy, energy / 20.0)
