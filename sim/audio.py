"""Audio for the simulators: the committed clip library, noise, mixing, echo, matching.

All audio is 8 kHz µ-law bytes at the edges and int16 numpy arrays inside.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from sim.line_model import ulaw_decode, ulaw_encode

FRAME_BYTES = 160          # 20 ms of 8 kHz µ-law
FRAME_MS = 20
SILENCE_BYTE = 0xFF        # µ-law "positive zero"

CLIPS_DIR = Path(__file__).resolve().parent / "clips"
VOICED_RMS = 300.0          # a 20 ms frame louder than this counts as speech in the ground truth


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    audio: bytes            # µ-law

    @property
    def duration_ms(self) -> int:
        return len(self.audio) // 8

    @property
    def speech_span_ms(self) -> tuple[int, int]:
        """(first voiced ms, end of last voiced frame ms) inside the clip."""
        env = envelope(self.audio)
        voiced = np.nonzero(env > VOICED_RMS)[0]
        if len(voiced) == 0:
            return (0, 0)
        return (int(voiced[0]) * 20, int(voiced[-1] + 1) * 20)


@lru_cache(maxsize=1)
def library() -> dict[str, Clip]:
    index = json.loads((CLIPS_DIR / "clips.json").read_text(encoding="utf-8"))
    return {name: Clip(name, meta["text"], (CLIPS_DIR / f"{name}.ulaw").read_bytes())
            for name, meta in index.items()}


def clip(name: str) -> Clip:
    lib = library()
    if name not in lib:
        raise KeyError(f"unknown clip {name!r}; known: {', '.join(sorted(lib))}")
    return lib[name]


def frames(audio: bytes) -> list[bytes]:
    """Split into 160-byte frames, padding the last with µ-law silence."""
    padded = bytes(audio) + bytes([SILENCE_BYTE]) * (-len(audio) % FRAME_BYTES)
    return [padded[i:i + FRAME_BYTES] for i in range(0, len(padded), FRAME_BYTES)]


def envelope(audio: bytes) -> np.ndarray:
    """RMS per 20 ms frame."""
    n = len(audio) // FRAME_BYTES
    if n == 0:
        return np.zeros(0)
    pcm = ulaw_decode(audio[: n * FRAME_BYTES]).astype(np.float64).reshape(n, FRAME_BYTES)
    return np.sqrt((pcm ** 2).mean(axis=1))


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20.0))


def noise_frame(rng: np.random.Generator, level_dbfs: float) -> np.ndarray:
    """20 ms of white noise at ``level_dbfs`` RMS (0 dBFS = full-scale sine RMS ~ 23170)."""
    rms = 23170.0 * db_to_gain(level_dbfs)
    return rng.normal(0.0, rms, FRAME_BYTES)


def espeak_babble(seconds: float, seed: int, voices: int = 6) -> np.ndarray:
    """Babble from the committed espeak clips: ``voices`` clips of different speakers (voice
    settings) where the library has them, each cut to its speech, looped from its own seeded
    offset, brought to the same RMS, mixed, and smeared by a room's reverberation (the other tables
    are far-field voices). Float PCM (int16 scale), ``seconds`` long; the source of the line model's
    ``babble`` noise (which loops it and sets its level)."""
    rng = np.random.default_rng(seed)
    meta = json.loads((CLIPS_DIR / "clips.json").read_text(encoding="utf-8"))
    names = [str(n) for n in rng.permutation(sorted(library()))]
    chosen, speakers = [], set()
    for name in names:                        # different speakers first, then anything else
        if meta[name]["voice"] not in speakers:
            chosen.append(name)
            speakers.add(meta[name]["voice"])
    chosen = (chosen + [n for n in names if n not in chosen])[:voices]
    n = int(seconds * 8000)
    mix = np.zeros(n)
    for name in chosen:
        c = library()[name]
        start, end = c.speech_span_ms
        speech = ulaw_decode(c.audio[start * 8:end * 8]).astype(np.float64)
        voice = np.resize(np.roll(speech, -int(rng.integers(0, len(speech)))), n)
        mix += voice / max(np.sqrt(np.mean(voice ** 2)), 1.0)
    # far-field: the other tables are metres away in a hard room, so their voices reach the phone
    # smeared by ~0.4 s of reverberation (an exponentially decaying noise tail, seeded)
    tail = rng.normal(0.0, 1.0, int(0.4 * 8000)) * np.exp(-np.arange(int(0.4 * 8000)) / (0.08 * 8000))
    tail[0] = 1.0
    mix = np.fft.irfft(np.fft.rfft(mix, 2 * n) * np.fft.rfft(tail, 2 * n), 2 * n)[:n]
    return mix * 3000.0 / max(np.sqrt(np.mean(mix ** 2)), 1e-9)


def mix_to_ulaw(*parts: np.ndarray | None) -> bytes:
    total = np.zeros(FRAME_BYTES)
    for p in parts:
        if p is not None:
            total = total + p
    return ulaw_encode(np.clip(np.round(total), -32768, 32767).astype(np.int16))


def voiced_span_ms(audio: bytes) -> int:
    env = envelope(audio)
    voiced = np.nonzero(env > VOICED_RMS)[0]
    return 0 if len(voiced) == 0 else int(voiced[-1] - voiced[0] + 1) * 20


def match_clip(audio: bytes, candidates: list[Clip], min_score: float = 0.6) -> tuple[Clip | None, float]:
    """Which clip does this (noisy, maybe echoed, maybe clipped) audio contain?

    Stands in for speech recognition in the simulator: the transcript of a committed buffer is the
    text of the best-matching caller clip, or nothing when none matches. A clip is a candidate only
    if its voiced length is close to the buffer's (so a short «כן» cannot "match" inside a long
    sentence); among candidates the best normalised correlation of log-energy envelopes wins,
    less a penalty for the remaining length difference.
    """
    span = voiced_span_ms(audio)
    if span == 0:
        return None, 0.0
    env = np.log1p(envelope(audio))
    best, best_score = None, 0.0
    for c in candidates:
        c_start, c_end = c.speech_span_ms
        c_span = c_end - c_start
        # the buffer may hold a little more than the clip (pre-roll, echo tail), rarely less
        if span < 0.65 * c_span - 100 or span > c_span + 600:
            continue
        penalty = (0.5 * max(0, c_span - span) + 0.25 * max(0, span - c_span - 300)) / c_span
        ref = np.log1p(envelope(c.audio)[c_start // 20:c_end // 20])
        ref = ref - ref.mean()
        ref_norm = np.linalg.norm(ref)
        padded = np.concatenate([np.full(len(ref), env.min()), env, np.full(len(ref), env.min())])
        for start in range(0, len(padded) - len(ref) + 1):
            window = padded[start:start + len(ref)]
            w = window - window.mean()
            denom = np.linalg.norm(w) * ref_norm
            score = (float(w @ ref / denom) if denom > 0 else 0.0) - penalty
            if score > best_score:
                best, best_score = c, score
    return (best, best_score) if best_score >= min_score else (None, best_score)
