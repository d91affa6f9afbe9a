"""Outbound pacing: when each assistant frame is due at Twilio, and how late it went out.

Theory of operation. Frames are due by deadline from the frame count (``start + n * frame``,
``lead_ms`` early as a jitter margin), never by accumulated sleeps, so one late wake-up does not
shift every later frame. A clock that fell more than ``resync_ms`` behind restarts instead of
bursting seconds of audio into Twilio's buffer. A pause restarts the clock too.

Lateness is the measure of a worker that keeps up: how long after its deadline a frame was sent.
A frame that was not there yet at its deadline (the model had not sent it) is measured from when
it became available (``starved``), so a slow model never reads as a slow worker.
"""
from __future__ import annotations


class MsHistogram:
    """Counts per whole millisecond up to ``top_ms`` (the last bucket holds everything above)."""

    def __init__(self, top_ms: int = 250) -> None:
        self.counts = [0] * (top_ms + 1)

    def add(self, value_ms: int) -> None:
        self.counts[max(0, min(value_ms, len(self.counts) - 1))] += 1

    def merge(self, other: "MsHistogram") -> None:
        for i, c in enumerate(other.counts):
            self.counts[i] += c

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile_ms(self, pct: float) -> int | None:
        total = self.total
        if not total:
            return None
        rank = max(1, -(-total * pct // 100))        # nearest-rank percentile
        seen = 0
        for value, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return value
        return len(self.counts) - 1


class Pacer:
    def __init__(self, frame_ms: int, lead_ms: int, resync_ms: int, lateness: MsHistogram | None = None) -> None:
        self.frame_ms, self.lead_ms, self.resync_ms = frame_ms, lead_ms, resync_ms
        self.lateness = lateness if lateness is not None else MsHistogram()
        self._start_ms: int | None = None
        self._frames = 0
        self._available_ms = 0           # frames are not late before they exist
        self._due_ms = 0

    def restart(self) -> None:
        """A pause or a cleared buffer: the next frame starts a fresh clock."""
        self._start_ms = None

    def starved(self, now_ms: int) -> None:
        """The queue ran dry at ``now_ms``: the next frame is measured from when it arrives."""
        self._available_ms = now_ms

    def due_ms(self, now_ms: int) -> int:
        """When the next frame should go out (it may be in the past: send it at once)."""
        if self._start_ms is None:
            self._start_ms, self._frames = now_ms, 0
        due = self._start_ms + self._frames * self.frame_ms - self.lead_ms
        if now_ms - due > self.resync_ms:
            self._start_ms, self._frames, due = now_ms, 0, now_ms - self.lead_ms
        self._due_ms = due
        return due

    def sent(self, now_ms: int, frames: int = 1) -> None:
        """The frame whose deadline ``due_ms`` gave went out at ``now_ms`` (with ``frames - 1``
        more after it in the same message: the next deadline moves by all of them)."""
        self._frames += frames
        # Not late before it existed, nor before the clock started (a fresh clock's jitter margin
        # is due in the past on purpose).
        self.lateness.add(now_ms - max(self._due_ms, self._available_ms, self._start_ms or 0))
