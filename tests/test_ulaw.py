import warnings

import numpy as np

from server.core import ulaw

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib reference on 3.11/3.12; gone in 3.13 (the tests then need audioop-lts)


def test_encode_is_bit_exact_with_audioop_on_every_int16():
    samples = np.arange(-32768, 32768, dtype=np.int16)
    assert ulaw.encode(samples) == audioop.lin2ulaw(samples.tobytes(), 2)


def test_encode_accepts_little_endian_bytes():
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype="<i2")
    assert ulaw.encode(samples.tobytes()) == audioop.lin2ulaw(samples.tobytes(), 2)


def test_decode_is_bit_exact_with_audioop_on_every_code():
    codes = bytes(range(256))
    assert ulaw.decode(codes).astype("<i2").tobytes() == audioop.ulaw2lin(codes, 2)


def test_known_values():
    assert ulaw.decode(b"\x00\x80\xff\x7f").tolist() == [-32124, 32124, 0, 0]
    assert ulaw.encode(np.array([-1], dtype=np.int16)) == b"\x7e"     # where audioop differs from the classic encoder


def test_rms_matches_decoded_samples():
    rng = np.random.default_rng(3)
    frame = bytes(rng.integers(0, 256, 160, dtype=np.uint8))
    expected = float(np.sqrt((ulaw.decode(frame).astype(np.float64) ** 2).mean()))
    assert abs(ulaw.rms(frame) - expected) < 1e-9
    assert ulaw.rms(ulaw.silence(20)) == 0.0
    assert ulaw.rms(b"") == 0.0


def test_silence_is_eight_bytes_per_ms():
    assert ulaw.silence(20) == b"\xff" * 160
