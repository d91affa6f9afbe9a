"""Real human speech for the simulated caller and the benchmark: the recordings of
``../shared/real-speech`` (or ``$REAL_SPEECH_DIR``), labelled at run time, and babble of several of
their voices.

The recordings live outside the repository (``audio/*.wav``: 8 kHz mono 16-bit, Hebrew ``he_*``
first, some ``en_``/``de_``/``es_``/``ru_``); their licences vary, so nothing cut from them is ever
written into the repository. ``load_sources`` reads and labels them (``sim.speech_labeller``);
each recording (its first ``MAX_SOURCE_S`` seconds) is freed of DC offset and drift (high-pass at
10-30 Hz: several files sit on a wandering offset), then scaled so that its speech (the labelled
segments) has an active level of ``SPEECH_DBFS`` (-22 dBFS; less if that would push a peak over 0.9
of full scale). Levels of recordings are arbitrary (-43 to -7 dBFS); soft and loud callers are the
job of the line presets. ``usable_segments`` and ``short_sound_segments`` pick whole, loud, mostly
voiced utterances and word-sized sounds; ``babble`` mixes several speakers. The simulated caller
(``sim.real_voices``) and the benchmark (``bench.real_corpus``, ``bench.noisy_calls``) both read
them here.
"""
from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from sim import speech_labeller
from sim.line_model import FULL_SCALE_RMS
from sim.speech_labeller import Labels

RATE = 8000
SPR = RATE // 1000                  # samples per ms
MAX_SOURCE_S = 60                   # only the start of long recordings is read
SPEECH_DBFS = -22.0                 # active speech level after normalisation
PEAK_LIMIT = 0.9 * 32767
BABBLE_DBFS = -26.0
EDGE_MS = 100                       # segments this close to the file's start or end may be cut off
XFADE_MS = 10
LOUD_WITHIN_DB = 10.0               # a usable segment peaks within this of the file's speech level
MIN_VOICED_FRACTION = 0.4
REAL_SPEECH_ENV = "REAL_SPEECH_DIR"

LANG_ORDER = ("he", "en", "de", "es", "ru")
NOT_A_CALLER = ("en_ami_", "en_voxconverse", "en_pyannote", "en_rp_jackhammer", "he_ash_test_copy")
"""Meetings, far-field multi-speaker audio, speech drowned in noise (jackhammer) or over loud
tonal background sound (he_ash_test_copy): not one caller talking in a room."""
SPEAKER_GROUPS = (("he_sas_", "he_sas"), ("he_shmuelof_", "he_shmuelof"), ("he_ivritpy_", "he_ivritpy"),
                  ("he_ash_", "he_ash"), ("ru_silero", "ru_silero"), ("en_ami_", "en_ami"))
"""Files known (or, to be safe, assumed) to share a speaker: SASPEECH is one speaker."""



# --------------------------------------------------------------------------- locating the audio

def _wav_files(directory: Path) -> list[Path]:
    audio = directory / "audio"
    files = sorted(audio.glob("*.wav")) if audio.is_dir() else []
    return files or sorted(directory.glob("*.wav"))


def real_speech_dir(explicit: str | None = None) -> Path | None:
    """The real-speech directory: ``explicit``, else $REAL_SPEECH_DIR, else ``<repo>/../shared/real-speech``.

    It must hold ``audio/*.wav`` (or ``*.wav`` directly); None when it does not (not run).
    """
    if explicit:
        candidate = Path(explicit)
    elif os.environ.get(REAL_SPEECH_ENV):
        candidate = Path(os.environ[REAL_SPEECH_ENV])
    else:
        candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "real-speech"
    candidate = candidate.expanduser()
    if candidate.is_dir() and _wav_files(candidate):
        return candidate.resolve()
    return None


def speaker_of(stem: str) -> str:
    for prefix, group in SPEAKER_GROUPS:
        if stem.startswith(prefix):
            return group
    return stem


def language_of(stem: str) -> str:
    return stem.split("_", 1)[0]


# --------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Source:
    stem: str
    speaker: str
    language: str
    pcm: np.ndarray                 # float, scaled to SPEECH_DBFS active level (read-only)
    labels: Labels                  # of the raw recording
    gain_db: float

    @property
    def duration_ms(self) -> int:
        return self.labels.duration_ms


def _read_wav(path: Path) -> np.ndarray | None:
    try:
        with wave.open(str(path), "rb") as w:
            if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
                return None
            n = min(w.getnframes(), MAX_SOURCE_S * RATE)
            return np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float64)
    except (OSError, wave.Error, EOFError):
        return None


def _dc_block(x: np.ndarray) -> np.ndarray:
    """Remove DC offset and drift: FFT high-pass, 0 below 10 Hz, 1 above 30 Hz (raised cosine).

    Several recordings sit on an offset (up to 2 % of full scale after normalisation) that
    differs between their pauses; stitched room tone would otherwise step. A telephone path is
    AC-coupled anyway, and speech has nothing below 30 Hz.
    """
    n = len(x)
    nfft = 1 << int(np.ceil(np.log2(max(n, 2))))
    spec = np.fft.rfft(x - x.mean(), nfft)
    freqs = np.fft.rfftfreq(nfft, 1.0 / RATE)
    gain = 0.5 - 0.5 * np.cos(np.pi * np.clip((freqs - 10.0) / 20.0, 0.0, 1.0))
    return np.fft.irfft(spec * gain, nfft)[:n]


@lru_cache(maxsize=128)
def _load(path_str: str, _mtime_ns: int, _size: int) -> Source | None:
    raw = _read_wav(Path(path_str))
    if raw is None or len(raw) < RATE // 2:
        return None
    labels = speech_labeller.label(raw)
    if not labels.segments:
        return None
    raw = _dc_block(raw)
    speech = np.concatenate([raw[s * SPR:e * SPR] for s, e in labels.segments])
    active = 10 * np.log10(max(float((speech ** 2).mean()), 1e-6) / FULL_SCALE_RMS ** 2)
    gain = 10 ** ((SPEECH_DBFS - active) / 20)
    peak = float(np.abs(raw).max())
    if peak * gain > PEAK_LIMIT:
        gain = PEAK_LIMIT / peak
    pcm = raw * gain
    pcm.flags.writeable = False
    stem = Path(path_str).stem
    return Source(stem, speaker_of(stem), language_of(stem), pcm, labels, round(20 * np.log10(gain), 2))


def load_sources(directory: Path) -> list[Source]:
    """Every readable 8 kHz recording of ``directory``, labelled and level-normalised, by file name."""
    out = []
    for path in _wav_files(Path(directory)):
        st = path.stat()
        src = _load(str(path.resolve()), st.st_mtime_ns, st.st_size)
        if src is not None:
            out.append(src)
    return out


def _lang_rank(lang: str) -> int:
    return LANG_ORDER.index(lang) if lang in LANG_ORDER else len(LANG_ORDER)


def _by_speaker(sources: Iterable[Source], callers_only: bool = True) -> dict[str, list[Source]]:
    groups: dict[str, list[Source]] = {}
    for src in sources:
        if callers_only and src.stem.startswith(NOT_A_CALLER):
            continue
        groups.setdefault(src.speaker, []).append(src)
    return dict(sorted(groups.items(), key=lambda kv: (_lang_rank(kv[1][0].language), kv[0])))


# --------------------------------------------------------------------------- picking speech

def _good(src: Source, s: int, e: int) -> bool:
    """Whole (not cut by the file's edges), loud (not a distant talker) and mostly voiced."""
    lab = src.labels
    if s < EDGE_MS or e > lab.duration_ms - EDGE_MS:
        return False
    cell = speech_labeller.CELL_MS
    around = np.concatenate([lab.energy_db[(s - EDGE_MS) // cell:s // cell], lab.energy_db[e // cell:(e + EDGE_MS) // cell]])
    if (around <= speech_labeller.DIGITAL_SILENCE_DBFS).any():
        return False                                # next to digital silence: an edited start or end
    cells = slice(s // cell, e // cell)
    if lab.energy_db[cells].max() < lab.speech_dbfs - LOUD_WITHIN_DB:
        return False
    return float(lab.voiced[cells].mean()) >= MIN_VOICED_FRACTION


def usable_segments(src: Source, min_ms: int, max_ms: int) -> list[tuple[int, int]]:
    return [(s, e) for s, e in src.labels.segments if min_ms <= e - s <= max_ms and _good(src, s, e)]


def _pairs(src: Source, min_ms: int = 400, max_ms: int = 2500, max_total_ms: int = 4000):
    segs = src.labels.segments
    return [(a, b) for a, b in zip(segs, segs[1:])
            if all(min_ms <= e - s <= max_ms and _good(src, s, e) for s, e in (a, b))
            and (a[1] - a[0]) + (b[1] - b[0]) <= max_total_ms]


def short_sound_segments(src: Source, min_ms: int = 150, max_ms: int = 400) -> list[tuple[int, int]]:
    whole = set(src.labels.segments)
    found = [(s, e) for s, e in speech_labeller.short_sounds(labels=src.labels, max_ms=max_ms)
             if e - s >= min_ms and _good(src, s, e)]
    return sorted(found, key=lambda se: (se not in whole, se))    # words said by themselves first


def _candidates(group: list[Source], pick) -> list[tuple[Source, object]]:
    return [(src, item) for src in group for item in pick(src)]


def _choose(rng: np.random.Generator, items: list, k: int = 1) -> list:
    if not items:
        return []
    order = rng.permutation(len(items))
    return [items[i] for i in order[:k]]


# --------------------------------------------------------------------------- assembling tracks

def _ramp(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _stitch(pieces: list[np.ndarray], n: int) -> np.ndarray:
    """Concatenate (looping if needed) to n samples with raised-cosine crossfades."""
    xf = XFADE_MS * SPR
    pieces = [p for p in pieces if len(p) > 2 * xf]
    out = np.zeros(n)
    if not pieces:
        return out
    pos, i = 0, 0
    ramp = _ramp(xf)
    while pos < n:
        p = pieces[i % len(pieces)].astype(np.float64).copy()
        if pos > 0:
            p[:xf] *= ramp
            out[pos - xf:pos] *= 1.0 - ramp
            start = pos - xf
        else:
            start = 0
        take = min(len(p), n - start)
        out[start:start + take] += p[:take]
        pos = start + take
        i += 1
    return out


# --------------------------------------------------------------------------- babble

def babble(directory: Path, seconds: float, seed: int, *, exclude: Iterable[str] = (),
           voices: int | None = None) -> np.ndarray:
    """``voices`` (default: 4-6, drawn) real voices talking at once, ``seconds`` long, RMS ``BABBLE_DBFS`` (-26 dBFS).

    Each speaker's loud labelled segments are concatenated without pauses (10 ms crossfades,
    looped to length) from a random segment and a random offset up to 2 s into it, normalised to
    the same RMS, and summed; the sum is normalised. ``exclude``: speaker ids (``speaker_of``) to leave out, e.g. the
    caller's own voice.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    excluded = set(exclude)
    pool = []
    for speaker, group in _by_speaker(load_sources(Path(directory))).items():
        if speaker in excluded:
            continue
        segs = [src.pcm[s * SPR:e * SPR] for src in group for s, e in src.labels.segments if _good(src, s, e)]
        if sum(len(x) for x in segs) >= 4 * RATE:
            pool.append(segs)
    if not pool:
        raise ValueError(f"no speakers with enough speech for babble in {directory}")
    count = min(len(pool), int(rng.integers(4, 7)) if voices is None else voices)
    mix = np.zeros(n)
    for idx in sorted(rng.choice(len(pool), size=count, replace=False)):
        segs = pool[idx]
        first = int(rng.integers(len(segs)))
        offset = int(rng.integers(2 * RATE))
        voice = _stitch(segs[first:] + segs[:first], n + offset)[offset:]
        mix += voice / (np.sqrt((voice ** 2).mean()) + 1e-9)
    return mix / (np.sqrt((mix ** 2).mean()) + 1e-9) * FULL_SCALE_RMS * 10 ** (BABBLE_DBFS / 20)
