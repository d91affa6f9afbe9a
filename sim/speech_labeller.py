"""Ground-truth speech labels for real recordings: a careful energy + voicing labeller.

``label(pcm)`` returns where someone speaks in an 8 kHz recording (20 ms grid, integer ms), the
pauses between those segments, and the recording's noise level; ``short_sounds(pcm)`` returns
word- or syllable-sized pieces (<= 400 ms) for backchannel cases. Both are pure, deterministic
numpy functions: the same samples always give the same labels. They label *offline* with the whole
recording in view (percentiles, look-ahead, bridging), which a real-time detector cannot do; that
is what makes them usable as a reference for one.

Theory of operation
-------------------
1. **Conditioning.** The signal is converted to float and band-passed with an FFT mask:
   100-3800 Hz for energy and zero crossings (removes DC, rumble and 50/60 Hz hum, which carry
   energy but no speech at telephone bandwidth) and 80-1000 Hz for the voicing analysis (the
   pitch harmonics live there; hiss and fricative noise do not).
2. **Cells.** Decisions are made on 10 ms cells. Each cell's energy is the mean power of a 20 ms
   window centred on it (so it is a 20 ms frame, hopped by 10 ms), in dBFS with 0 dBFS = RMS
   23170 (a full-scale sine), floored at -100 dBFS. The zero-crossing rate (crossings per sample)
   is measured on the same window.
3. **Noise floor.** The 10th percentile of the cell energies (``NOISE_PERCENTILE``): every usable
   recording has at least 10 % of non-speech (breaths, pauses, lead-in), and a low percentile is
   not pulled up by the speech the way a mean is. Cells of digital silence (< -95 dBFS, e.g. a
   zero-padded lead-in) are left out so that they cannot put the floor at -100 dBFS; the floor is
   also kept at least ``MIN_FLOOR_DBFS`` (-75 dBFS) for the same reason. The speech level is the
   95th percentile; their difference is the recording's dynamic range.
4. **Dual threshold with hysteresis.** A segment needs a *seed* and extends in both directions
   while cells stay above the *low* threshold. A seed is a cell above the *high* threshold, or a
   run of >= ``VOICED_SEED_MS`` (80 ms) of voiced cells (step 5) above the low one: that second
   way finds speech in loud steady noise (the jackhammer recording, range ~9 dB) where vowels
   barely clear the high threshold but are clearly periodic.
   ``high = floor + clamp(0.40 * range, 9, 20) dB`` and ``low = floor + clamp(0.18 * range, 4, 9)
   dB``, and never below -62 / -70 dBFS. The high threshold is where vowels of even soft
   speech sit on a 40-50 dB clean recording (20 dB over the floor) while a noisy one (range
   ~20 dB) still gets a usable 9 dB margin; the low threshold catches the soft onsets and decays
   of words (consonant releases, final nasals) which are only a few dB above the floor. The
   absolute minima keep near-digital-silence recordings from labelling faint hiss.
5. **Voicing.** For each cell, the normalised autocorrelation of a 40 ms window (80-1000 Hz
   band, mean removed) is searched over lags of 2.5-14.3 ms, i.e. pitch 70-400 Hz; its peak
   (``r(k) / sqrt(e0 * ek)``, 1.0 = perfectly periodic) at or above ``VOICED_R`` (0.55) on a cell
   above the low threshold marks it voiced. Vowels, nasals and voiced consonants give 0.7-0.99;
   hiss, clicks, knocks, breath and most room noise wander between 0.2 and 0.55 (seen on the
   pictures: the pauses of en_jfk, the knocks of ru_silero). Mains hum is out of the band or
   below the energy thresholds, since it is part of the noise floor.
6. **Unvoiced fricatives** ("s", "sh", "f", "ch"/"h" in Hebrew) are weak at 8 kHz and often
   below the low threshold. A segment is extended through adjacent cells (up to
   ``FRICATIVE_MAX_MS`` = 150 ms either side) whose energy is at least 3 dB over the floor and
   whose zero-crossing rate is at least ``FRICATIVE_ZCR`` (0.30, i.e. a spectrum centred above
   ~1.2 kHz): that keeps "sof" or "yes" whole instead of cutting their fricatives off.
7. **Clean-up.** Segments shorter than ``MIN_SEGMENT_MS`` (80 ms) are dropped unless they hold
   at least 20 ms of voicing (clicks, pops and door knocks are short and unvoiced; a short "mm"
   or "ken" is voiced). Segments are snapped to the 20 ms grid (start down, end up). Gaps
   shorter than ``BRIDGE_MS`` (120 ms) are bridged: that is the length of a stop closure or the
   breath-free junction between words, not a pause a listener hears. Finally a segment is kept
   only if it holds a voiced run of at least ``MIN_VOICED_RUN_MS`` (50 ms: a vowel) and at least
   ``MIN_VOICED_FRACTION`` (25 %) of voiced cells. Knocks with a ringing tail, a crowd starting
   to applaud (end of en_jfk), a cough or tonal background noise give scattered 10-40 ms voiced
   blips and fail both; every word seen on the pictures passed (a short Hebrew syllable gives a
   50-60 ms run). The price: a word cut off by the start of a file may be dropped.

``pauses`` are the gaps between consecutive segments (each >= 120 ms by construction).

``short_sounds`` returns segments of 100-400 ms as they are (a word said by itself), plus for
longer segments their first 250-400 ms, cut at the deepest energy dip in that range when it is
at least ``DIP_DB`` (6 dB) below the preceding part's peak (a syllable or word boundary). A
segment without such a dip gives no short sound.

Checked by hand
---------------
The thresholds were tuned on pictures (waveform, energy with the floor and both thresholds,
voicing and zero-crossing curves, segments) of the shared recordings: en_jfk (segments 0.32-2.14,
3.28-3.72, 3.96-4.32, 5.40-7.58, 8.18-10.42 s: "And so, my fellow Americans | ask | not | what
your country can do for you | ask what you can do for your country", pauses of 1.14, 0.24, 1.08
and 0.60 s), SASPEECH sentences (he_sas_*), he_ivritpy_10s, en_ami_dev00 (meeting: far talkers
at -55 dBFS are labelled too, they are speech), ru_silero (knocks between sentences rejected),
en_rp_jackhammer (speech in noise) and he_ash_test_copy (tonal background after 30 s rejected).
Tests on synthetic voiced bursts: tests/test_real_corpus.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RATE = 8000
FULL_SCALE_RMS = 23170.0
CELL_MS = 10
GRID_MS = 20
CELL = RATE * CELL_MS // 1000            # 80 samples
ENERGY_WIN = 160                         # 20 ms energy window, centred on the cell
VOICING_WIN = 320                        # 40 ms: almost three periods of the lowest pitch (70 Hz)
MIN_LAG = RATE // 400                    # 20 samples: 400 Hz
MAX_LAG = RATE // 70                     # 114 samples: 70 Hz

NOISE_PERCENTILE = 10.0
SPEECH_PERCENTILE = 95.0
DIGITAL_SILENCE_DBFS = -95.0
MIN_FLOOR_DBFS = -75.0
HIGH_FRACTION, HIGH_MIN_DB, HIGH_MAX_DB, HIGH_ABS_DBFS = 0.40, 9.0, 20.0, -62.0
LOW_FRACTION, LOW_MIN_DB, LOW_MAX_DB, LOW_ABS_DBFS = 0.18, 4.0, 9.0, -70.0
VOICED_R = 0.55
FRICATIVE_ZCR = 0.30
FRICATIVE_OVER_FLOOR_DB = 3.0
FRICATIVE_MAX_MS = 150
MIN_SEGMENT_MS = 80
MIN_VOICED_IN_SHORT_MS = 20
MIN_VOICED_MS = 30
MIN_VOICED_RUN_MS = 50
MIN_VOICED_FRACTION = 0.25
VOICED_SEED_MS = 80
BRIDGE_MS = 120

SHORT_MAX_MS = 400
SHORT_MIN_MS = 100
SHORT_CUT_FROM_MS = 250
DIP_DB = 6.0


@dataclass(frozen=True)
class Labels:
    segments: list[tuple[int, int]]
    """Speech (start_ms, end_ms), 20 ms grid, sorted, gaps >= BRIDGE_MS."""
    pauses: list[tuple[int, int]]
    """The gaps between consecutive segments (start_ms, end_ms)."""
    noise_dbfs: float
    """Estimated noise floor (10th percentile of 20 ms energies), dBFS."""
    speech_dbfs: float
    """95th percentile of 20 ms energies, dBFS (the loud part of the speech)."""
    high_dbfs: float
    low_dbfs: float
    duration_ms: int
    energy_db: np.ndarray = field(repr=False)
    """Per 10 ms cell: energy of the 20 ms window centred on it, dBFS (100-3800 Hz)."""
    voicing: np.ndarray = field(repr=False)
    """Per 10 ms cell: normalised autocorrelation peak in the 70-400 Hz pitch range (0..1)."""
    zcr: np.ndarray = field(repr=False)
    """Per 10 ms cell: zero crossings per sample."""

    @property
    def speech_ms(self) -> int:
        return sum(e - s for s, e in self.segments)

    @property
    def voiced(self) -> np.ndarray:
        """Per 10 ms cell: voiced (periodic and above the low threshold)."""
        return (self.voicing >= VOICED_R) & (self.energy_db >= self.low_dbfs)


def _band(x: np.ndarray, lo_hz: float, hi_hz: float) -> np.ndarray:
    n = len(x)
    if n == 0:
        return x.copy()
    nfft = 1 << max(1, int(np.ceil(np.log2(n))))
    spec = np.fft.rfft(x, nfft)
    freqs = np.fft.rfftfreq(nfft, 1.0 / RATE)
    # 20 Hz raised-cosine skirts: no ringing worth the name at these bandwidths
    gain = np.clip((freqs - (lo_hz - 20)) / 40.0, 0.0, 1.0) * np.clip(((hi_hz + 20) - freqs) / 40.0, 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spec * gain, nfft)[:n]


def _windows(x: np.ndarray, n_cells: int, width: int) -> np.ndarray:
    """(n_cells, width) windows centred on each 10 ms cell (zero padded at the edges)."""
    pad = (width - CELL) // 2
    padded = np.concatenate([np.zeros(pad), x, np.zeros(width)])
    return np.lib.stride_tricks.sliding_window_view(padded, width)[::CELL][:n_cells]


def _voicing(x: np.ndarray, n_cells: int) -> np.ndarray:
    nfft = 512                                    # >= VOICING_WIN + MAX_LAG: linear, not circular
    lags = np.arange(MIN_LAG, MAX_LAG + 1)
    out = np.zeros(n_cells)
    win = _windows(x, n_cells, VOICING_WIN)
    for start in range(0, n_cells, 4096):
        w = win[start:start + 4096]
        w = w - w.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(w, nfft, axis=1)
        r = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, lags]
        sq = np.cumsum(w * w, axis=1)
        total = sq[:, -1:]
        e_head = sq[:, VOICING_WIN - 1 - lags]             # sum of x[n]^2, n < N - k
        e_tail = total - sq[:, lags - 1]                   # sum of x[n]^2, n >= k
        denom = np.sqrt(np.maximum(e_head * e_tail, 1e-9))
        out[start:start + len(w)] = np.clip((r / denom).max(axis=1), 0.0, 1.0)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last + 1)] of the True runs of a boolean array."""
    if len(mask) == 0:
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def label(pcm: np.ndarray, *, bridge_ms: int = BRIDGE_MS, min_segment_ms: int = MIN_SEGMENT_MS,
          voiced_r: float = VOICED_R) -> Labels:
    """Speech segments, pauses and noise level of an 8 kHz mono recording (int16 or float PCM)."""
    x = np.asarray(pcm, dtype=np.float64).ravel()
    n_cells = len(x) // CELL
    duration_ms = n_cells * CELL_MS
    if n_cells == 0:
        empty = np.zeros(0)
        return Labels([], [], -100.0, -100.0, -100.0, -100.0, 0, empty, empty, empty)
    x = x[: n_cells * CELL]
    speech_band = _band(x, 100.0, 3800.0)
    pitch_band = _band(x, 80.0, 1000.0)

    frames = _windows(speech_band, n_cells, ENERGY_WIN)
    power = (frames * frames).mean(axis=1)
    energy_db = 10 * np.log10(np.maximum(power, 1e-10 * FULL_SCALE_RMS ** 2) / FULL_SCALE_RMS ** 2)
    signs = np.signbit(frames)
    zcr = (signs[:, 1:] != signs[:, :-1]).mean(axis=1)
    voicing = _voicing(pitch_band, n_cells)

    live = energy_db[energy_db > DIGITAL_SILENCE_DBFS]
    if len(live) == 0:
        return Labels([], [], -100.0, -100.0, -100.0, -100.0, duration_ms, energy_db, voicing, zcr)
    floor = max(float(np.percentile(live, NOISE_PERCENTILE)), MIN_FLOOR_DBFS)
    speech = float(np.percentile(live, SPEECH_PERCENTILE))
    span = max(0.0, speech - floor)
    high = max(floor + float(np.clip(HIGH_FRACTION * span, HIGH_MIN_DB, HIGH_MAX_DB)), HIGH_ABS_DBFS)
    low = max(floor + float(np.clip(LOW_FRACTION * span, LOW_MIN_DB, LOW_MAX_DB)), LOW_ABS_DBFS)
    low = min(low, high)

    above_low = energy_db >= low
    voiced = (voicing >= voiced_r) & above_low
    seed_cells = VOICED_SEED_MS // CELL_MS
    seeds = above_low & (energy_db >= high)
    for a, b in _runs(voiced):
        if b - a >= seed_cells:
            seeds[a:b] = True
    regions = [(a, b) for a, b in _runs(above_low) if seeds[a:b].any()]

    # unvoiced fricatives next to a region: weak but hissy cells
    hiss = (energy_db >= floor + FRICATIVE_OVER_FLOOR_DB) & (zcr >= FRICATIVE_ZCR)
    max_ext = FRICATIVE_MAX_MS // CELL_MS
    extended = []
    for a, b in regions:
        k = 0
        while k < max_ext and a - 1 >= 0 and hiss[a - 1]:
            a -= 1
            k += 1
        k = 0
        while k < max_ext and b < n_cells and hiss[b]:
            b += 1
            k += 1
        extended.append((a, b))

    min_cells = min_segment_ms // CELL_MS
    kept = [(a, b) for a, b in extended
            if b - a >= min_cells or voiced[a:b].sum() * CELL_MS >= MIN_VOICED_IN_SHORT_MS]

    # 20 ms grid, then merge overlaps and bridge short gaps
    snapped = [((a * CELL_MS) // GRID_MS * GRID_MS, -(-(b * CELL_MS) // GRID_MS) * GRID_MS) for a, b in kept]
    merged: list[list[int]] = []
    for s, e in snapped:
        if merged and s - merged[-1][1] < bridge_ms:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    segments = []
    for s, e in merged:
        e = min(e, duration_ms // GRID_MS * GRID_MS if duration_ms >= GRID_MS else duration_ms)
        if e <= s:
            continue
        v = voiced[s // CELL_MS: e // CELL_MS]
        longest = max((b - a for a, b in _runs(v)), default=0) * CELL_MS
        if longest >= MIN_VOICED_RUN_MS and v.mean() >= MIN_VOICED_FRACTION:
            segments.append((int(s), int(e)))
    pauses = [(segments[i][1], segments[i + 1][0]) for i in range(len(segments) - 1)]
    return Labels(segments, pauses, round(floor, 1), round(speech, 1), round(high, 1), round(low, 1),
                  duration_ms, energy_db, voicing, zcr)


def short_sounds(pcm: np.ndarray | None = None, labels: Labels | None = None, *,
                 max_ms: int = SHORT_MAX_MS, min_ms: int = SHORT_MIN_MS) -> list[tuple[int, int]]:
    """Word- or syllable-sized sounds (min_ms..max_ms) of a recording, sorted by start.

    A segment that is short by itself is returned whole; from a longer one, its first
    SHORT_CUT_FROM_MS..max_ms, cut at the deepest energy dip there when that dip is at least
    DIP_DB below the peak of the part before it. Pass ``labels`` to reuse a labelling.
    """
    if labels is None:
        if pcm is None:
            raise ValueError("short_sounds needs pcm or labels")
        labels = label(pcm)
    out = []
    smooth = np.convolve(labels.energy_db, np.ones(3) / 3, mode="same")   # 30 ms: no single-cell dips
    voiced = labels.voiced
    for s, e in labels.segments:
        if e - s <= max_ms:
            if e - s >= min_ms:
                out.append((s, e))
            continue
        lo = (s + SHORT_CUT_FROM_MS) // CELL_MS
        hi = min((s + max_ms) // CELL_MS, len(smooth) - 1)
        if hi <= lo:
            continue
        cut = lo + int(np.argmin(smooth[lo:hi + 1]))
        before_peak = float(smooth[s // CELL_MS:lo].max())
        if before_peak - smooth[cut] < DIP_DB:
            continue
        end = (cut * CELL_MS) // GRID_MS * GRID_MS
        if end - s >= min_ms and voiced[s // CELL_MS:end // CELL_MS].sum() * CELL_MS >= MIN_VOICED_MS:
            out.append((s, end))
    return out
