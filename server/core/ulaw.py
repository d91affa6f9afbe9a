"""G.711 µ-law <-> int16 PCM through numpy lookup tables, bit-exact with CPython's ``audioop``.

``audioop`` is deprecated in 3.11 and gone in 3.13, so the tables are built here from the
reference algorithm (CPython ``st_14linear2ulaw`` / ``st_ulaw2linear16``). The decoder (256
entries) is built at import; the encoder (64 KiB, 65 536 Python steps) on first use: the live
server never encodes (µ-law passes through both ways), only the simulators and benchmarks do.

With OpenAI ``audio/pcmu`` on both sides no transcoding happens on the live path; the codec
serves the VAD (energy of caller frames) and the simulators (rendering audio).
"""
from __future__ import annotations

import math

import numpy as np

FRAME_BYTES = 160          # 20 ms of 8 kHz µ-law
FRAME_MS = 20
BYTES_PER_MS = 8
SILENCE_BYTE = 0xFF        # µ-law "positive zero"

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _encode_one(sample: int) -> int:
    value = sample >> 2                      # arithmetic shift to the 14-bit domain
    mask = 0x7F if value < 0 else 0xFF
    if value < 0:
        value = -value
    value += 33                              # bias 0x84 >> 2
    seg = next((i for i, end in enumerate(_SEG_UEND) if value <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def _decode_one(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return (0x84 - t) if (code & 0x80) else (t - 0x84)


_ENCODE: np.ndarray | None = None
_DECODE = np.array([_decode_one(u) for u in range(256)], dtype=np.int16)
_SQUARED = [int(v) * int(v) for v in _DECODE]      # a plain list: one 20 ms frame sums faster in C than numpy's per-call overhead


def energy(ulaw: bytes) -> float:
    """Mean square of the decoded int16 samples (exact: integer sums)."""
    if not ulaw:
        return 0.0
    return sum(map(_SQUARED.__getitem__, ulaw)) / len(ulaw)


def decode(ulaw: bytes) -> np.ndarray:
    """µ-law bytes -> int16 samples."""
    return _DECODE[np.frombuffer(ulaw, dtype=np.uint8)]


def encode(pcm16: np.ndarray | bytes) -> bytes:
    """int16 samples (array or little-endian bytes) -> µ-law bytes."""
    global _ENCODE
    if _ENCODE is None:
        _ENCODE = np.array([_encode_one(s) for s in range(-32768, 32768)], dtype=np.uint8)
    samples = np.frombuffer(pcm16, dtype="<i2") if isinstance(pcm16, (bytes, bytearray)) else pcm16
    return _ENCODE[samples.astype(np.int32) + 32768].tobytes()


def rms(ulaw: bytes) -> float:
    """RMS of the decoded int16 samples, without materialising them."""
    return math.sqrt(energy(ulaw))


def silence(duration_ms: int) -> bytes:
    return bytes([SILENCE_BYTE]) * (duration_ms * BYTES_PER_MS)
