"""Is this inbound frame the echo of what we played, or the caller talking over it?

Theory of operation. The server knows exactly what it played and when (the TX loop reports every
AI frame with its play time). Frame energies are kept per 20 ms slot of the clock for both the
played reference and the inbound audio. Every few frames, while the reference is active, the
echo path is estimated from the last ``window`` slots:

* lag: the shift (0..``max_lag_ms``) maximising the correlation of the log-energy envelopes;
  trusted only above ``min_corr``, and only if the line is ``_MIN_CONTRAST_DB`` louder while the
  lagged reference is loud than while it pauses, over the whole history (``_contrast_db``): other
  voices on the line (a café) rise and fall like speech and, among 26 lags and overlapping
  windows, correlate with the AI by chance; an echo is *caused* by the reference and follows it;
* gain: the median ratio inbound/reference at that lag over frames where the reference is loud
  (the echo return), smoothed in dB; a line with no echo learns a very low gain, and a busy line
  whose sound follows the reference at no lag learns its median level as the bound of any echo.

Per frame the echo expected now is ``gain x reference`` at the learnt lag (+-1 slot), or, before a
lag is trusted, the loudest reference in the whole lag range at the learnt gain (0 dB until
learnt: conservative, an echo is never mistaken for the caller). The frame is *near-end* speech
when it is louder than that prediction by ``margin_db``. Energy envelopes, not samples: phone
lines are nonlinear enough that sample correlation is fragile, and envelopes cost a few µs.
"""
from __future__ import annotations

import math
from collections import deque
from itertools import islice
from dataclasses import dataclass

import numpy as np

SLOT_MS = 20
_HISTORY_SLOTS = 128           # 2.56 s of both envelopes
_LOG_FLOOR = 1e4               # energy (int16 RMS^2) below which envelopes are flat: line noise
_REF_ACTIVE = 1e4              # reference energy that counts as "AI audio playing" (RMS 100)
_MIN_ENVELOPE_STD = 0.1       # log10 units: an inbound envelope flatter than this is line noise
_MAX_ECHO_GAIN_DB = 0.0       # an echo is never louder than the audio it echoes
_QUIET_LINE_DB = -20           # a line this far below the AI while it talks, with no echo correlation: its
                               # level is an upper bound of any echo (louder echoes correlate and are learnt)
_REF_QUIET = _REF_ACTIVE / 10  # reference energy of a pause in the AI's speech (RMS 32)
_MIN_CONTRAST_DB = 6.0         # an echo path makes the line this much louder while the AI talks than in its pauses
_NO_CONTRAST_DB = 3.0          # at no lag louder than this: the line's sound does not follow the AI
_MIN_CONTRAST_SLOTS = 8


@dataclass(frozen=True)
class EchoVerdict:
    reference_active: bool
    """AI audio was played within the lag range: an echo is possible now."""
    near_end: bool
    """Louder than any echo of the reference can explain: the caller is talking."""
    predicted_echo_energy: float
    lag_ms: int | None
    gain_db: float | None


class _SlotSeries:
    """Energies per 20 ms slot of the clock over the last ``size`` slots; missing slots are 0.
    Plain deque and Python max: per frame this is a few µs, numpy's per-call overhead is more."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: deque[float] = deque([0.0] * size, maxlen=size)
        self.last_slot: int | None = None

    def record(self, slot: int, energy: float) -> None:
        if self.last_slot is None:
            self.last_slot = slot
        if slot > self.last_slot:
            self.values.extend([0.0] * min(slot - self.last_slot, self.size))
            self.last_slot = slot
        offset = slot - self.last_slot - 1                 # -1 is the newest slot
        if offset >= -self.size:
            self.values[offset] = max(self.values[offset], energy)

    def window(self, first: int, last: int) -> list[float]:
        """Energies of slots first..last inclusive (0 outside the history)."""
        n = last - first + 1
        if self.last_slot is None:
            return [0.0] * n
        lo = self.size - 1 - (self.last_slot - first)      # position of ``first`` in the deque
        hi = self.size - 1 - (self.last_slot - last)
        a, b = max(lo, 0), min(hi, self.size - 1)
        mid = list(islice(self.values, a, b + 1)) if a <= b else []
        before = min(n, max(0, -lo))
        return [0.0] * before + mid + [0.0] * (n - before - len(mid))


class EchoDetector:
    def __init__(self, max_lag_ms: int = 500, window_ms: int = 600, margin_db: int = 5,
                 min_corr_pct: int = 70, update_every_frames: int = 5, tracking_every_frames: int = 25) -> None:
        """The path is re-estimated every ``update_every_frames`` while it is being learnt, then every
        ``tracking_every_frames`` (a line's echo path drifts slowly; the estimate is the costly part)."""
        self.max_lag = max_lag_ms // SLOT_MS
        self.window = window_ms // SLOT_MS
        self.margin = 10 ** (margin_db / 10.0)
        self.min_corr = min_corr_pct / 100.0
        self.update_every = update_every_frames
        self.tracking_every = tracking_every_frames
        self._ref = _SlotSeries(_HISTORY_SLOTS)
        self._inb = _SlotSeries(_HISTORY_SLOTS)
        self.lag: int | None = None
        self.gain_db: float | None = None
        self._from_path = False
        self._candidate: tuple[int, float] | None = None
        self._frames = 0
        self._learn_after_ms = 0
        self._last_loud_ref_slot: int | None = None    # newest reference slot loud enough to echo

    # --- inputs -----------------------------------------------------------------------------

    def hold_learning(self, now_ms: int) -> None:
        """The caller made a sound over the AI (double talk): windows holding it would teach a wrong
        path, so nothing is learnt until they have passed."""
        self._learn_after_ms = max(self._learn_after_ms, now_ms + self.window * SLOT_MS)
        self._candidate = None

    def on_reference(self, now_ms: int, energy: float) -> None:
        slot = now_ms // SLOT_MS
        self._ref.record(slot, energy)
        if energy >= _REF_ACTIVE and (self._last_loud_ref_slot is None or slot > self._last_loud_ref_slot):
            self._last_loud_ref_slot = slot

    def on_inbound(self, now_ms: int, energy: float) -> EchoVerdict:
        slot = now_ms // SLOT_MS
        self._inb.record(slot, energy)
        self._frames += 1
        if self._last_loud_ref_slot is None or self._last_loud_ref_slot < slot - self.max_lag - 1:
            # nothing loud was played within the lag range (most of a call): no echo is possible,
            # exactly what the window below would find, without building it
            return EchoVerdict(False, True, 0.0, self._lag_ms(), self.gain_db)
        ref_recent_max = max(self._ref.window(slot - self.max_lag - 1, slot))
        active = ref_recent_max >= _REF_ACTIVE
        every = self.tracking_every if self._from_path else self.update_every
        if active and self._frames % every == 0 and now_ms >= self._learn_after_ms:
            self._estimate(slot)
        if not active:
            return EchoVerdict(False, True, 0.0, self._lag_ms(), self.gain_db)
        gain = 10 ** ((self.gain_db if self.gain_db is not None else 0.0) / 10.0)
        if self.lag is not None:
            # +-2 slots: playout jitter moves the echo by a frame or two either way
            predicted = gain * max(self._ref.window(slot - self.lag - 2, slot - self.lag + 2))
        else:
            predicted = gain * ref_recent_max
        return EchoVerdict(True, energy > predicted * self.margin, predicted, self._lag_ms(), self.gain_db)

    # --- estimation -------------------------------------------------------------------------

    def _lag_ms(self) -> int | None:
        return None if self.lag is None else self.lag * SLOT_MS

    def _estimate(self, slot: int) -> None:
        n, lags = self.window, self.max_lag
        inb = np.array(self._inb.window(slot - n + 1, slot))
        ref = np.array(self._ref.window(slot - n + 1 - lags, slot))
        inb_log = np.log10(inb + _LOG_FLOOR)
        inb_c = inb_log - inb_log.mean()
        if float(inb_c.std()) < _MIN_ENVELOPE_STD:
            best_lag, best_corr = 0, -1.0            # a flat inbound (line noise) correlates with nothing
        else:
            # reversed, row i of the sliding view is the reference delayed by i slots (lag i)
            windows = np.lib.stride_tricks.sliding_window_view(np.log10(ref + _LOG_FLOOR), n)[::-1]
            centred = windows - windows.mean(axis=1, keepdims=True)
            denom = np.sqrt((centred * centred).sum(axis=1) * float(inb_c @ inb_c))
            corr = np.divide(centred @ inb_c, denom, out=np.zeros(len(denom)), where=denom > 0)
            best_lag = int(np.argmax(corr))
            best_corr = float(corr[best_lag])
        if not self._from_path and (ref[:n] >= _REF_ACTIVE).sum() < n // 3:
            return          # the AI has not played for the whole lag range yet: a long echo may not be back
        if best_corr >= self.min_corr:
            seg = ref[lags - best_lag: lags - best_lag + n]
            loud = seg >= _REF_ACTIVE
            if loud.sum() < n // 3:
                return                               # too little AI audio in the window to learn from
            # 80th percentile, not the median: over-estimating the echo only makes barge-in a little
            # harder, under-estimating it lets the AI interrupt itself
            ratio_db = 10 * math.log10(float(np.percentile(inb[loud] / seg[loud], 80)) + 1e-12)
            if ratio_db > _MAX_ECHO_GAIN_DB:
                return                               # louder than what we played: the caller, not an echo
            if self._from_path and ratio_db > self.gain_db + 6:
                return                               # double talk: the caller speaks, freeze the path
            if not self._from_path or abs(best_lag - self.lag) > 2:
                # trust a first path, or a jump of the lag, only when two consecutive estimates agree
                # (a window the echo only partly covers, or a gap in the AI's speech, gives a wrong lag)
                previous, self._candidate = self._candidate, (best_lag, ratio_db)
                if previous is None or abs(previous[0] - best_lag) > 1 or abs(previous[1] - ratio_db) > 3:
                    return
                ratio_db = max(ratio_db, previous[1])
            contrast = self._contrast_db(slot)
            if contrast is None or contrast[best_lag] < _MIN_CONTRAST_DB:
                return          # the line does not get louder when the AI talks: a chance correlation
            if self._from_path and abs(best_lag - self.lag) > 2:
                self.gain_db = max(self.gain_db, ratio_db)         # a moved path: never trust a lower gain
            self._candidate = None
            self.lag = best_lag
            self.gain_db = ratio_db if not self._from_path else 0.7 * self.gain_db + 0.3 * ratio_db
            self._from_path = True
            return
        if self._from_path:
            return                                   # a low-correlation window (pauses, double talk) teaches nothing
        # No echo path: learn a "quiet line" only when the AI has been playing for the whole lag
        # range (so any echo within max_lag must have arrived) and the line stayed near silent.
        oldest, newest = ref[:n], ref[lags:lags + n]
        if (oldest >= _REF_ACTIVE).sum() < n // 3 or (newest >= _REF_ACTIVE).sum() < n // 3:
            return
        loud_ref = float(np.median(ref[ref >= _REF_ACTIVE]))
        ratio_db = 10 * math.log10(float(np.percentile(inb, 90)) / loud_ref + 1e-12)
        if ratio_db <= _QUIET_LINE_DB:
            self.gain_db = ratio_db
            return
        if self._frames % self.tracking_every:
            return                                   # the bound below is costly and moves slowly
        contrast = self._contrast_db(slot)
        if contrast is not None and float(contrast.max()) < _NO_CONTRAST_DB:
            # A busy line (a cafe, a street) whose sound does not follow the AI at any lag: an echo
            # as loud as that sound's median would make it follow by 3 dB, so the median bounds the
            # echo. The bound only ever comes down (the caller talking over the AI raises the median).
            bound_db = 10 * math.log10(float(np.median(inb)) / loud_ref + 1e-12)
            self.gain_db = min(bound_db, _MAX_ECHO_GAIN_DB, self.gain_db if self.gain_db is not None else 0.0)

    def _contrast_db(self, slot: int) -> np.ndarray | None:
        """Per lag (0..max_lag): mean inbound level (dB) while the lagged reference was loud, less
        the mean while it was in a pause, over the whole history; None without enough of both."""
        span = _HISTORY_SLOTS - self.max_lag - 1
        inb = np.array(self._inb.window(slot - span + 1, slot))
        ref = np.array(self._ref.window(slot - span + 1 - self.max_lag, slot))
        views = np.lib.stride_tricks.sliding_window_view(ref, span)[::-1]      # row i: lag i
        valid = inb > 0
        loud = (views >= _REF_ACTIVE) & valid
        quiet = (views < _REF_QUIET) & valid
        n_loud, n_quiet = loud.sum(axis=1), quiet.sum(axis=1)
        if n_loud.min() < _MIN_CONTRAST_SLOTS or n_quiet.min() < _MIN_CONTRAST_SLOTS:
            return None
        level = 10 * np.log10(inb + 1.0)
        return (loud @ level) / n_loud - (quiet @ level) / n_quiet
