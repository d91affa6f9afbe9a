"""Real callers for the simulated caller: Hebrew utterances and short sounds from the recordings in
``../shared/real-speech`` (or ``$REAL_SPEECH_DIR``), and babble of several real voices.

A scenario with ``[caller] real_speech = true`` says real speech instead of its espeak clips when the
recordings are present (and its clips otherwise): each ``say`` takes the next real utterance
(0.8-3 s, whole, loud, mostly voiced), each ``say ... backchannel = true`` the next real short
sound (150-400 ms), in a fixed order, so a call is repeatable. The recordings are read at run
time, never copied: their licences vary (see their README). Segments and labels come from
``sim.real_speech`` (its labeller, ``sim.speech_labeller``), as the benchmark's do.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim import real_speech

CONTEXT_MS = 40                 # the recording's own sound kept before and after a segment
FADE_MS = 10


@dataclass(frozen=True)
class RealSpeech:
    pcm: np.ndarray             # float, int16 scale, active speech level real_speech.SPEECH_DBFS
    speech_start_ms: int
    speech_end_ms: int
    name: str                   # file@ms, shown as what the caller says


class RealVoices:
    def __init__(self, directory) -> None:
        self.directory = directory
        sources = [s for s in real_speech.load_sources(directory)
                   if s.language == "he" and not s.stem.startswith(real_speech.NOT_A_CALLER)]
        self._utterances = [(src, seg) for src in sources for seg in real_speech.usable_segments(src, 800, 3000)]
        self._short = [(src, seg) for src in sources for seg in real_speech.short_sound_segments(src)]
        if not self._utterances or not self._short:
            raise ValueError(f"{directory}: no usable Hebrew utterances or short sounds")

    @staticmethod
    def _cut(src, seg, tail_ms: int = CONTEXT_MS) -> RealSpeech:
        s, e = seg
        lo, hi = max(0, s - CONTEXT_MS), min(src.duration_ms, e + tail_ms)
        pcm = np.array(src.pcm[lo * 8:hi * 8])
        fade = min(len(pcm), FADE_MS * 8)
        pcm[len(pcm) - fade:] *= np.linspace(1.0, 0.0, fade)
        return RealSpeech(pcm, s - lo, e - lo, f"{src.stem}@{s}ms")

    def utterance(self, k: int) -> RealSpeech:
        return self._cut(*self._utterances[(k * 7) % len(self._utterances)])   # spread over the speakers

    def short_sound(self, k: int) -> RealSpeech:
        # a short sound may be the start of a longer word cut at an energy dip: nothing after the cut
        src, seg = self._short[(k * 5) % len(self._short)]
        return self._cut(src, seg, tail_ms=0)

    def babble(self, seconds: float, seed: int) -> np.ndarray:
        return real_speech.babble(self.directory, seconds, seed)


@lru_cache(maxsize=1)
def real_voices() -> RealVoices | None:
    """The real voices, or None when the recordings are absent (the scenario's clips are said then)."""
    directory = real_speech.real_speech_dir()
    if directory is None:
        return None
    try:
        return RealVoices(directory)
    except ValueError:
        return None
