"""Speech-likeness veto: speech is modulated, steady sound is not.

Speech rises and falls with every syllable (the energy of 20 ms frames spreads over 10-15 dB
within an utterance; more than 8 dB even in noise), while white or pink noise, music-like
sustained chords and mains hum stay within about 2.5 dB. So an utterance whose frame energies,
from its first to its last voiced frame, have a standard deviation under ``min_modulation_db``
never triggers a response. The measurements behind the threshold are in
``bench/results/vad_benchmark.md`` (corpus: ``bench/vad_corpus.py``). The VAD keeps running on
every frame either way: this only vetoes the trigger.
"""
from __future__ import annotations

import math


class SpeechLikeness:
    def __init__(self, min_modulation_db: float) -> None:
        self.min_modulation_db = min_modulation_db
        self._db: list[float] = []

    def start(self) -> None:
        self._db = []

    def add(self, energy: float) -> None:
        self._db.append(10.0 * math.log10(energy + 1.0))

    def modulation_db(self, duration_ms: int) -> float:
        return modulation_db(self._db[: max(1, duration_ms // 20)])

    def is_speech(self, duration_ms: int) -> bool:
        return self.modulation_db(duration_ms) >= self.min_modulation_db


def modulation_db(values) -> float:
    """Standard deviation of frame energies in dB: how much a sound rises and falls."""
    values = list(values)
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
