"""Synthetic µ-law frames for the pure-core tests."""
import base64

import numpy as np

from server.core import ulaw


def tone(rms: float, ms: int = 20, hz: float = 300.0) -> bytes:
    t = np.arange(ms * 8) / 8000.0
    return ulaw.encode(np.round(np.sin(2 * np.pi * hz * t) * rms * np.sqrt(2)).astype(np.int16))


def b64(audio: bytes) -> str:
    return base64.b64encode(audio).decode()


SILENT = ulaw.silence(20)
VOICE = tone(2000)
SOFT = tone(300)
# Syllable-like caller speech: loud and soft stretches, as modulated as real speech (a steady tone
# is vetoed as "not speech" by the core).
SPEECH = [VOICE, VOICE, VOICE, SOFT, SOFT, SOFT]
