"""Opt-in call recording: both sides of one call as a stereo WAV (caller left, AI as played right).

Theory of operation. The call handler sees two streams on two clocks:

* **caller audio** in Twilio's clock: every frame carries its position in the stream
  (``media.timestamp``, turned by the handler into ``audio_end_ms``, the end of the frame in ms
  since the stream started). That position is the truth, not the arrival time: a gap in the
  timestamps is audio Twilio never delivered (silence in the recording), a frame at a position
  already covered is a duplicate or arrived out of order and is dropped, so nothing after it moves.
* **AI audio** on the pacing clock (``green.monotonic_ms()``): the TX loop reports every message at
  the moment it sent it to Twilio, ``played(audio, at_ms)``, a message carrying whole 20 ms frames
  back to back. Twilio plays what it receives from a buffer, so a message plays at
  ``max(at_ms, end of what was queued before it)``: the pacer's lead (its first frames go out at
  once) queues back to back, a message sent a little late still follows on without a gap, and only
  a real underrun (nothing queued) leaves silence. A barge-in stops the sending; ``cleared(at_ms)``
  (optional) also drops what Twilio had queued but not yet played when the ``clear`` went out
  (at most the pacer's lead).

**One timeline.** The WAV's sample 0 is caller-audio time 0 (the start of the stream on Twilio's
clock). The constructor's ``start_ms`` is the pacing-clock time taken as caller-audio time 0 until
the handler says better: ``anchor(audio_end_ms, now_ms)`` states that the caller frame ending at
``audio_end_ms`` was received at pacing-clock ``now_ms``, so caller-audio time ``t`` is pacing
time ``t + (now_ms - audio_end_ms)``. The handler calls it with the first caller frame (it may
call it with every frame: the recorder keeps the smallest offset, the frame that waited least in
the network, so a late first frame does not skew the call). AI audio is stored on the pacing clock
and converted when the WAV is rendered, so the anchor may come after AI audio (a greeting played
before the first caller frame arrived). This is the server's view of the call: the caller as heard
by the server, the AI as sent by it; the line's round trip (the phone network both ways) shows as
a caller who answers that much later, as an echo does.

**Cheap per frame.** ``caller`` and ``played`` append bytes to the open segment (a new segment only
after a gap) and move an integer end: no numpy, no decoding, no allocation per frame beyond the
bytes themselves. Decoding and assembly happen once, in ``render`` (numpy), and ``write_wav``
writes the result with the stdlib ``wave`` module a minute at a time (so writing adds a few MB,
not a second copy of the call), atomically (a private temp file in the same folder, fsync,
``os.replace``), mode 0600 as a recording is personal data. It costs about 0.3 s of CPU per hour
of call, without yielding: the shell runs it once the call's threads are done.

**Bounded memory.** Each channel keeps at most ``max_ms`` of audio (2 h by default: 57.6 MB of
µ-law per channel); audio beyond it is ignored and counted (``over_limit_ms``), and a frame at a
position already covered is dropped and counted (``caller_dropped_ms``), so nothing grows with
duplicates either. The rendered WAV is at most ``max_ms`` long.

**An empty call** (no audio on either side) still writes a valid WAV with zero frames: a recording
that was switched on always leaves exactly one file per call, so the admin pages can link
``recordings/<call_sid>.wav`` whenever the call was recorded.

**Files.** ``recording_path(root, call_sid)`` is ``<root>/recordings/<call_sid>.wav``: the call SID
only (no phone number in any name), checked to be a plain token so it cannot leave the folder.
``delete_expired`` removes recordings (and temp files a crash left behind) whose mtime is older
than the retention; it looks at the folder's own regular files only: never a symlink, never a
subfolder.

Threads: ``caller`` runs in the RX green thread and ``played``/``cleared`` in the TX green thread;
none of them yields (no I/O), so under green threads they never interleave. ``write_wav`` runs
once, after the call.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import wave
from pathlib import Path

import numpy as np

from server.core import ulaw

SAMPLE_RATE_HZ = 8000
SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000        # one µ-law byte = one sample = 1/8 ms
DEFAULT_MAX_MS = 2 * 60 * 60 * 1000            # 2 h per channel
WRITE_BLOCK_FRAMES = 60 * SAMPLE_RATE_HZ         # render and write a minute at a time
RECORDINGS_DIR = "recordings"
_SID_RE = re.compile(r"[A-Za-z0-9]{1,64}")     # Twilio SIDs: two letters and 32 hex digits


class _Channel:
    """One channel's audio as segments ``[start_sample, bytearray]`` in ascending order, plus the
    end of the last one. Positions are samples on the channel's own clock."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.segments: list[list] = []
        self.end = 0                   # end of the last segment (0 before any)
        self.stored = 0                # bytes held
        self.over_limit = 0            # samples ignored: beyond max_samples

    def put(self, start: int, audio: bytes) -> None:
        """Append ``audio`` at ``start`` (>= ``self.end`` when there are segments), cut at the limit."""
        room = self.max_samples - self.stored
        if len(audio) > room:
            self.over_limit += len(audio) - max(room, 0)
            audio = audio[:max(room, 0)]
        if not audio:
            return
        if self.segments and start == self.end:
            self.segments[-1][1] += audio
        else:
            self.segments.append([start, bytearray(audio)])
        self.end = start + len(audio)
        self.stored += len(audio)

    def truncate(self, at: int) -> int:
        """Forget everything from sample ``at`` on; returns how many samples went."""
        removed = 0
        while self.segments and self.segments[-1][0] + len(self.segments[-1][1]) > at:
            seg_start, data = self.segments[-1]
            keep = max(0, at - seg_start)
            removed += len(data) - keep
            if keep:
                del data[keep:]
                break
            self.segments.pop()
        self.stored -= removed
        self.end = self.segments[-1][0] + len(self.segments[-1][1]) if self.segments else 0
        return removed

    def paint(self, out: np.ndarray, shift: int) -> None:
        """Decode the segments into ``out`` at ``position + shift``, clipped to ``out``."""
        for seg_start, data in self.segments:
            lo = seg_start + shift
            a, b = max(lo, 0), min(lo + len(data), len(out))
            if a < b:
                out[a:b] = ulaw.decode(memoryview(data)[a - lo:b - lo])   # no copy


class CallRecorder:
    def __init__(self, start_ms: int, max_ms: int = DEFAULT_MAX_MS) -> None:
        """``start_ms``: pacing-clock ms taken as caller-audio time 0 until ``anchor`` says better
        (the moment the stream started). ``max_ms``: the most audio kept per channel."""
        if max_ms <= 0:
            raise ValueError(f"max_ms={max_ms} must be positive")
        self.start_ms = start_ms
        self.max_ms = max_ms
        self._offset_ms: int | None = None        # pacing ms of caller-audio time 0, from anchors
        self._caller = _Channel(max_ms * SAMPLES_PER_MS)
        self._ai = _Channel(max_ms * SAMPLES_PER_MS)   # positions: pacing-clock samples since start_ms
        self._caller_dropped = 0                  # samples: duplicates, overlaps, before time 0
        self._ai_cleared = 0                      # samples Twilio discarded on a clear

    # --- per frame (cheap) --------------------------------------------------------------------

    def anchor(self, audio_end_ms: int, now_ms: int) -> None:
        """The caller frame ending at ``audio_end_ms`` (Twilio's clock) arrived at pacing-clock
        ``now_ms``. The smallest offset seen wins (the least delayed frame)."""
        offset_ms = now_ms - audio_end_ms
        if self._offset_ms is None or offset_ms < self._offset_ms:
            self._offset_ms = offset_ms

    def caller(self, audio: bytes, audio_end_ms: int) -> None:
        """Caller audio ending at ``audio_end_ms`` on Twilio's clock (ms since the stream started)."""
        ch = self._caller
        start = audio_end_ms * SAMPLES_PER_MS - len(audio)
        covered = max(ch.end, 0) - start            # before time 0 counts as covered too
        if covered > 0:
            self._caller_dropped += min(covered, len(audio))
            if covered >= len(audio):
                return
            audio, start = audio[covered:], start + covered
        if start >= ch.max_samples:
            ch.over_limit += len(audio)
            return
        ch.put(start, audio[:ch.max_samples - start])
        ch.over_limit += max(0, start + len(audio) - ch.max_samples)

    def played(self, audio: bytes, at_ms: int) -> None:
        """AI audio (whole 20 ms frames, back to back) sent to Twilio at pacing-clock ``at_ms``.
        It plays after whatever was still queued ahead of it."""
        if not audio:
            return
        ch = self._ai
        start = (at_ms - self.start_ms) * SAMPLES_PER_MS
        if ch.segments:
            start = max(start, ch.end)
        ch.put(start, audio)

    def cleared(self, at_ms: int) -> None:
        """A ``clear`` went to Twilio at pacing-clock ``at_ms``: AI audio queued to play after it
        was never heard."""
        self._ai_cleared += self._ai.truncate((at_ms - self.start_ms) * SAMPLES_PER_MS)

    # --- once, at the end ---------------------------------------------------------------------

    @property
    def offset_ms(self) -> int:
        """Pacing-clock ms of caller-audio time 0 (``start_ms`` until anchored)."""
        return self.start_ms if self._offset_ms is None else self._offset_ms

    def frames(self) -> int:
        """Samples per channel in the recording: to the end of the later channel, at most ``max_ms``."""
        ai_end = self._ai.end + self._ai_shift() if self._ai.segments else 0
        return min(max(self._caller.end, ai_end, 0), self.max_ms * SAMPLES_PER_MS)

    def render(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Samples ``lo``..``hi`` of the call (all by default) as int16, shape ``(n, 2)``: caller
        left, AI right, silence (0) where nothing was heard or played."""
        hi = self.frames() if hi is None else min(hi, self.frames())
        left = np.zeros(max(hi - lo, 0), dtype=np.int16)
        right = np.zeros_like(left)
        self._caller.paint(left, -lo)
        self._ai.paint(right, self._ai_shift() - lo)
        return np.column_stack((left, right))

    def _ai_shift(self) -> int:
        """Pacing-clock samples since ``start_ms`` -> caller-time samples."""
        return (self.start_ms - self.offset_ms) * SAMPLES_PER_MS

    def figures(self) -> dict:
        """What was kept and what was not, in ms (no audio, no I/O)."""
        return {
            "caller_ms": self._caller.stored // SAMPLES_PER_MS,
            "ai_ms": self._ai.stored // SAMPLES_PER_MS,
            "caller_dropped_ms": self._caller_dropped // SAMPLES_PER_MS,
            "ai_cleared_ms": self._ai_cleared // SAMPLES_PER_MS,
            "over_limit_ms": (self._caller.over_limit + self._ai.over_limit) // SAMPLES_PER_MS,
            "offset_ms": self.offset_ms,
            "anchored": self._offset_ms is not None,
        }

    def write_wav(self, path: str | os.PathLike) -> dict:
        """Write the stereo 8 kHz 16-bit WAV atomically (creating the folder); returns the
        figures plus ``path``, ``duration_ms``, ``frames`` (per channel) and ``bytes`` (file size)."""
        frames = self.frames()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                with wave.open(f, "wb") as w:           # a file object: wave leaves it open
                    w.setnchannels(2)
                    w.setsampwidth(2)
                    w.setframerate(SAMPLE_RATE_HZ)
                    for lo in range(0, frames, WRITE_BLOCK_FRAMES):    # a minute at a time: peak memory stays small
                        w.writeframes(self.render(lo, lo + WRITE_BLOCK_FRAMES).astype("<i2", copy=False).tobytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return {**self.figures(), "path": str(target), "frames": frames,
                "duration_ms": frames // SAMPLES_PER_MS, "bytes": target.stat().st_size}


# --- files ------------------------------------------------------------------------------------

def recordings_dir(root: str | os.PathLike) -> Path:
    return Path(root) / RECORDINGS_DIR


def recording_path(root: str | os.PathLike, call_sid: str) -> Path:
    """``<root>/recordings/<call_sid>.wav``; the SID must be a plain token (letters and digits)."""
    if not _SID_RE.fullmatch(call_sid or ""):
        raise ValueError(f"call_sid {call_sid!r} is not a plain SID")
    return recordings_dir(root) / f"{call_sid}.wav"


def _is_recording_name(name: str) -> bool:
    """A recording, or the temp file of a write that never finished."""
    return name.endswith(".wav") or (name.startswith(".") and ".wav." in name and name.endswith(".tmp"))


def delete_expired(folder: str | os.PathLike, retention_days: int, now_s: float) -> list[Path]:
    """Remove the recordings in ``folder`` last modified more than ``retention_days`` before
    ``now_s`` (epoch seconds); returns the removed paths, sorted. Only the folder's own regular
    files named like recordings: symlinks, subfolders and other files are left alone. A missing
    folder has nothing to remove."""
    if retention_days <= 0:
        raise ValueError(f"retention_days={retention_days} must be positive")
    cutoff_s = now_s - retention_days * 86400
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not _is_recording_name(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_mtime >= cutoff_s:
                continue
            os.unlink(entry.path)               # a regular file in this folder: unlink cannot follow
        except FileNotFoundError:
            continue                            # gone meanwhile (another worker's sweep)
        removed.append(Path(entry.path))
    return sorted(removed)
