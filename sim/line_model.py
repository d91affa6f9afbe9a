"""A telephone line, frame by frame: what reaches the server when a caller speaks into a phone.

Pure and deterministic: numpy only, no I/O, no clocks, no logging; every random choice comes from
numpy Generators seeded from ``LineProfile.seed``. It imports nothing from ``server/``: the
simulators are independent witnesses of the server, so the G.711 codec is written here again.

Theory of operation
-------------------
One ``PhoneLine`` is one call. Every 20 ms (``FRAME`` = 160 samples at 8 kHz) its user hands it the
caller's clean voice for that frame (``near_end``) and what the handset's loudspeaker played
(``played``, the AI's decoded audio), and gets back the 160 µ-law bytes the network delivers::

    near_end --x level gain--+
    played --soft clip--colour--delay line (jittered)--+reverb tail--x drifting gain--+  (echo)
    noise (white/pink/babble/street/car/hum/line)------------------------------------+
        --> sum --> AGC (handset) --> G.711 round trip (handset leg) --> 300-3400 Hz band limit
        --> µ-law --> packet loss (Gilbert-Elliott) + concealment --> 160 bytes

* Level: ``caller_level_dbfs`` is an *active speech level* (the mean power of the frames that carry
  speech, in the spirit of ITU-T P.56). The gain is fixed once, at construction, from the active
  level of the clean speech, which the user of the class measures (``active_level_dbfs``) and
  passes as ``speech_level_dbfs``. 0 dBFS is the RMS of a full-scale sine (``FULL_SCALE_RMS``).
  Typical active levels on a line: -26 dBFS nominal, -35..-40 dBFS for a soft or distant talker,
  -10..-15 dBFS for a loud one close to the microphone.
* Noise is generated at unit RMS and scaled to its level: ``noise_dbfs`` if given, otherwise
  ``snr_db`` below the reference level (``caller_level_dbfs``; if that is None the measured
  ``speech_level_dbfs``; if that is None too, -26 dBFS). The level is the noise's long-run RMS *as
  added* (acoustically, at the microphone), before the AGC and the band limit: the band limit then
  removes most of car rumble and mains hum, as a real phone does. What is left in the band, relative
  to the level as added: white -1 dB, babble -1 dB (as speech), pink -4 dB, street -3 dB, car -9 dB,
  hum -9 dB. ``line`` noise is a low white floor (-65 dBFS unless ``noise_dbfs`` says otherwise;
  ``snr_db`` is not used); µ-law reads it ~1 dB higher (steps of 8, negatives round away from 0).
  Street noise: a low-passed body and pink tyre noise under a level envelope that wanders (+-2 dB)
  with passing-car swells (+4..+10 dB every ~8 s); the envelope repeats every 60 s and its mean
  power is exact over that loop. Car noise: brown rumble (corner 20 Hz, 70 % of the power), engine
  harmonics 1-6 of a 30-60 Hz firing frequency that wanders +-15 % (15 %), pink road noise (15 %).
  Hum: 50 Hz and 8 harmonics, odd ones stronger. Babble: the given source, looped from a seeded
  offset, scaled by its RMS over the whole loop.
  Pink noise is white noise through a parallel bank of one-pole sections (poles every two octaves,
  8 Hz..2 kHz; within 1.3 dB of -3 dB/octave over 50-3400 Hz). The one-pole sections are streamed
  in blocks with precomputed 160x160 matrices, so there is no per-sample Python loop and no FFT.
* Echo (``EchoPath``): how much of what the handset plays comes back into its microphone, or off
  the 2-wire hybrid. The numbers the presets use:

  - network (line/hybrid) echo: a 2-wire/4-wire hybrid returns its input attenuated by its echo
    return loss (ERL); ITU-T G.168 tests echo cancellers with ERL down to 6 dB, and a typical
    hybrid gives 20-30 dB. Electrical, so a delayed, scaled copy ("plain" in character). Delays of
    20-60 ms after playout are those of a VoIP/mobile leg between the hybrid and the media
    gateway (G.168 cancellers must cover an echo tail of at least 64 ms).
  - handset acoustic echo (earpiece -> housing -> microphone): raw coupling about -15..-25 dB;
    3GPP TS 26.131 asks a handset for TCLw >= 46 dB *after* its own echo control, so this models
    a phone or softphone whose echo control is weak or off. 60-120 ms: the return path through the
    phone's jitter buffer and codec. Mildly coloured (a high-pass from the small earpiece, a small
    presence bump).
  - speakerphone: a loudspeaker a few cm from the microphone at volume: -10..0 dB coupling, the
    loudspeaker's nonlinearity (soft clip), a small-loudspeaker response (no bass, a resonance),
    a room tail, a gain that drifts as the phone or people move, and a delay that wanders (an
    adaptive jitter buffer, 200-300 ms round trip with it).

  The loudspeaker's soft clip ``tanh(k x) / k`` (x full-scale normalised) keeps unity small-signal
  gain so ``gain_db`` stays the echo level of quiet audio; loud audio is compressed and gains
  harmonics. The colour filter is a 63-tap linear-phase FIR normalised to unit mean power gain over
  300-3400 Hz; its group delay is taken off the delay line so the echo still arrives at
  ``delay_ms``. The reverb tail is sparse ("velvet") noise: 96 signed taps with an exponential
  envelope reaching -60 dB at ``reverb_ms``, 3 dB below the direct path in energy, and the direct
  path plus tail together have the power gain ``gain_db``. Jitter is a smoothed random walk of
  the delay within +-``jitter_ms``, interpolated sample by sample. Drift is two slow sines
  (periods of 6-12 s and 15-30 s) with a peak of at most +-``drift_db``.
* AGC (a handset's): the frame level is pulled towards -24 dBFS with a 50 ms attack and a 1.5 s
  release, from -12 dB to +20 dB of gain. In pauses the gain climbs and the noise with it.
* Band limit: 81-tap Kaiser-windowed sinc band-pass (210-3550 Hz edges, beta 5): about -1 dB at
  300 Hz, flat to 3400 Hz, -29 dB at 100 Hz and < -50 dB at 3800 Hz (G.712-like). 81 rather than
  64 taps because 100 Hz must be more than 20 dB down while 300 Hz passes. It delays everything
  on the line by ``BAND_LIMIT_DELAY_SAMPLES`` (40 samples, 5 ms).
* G.711 µ-law: the reference algorithm (Sun's g711.c, as in CPython's ``audioop``): the 16-bit
  sample is shifted to 14 bits (arithmetic shift), sign split, magnitude clipped at 8159 (32635 in
  16-bit terms) and biased by 33 (0x84 = 132 in 16-bit terms), segment = position of the leading
  bit, 4 mantissa bits, all bits inverted. Bit-exact with ``audioop.lin2ulaw``/``ulaw2lin``. With
  ``g711`` the handset's own leg is coded too (a tandem: quantisation noise, band-limited, then
  coded again); the line's output is µ-law in any case.
* Packet loss: a two-state Gilbert-Elliott chain per frame, every frame lost in the bad state,
  mean burst 2 frames, long-run loss ``loss_pct``. Concealment in the spirit of G.711 Appendix I:
  a lost frame is the last good frame again, 6 dB quieter per repeat (-6, -12, -18 dB), then
  silence from the 4th consecutive lost frame.

Cost per frame on the development machine: 5 µs (clean), 15-25 µs (noise, handset echo), ~50 µs
(car, speakerphone, speakerphone_cafe); ``tests/test_line_model.py`` holds it under 150 µs.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

FRAME = 160                 # samples per 20 ms frame
RATE = 8000                 # samples per second
FRAME_MS = 20
FULL_SCALE_RMS = 23170.0    # 0 dBFS: the RMS of a full-scale sine

SILENCE_BYTE = 0xFF         # µ-law of 0
NOISE_KINDS = ("none", "line", "white", "pink", "babble", "street", "car", "hum")
ECHO_KINDS = ("none", "network", "handset", "speakerphone", "plain")

LINE_NOISE_DBFS = -65.0             # the "line" noise floor when noise_dbfs is not given
DEFAULT_REFERENCE_DBFS = -26.0      # the speech level snr_db refers to when none is known
AGC_TARGET_DBFS = -24.0
AGC_ATTACK_MS = 50
AGC_RELEASE_MS = 1500
AGC_MAX_GAIN_DB = 20.0
AGC_MIN_GAIN_DB = -12.0
BAND_LIMIT_TAPS = 81
BAND_LIMIT_DELAY_SAMPLES = (BAND_LIMIT_TAPS - 1) // 2
COLOUR_TAPS = 63
REVERB_TAPS = 96
REVERB_DIRECT_TO_TAIL_DB = 3.0
LOSS_MEAN_BURST_FRAMES = 2.0
CONCEAL_STEP_DB = -6.0
CONCEAL_MAX_REPEATS = 3
STREET_LOOP_MS = 60_000             # the street's level envelope repeats after this long
MAX_DELAY_MS = 2000


def dbfs_to_rms(dbfs: float) -> float:
    return FULL_SCALE_RMS * 10.0 ** (dbfs / 20.0)


def rms_to_dbfs(rms: float) -> float:
    return 20.0 * np.log10(max(float(rms), 1e-9) / FULL_SCALE_RMS)


# --- G.711 µ-law -----------------------------------------------------------------------------------

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_BIAS = 0x84                # 132 in 16-bit terms
_CLIP = 32635               # in 16-bit terms


def lin2ulaw_algorithm(pcm: np.ndarray) -> np.ndarray:
    """The G.711 µ-law encoder, vectorised: int16 samples -> µ-law codes (uint8).

    14-bit form of the reference: ``x >> 2`` (arithmetic), sign, magnitude clipped at
    ``_CLIP >> 2`` and biased by ``_BIAS >> 2``, segment = first ``_SEG_UEND`` the magnitude does
    not exceed, mantissa = the 4 bits below the leading one, bits inverted (0x7F mask when
    negative). A magnitude beyond the last segment gives the largest code of its sign."""
    x = np.asarray(pcm).astype(np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), _CLIP >> 2) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    over = seg >= 8
    seg = np.minimum(seg, 7)
    code = np.where(over, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    mask = np.where(negative, 0x7F, 0xFF)
    return (code ^ mask).astype(np.uint8)


def ulaw2lin_algorithm(codes: np.ndarray) -> np.ndarray:
    """The G.711 µ-law decoder, vectorised: codes (0..255) -> int16 samples."""
    u = ~np.asarray(codes).astype(np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


_ENCODE = lin2ulaw_algorithm(np.arange(-32768, 32768))     # 64 KiB, built once
_DECODE = ulaw2lin_algorithm(np.arange(256))                # 256 values
_DECODE_F = _DECODE.astype(np.float64)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """Samples (int16 scale; floats are rounded and clipped) -> µ-law bytes."""
    x = np.asarray(pcm)
    x = np.rint(x) if x.dtype.kind == "f" else x.astype(np.int64)
    return _ENCODE[np.clip(x, -32768, 32767).astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """µ-law bytes -> int16 samples."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]


def active_level_dbfs(pcm: np.ndarray, floor_dbfs: float = -60.0) -> float:
    """Active speech level of ``pcm`` (int16 scale): the mean power of the 20 ms frames above an
    energy gate 15.9 dB under that level (the P.56 margin), found by fixed-point iteration from a
    ``floor_dbfs`` gate. A simplified P.56: frames, not its envelope with hangover. -inf dBFS if
    nothing is above the floor."""
    x = np.asarray(pcm, dtype=np.float64)
    n = len(x) // FRAME
    if n == 0:
        return float("-inf")
    energy = (x[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)
    gate = dbfs_to_rms(floor_dbfs) ** 2
    level = 0.0
    for _ in range(20):
        active = energy[energy > gate]
        if len(active) == 0:
            return float("-inf")
        new_level = float(active.mean())
        if new_level == level:
            break
        level = new_level
        gate = max(dbfs_to_rms(floor_dbfs) ** 2, level * 10 ** (-15.9 / 10))
    return rms_to_dbfs(np.sqrt(level))


# --- profiles ----------------------------------------------------------------------------------------

def _check_number(owner: str, name: str, value: object, integer: bool = False) -> None:
    ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)   # numpy scalars too
    if isinstance(value, (bool, np.bool_)) or not ok or not np.isfinite(float(value)):
        raise ValueError(f"{owner}.{name} must be {'an integer' if integer else 'a number'}, got {value!r}")


def _check_bool(owner: str, name: str, value: object) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}.{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class EchoPath:
    """How what the handset plays comes back into what it sends.

    ``kind``: ``none`` (no echo; then no other field may be set), ``plain`` (a delayed, scaled
    copy: nothing else may be set, the reference for tests), ``network`` (electrical hybrid echo:
    no colour, clipping or reverb, but jitter and drift may be set), ``handset`` and
    ``speakerphone`` (acoustic: every field; the kind chooses the colour filter's shape, a mild
    earpiece one or a small loudspeaker's)."""
    kind: str = "none"          # none | network | handset | speakerphone | plain
    gain_db: float = -120.0     # echo level relative to what the handset plays
    delay_ms: int = 0           # acoustic/line delay of the echo (after playout)
    jitter_ms: int = 0          # the delay wanders (smoothed random walk within +-jitter_ms), sample-accurate
    colour: bool = False        # frequency colouring (loudspeaker/earpiece band-pass with a resonance, tilt)
    clip_drive: float = 0.0     # soft clipping (tanh) of the loudspeaker: 0 = linear; ~2-4 = clearly nonlinear
    drift_db: float = 0.0       # the echo gain drifts slowly over the call by up to +-drift_db
    reverb_ms: int = 0          # exponential room tail (RT to -60 dB) added to the echo (speakerphone)

    def __post_init__(self) -> None:
        if self.kind not in ECHO_KINDS:
            raise ValueError(f"EchoPath.kind must be one of {', '.join(ECHO_KINDS)}, got {self.kind!r}")
        for name in ("gain_db", "clip_drive", "drift_db"):
            _check_number("EchoPath", name, getattr(self, name))
        for name in ("delay_ms", "jitter_ms", "reverb_ms"):
            _check_number("EchoPath", name, getattr(self, name), integer=True)
        _check_bool("EchoPath", "colour", self.colour)
        if self.gain_db > 20:
            raise ValueError(f"EchoPath.gain_db must be at most 20, got {self.gain_db}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"EchoPath.delay_ms must be within 0..{MAX_DELAY_MS}, got {self.delay_ms}")
        if not 0 <= self.jitter_ms <= self.delay_ms:
            raise ValueError(f"EchoPath.jitter_ms must be within 0..delay_ms ({self.delay_ms}), got {self.jitter_ms}")
        if not 0 <= self.reverb_ms <= MAX_DELAY_MS:
            raise ValueError(f"EchoPath.reverb_ms must be within 0..{MAX_DELAY_MS}, got {self.reverb_ms}")
        if self.clip_drive < 0 or self.drift_db < 0:
            raise ValueError("EchoPath.clip_drive and drift_db must not be negative")
        shaped = {"jitter_ms": self.jitter_ms, "colour": self.colour, "clip_drive": self.clip_drive,
                  "drift_db": self.drift_db, "reverb_ms": self.reverb_ms}
        if self.kind == "none":
            if self.gain_db != -120.0 or self.delay_ms or any(shaped.values()):
                raise ValueError("EchoPath kind 'none' takes no other fields: set kind to plain, network, handset "
                                 "or speakerphone to have an echo")
        elif self.kind == "plain":
            bad = sorted(k for k, v in shaped.items() if v)
            if bad:
                raise ValueError(f"EchoPath kind 'plain' is a delayed, scaled copy: {', '.join(bad)} must not be "
                                 "set (use kind handset or speakerphone)")
        elif self.kind == "network":
            bad = sorted(k for k in ("colour", "clip_drive", "reverb_ms") if shaped[k])
            if bad:
                raise ValueError(f"EchoPath kind 'network' is electrical: {', '.join(bad)} must not be set "
                                 "(use kind handset or speakerphone)")


@dataclass(frozen=True)
class LineProfile:
    name: str
    caller_level_dbfs: float | None = None   # active speech level the caller's voice is scaled to (None: as given)
    noise: str = "line"          # none | line | white | pink | babble | street | car | hum
    snr_db: float = 30.0         # noise level below the reference level (see the module docstring)
    noise_dbfs: float | None = None   # absolute noise level (long-run RMS as added); overrides snr_db
    agc: bool = False            # handset AGC towards -24 dBFS (attack 50 ms, release 1.5 s, -12..+20 dB)
    band_limit: bool = True      # 300-3400 Hz (81-tap FIR, streamed with carried state)
    g711: bool = True            # the handset leg is µ-law coded too (a tandem); the output is µ-law anyway
    loss_pct: float = 0.0        # packet loss (Gilbert-Elliott, mean burst 2 frames) with concealment
    echo: EchoPath = field(default_factory=EchoPath)
    seed: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"LineProfile.name must be a string, got {self.name!r}")
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"LineProfile.noise must be one of {', '.join(NOISE_KINDS)}, got {self.noise!r}")
        for name in ("caller_level_dbfs", "noise_dbfs"):
            value = getattr(self, name)
            if value is not None:
                _check_number("LineProfile", name, value)
                if not -120 <= value <= 0:
                    raise ValueError(f"LineProfile.{name} must be within -120..0 dBFS, got {value}")
        _check_number("LineProfile", "snr_db", self.snr_db)
        _check_number("LineProfile", "loss_pct", self.loss_pct)
        _check_number("LineProfile", "seed", self.seed, integer=True)
        for name in ("agc", "band_limit", "g711"):
            _check_bool("LineProfile", name, getattr(self, name))
        if not 0 <= self.loss_pct <= 50:
            raise ValueError(f"LineProfile.loss_pct must be within 0..50, got {self.loss_pct}")
        if not isinstance(self.echo, EchoPath):
            raise ValueError(f"LineProfile.echo must be an EchoPath, got {self.echo!r}")
        if self.seed < 0:
            raise ValueError(f"LineProfile.seed must not be negative, got {self.seed}")


LINES: dict[str, LineProfile] = {p.name: p for p in (
    LineProfile("clean", noise="none", band_limit=False, g711=False),
    LineProfile("network", echo=EchoPath("network", gain_db=-25.0, delay_ms=40)),
    LineProfile("handset", echo=EchoPath("handset", gain_db=-20.0, delay_ms=90, colour=True)),
    LineProfile("speakerphone", echo=EchoPath("speakerphone", gain_db=-6.0, delay_ms=250, jitter_ms=20, colour=True,
                                              clip_drive=3.0, drift_db=3.0, reverb_ms=150)),
    LineProfile("soft_caller", caller_level_dbfs=-38.0, noise="white", noise_dbfs=-55.0),
    LineProfile("loud_caller", caller_level_dbfs=-10.0),
    LineProfile("cafe", caller_level_dbfs=-26.0, noise="babble", snr_db=15.0),
    LineProfile("street", caller_level_dbfs=-26.0, noise="street", snr_db=10.0),
    LineProfile("car", caller_level_dbfs=-26.0, noise="car", snr_db=10.0),
    LineProfile("hum", caller_level_dbfs=-26.0, noise="hum", snr_db=10.0),
    LineProfile("babble_10", caller_level_dbfs=-26.0, noise="babble", snr_db=10.0),
    LineProfile("lossy", loss_pct=3.0),
    LineProfile("agc_pumping", caller_level_dbfs=-26.0, noise="pink", snr_db=20.0, agc=True),
    LineProfile("speakerphone_cafe", caller_level_dbfs=-26.0, noise="babble", snr_db=15.0,
                echo=EchoPath("speakerphone", gain_db=-6.0, delay_ms=250, jitter_ms=20, colour=True,
                              clip_drive=3.0, drift_db=3.0, reverb_ms=150)),
)}

_PROFILE_FIELDS = tuple(f.name for f in dataclasses.fields(LineProfile))
_ECHO_FIELDS = tuple(f.name for f in dataclasses.fields(EchoPath))


def line(name: str, **overrides) -> LineProfile:
    """The preset ``name`` with ``overrides`` (LineProfile fields). ``echo`` may be an ``EchoPath``
    (replaces the preset's) or a dict of EchoPath fields (applied on top of the preset's echo).
    Unknown presets or fields, and bad values, raise ValueError."""
    if name not in LINES:
        raise ValueError(f"unknown line {name!r}; known: {', '.join(LINES)}")
    unknown = sorted(set(overrides) - set(_PROFILE_FIELDS))
    if unknown:
        raise ValueError(f"unknown line field(s) {', '.join(unknown)}; known: {', '.join(_PROFILE_FIELDS)}")
    base = LINES[name]
    echo = overrides.get("echo")
    if isinstance(echo, dict):
        bad = sorted(set(echo) - set(_ECHO_FIELDS))
        if bad:
            raise ValueError(f"unknown echo field(s) {', '.join(bad)}; known: {', '.join(_ECHO_FIELDS)}")
        overrides = {**overrides, "echo": dataclasses.replace(base.echo, **echo)}
    return dataclasses.replace(base, **overrides)


# --- streaming building blocks -----------------------------------------------------------------------

@lru_cache(maxsize=32)
def _pole_bank_matrices(poles: tuple[float, ...], weights: tuple[float, ...], direct: float):
    a, c = np.array(poles), np.array(weights)
    n = np.arange(FRAME)
    lag = n[:, None] - n[None, :]
    m = direct * np.eye(FRAME)
    for ak, ck in zip(a, c):
        m += ck * np.where(lag >= 0, ak ** np.maximum(lag, 0), 0.0)
    from_state = a[None, :] ** (n[:, None] + 1) * c[None, :]     # (FRAME, K)
    to_state = a[:, None] ** (FRAME - 1 - n[None, :])           # (K, FRAME)
    power = direct ** 2 + 2 * direct * c.sum() + float((np.outer(c, c) / (1 - np.outer(a, a))).sum())
    return m, from_state, to_state, a ** FRAME, power


class _PoleBank:
    """y = direct*x + sum_k c_k * (one pole a_k)(x), streamed a frame at a time with matrices."""

    def __init__(self, poles, weights, direct: float) -> None:
        (self._m, self._from_state, self._to_state, self._decay,
         power) = _pole_bank_matrices(tuple(map(float, poles)), tuple(map(float, weights)), float(direct))
        self.rms_gain = float(np.sqrt(power))          # output RMS for unit white input
        self._state = np.zeros(len(poles))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self._m @ x + self._from_state @ self._state
        self._state = self._decay * self._state + self._to_state @ x
        return y


def _pole(corner_hz: float) -> float:
    return float(np.exp(-2 * np.pi * corner_hz / RATE))


def _pink_sections() -> tuple[list[float], list[float], float]:
    """Poles every 2 octaves from 8 Hz, zeros one octave above each: -3 dB/octave, as a parallel bank."""
    corners = [8.0 * 4 ** k for k in range(5)]                  # 8, 32, 128, 512, 2048 Hz
    a = np.array([_pole(f) for f in corners])
    b = np.array([_pole(2 * f) for f in corners])
    direct = float(np.prod(b) / np.prod(a))
    weights = [float(np.prod(1 - b / ak) / np.prod([1 - ai / ak for ai in a if ai != ak])) for ak in a]
    return list(a), weights, direct


def _mixed_bank(parts: list[tuple[float, tuple[list[float], list[float], float]]]) -> _PoleBank:
    """One bank from several (power share, (poles, weights, direct)), each part normalised first."""
    poles, weights, direct = [], [], 0.0
    for share, (p, w, d) in parts:
        unit = _PoleBank(p, w, d).rms_gain
        scale = np.sqrt(share) / unit
        poles += list(p)
        weights += [x * scale for x in w]
        direct += d * scale
    return _PoleBank(poles, weights, direct)


class _Fir:
    """A FIR filter streamed with its carried input tail."""

    def __init__(self, taps: np.ndarray) -> None:
        self.taps = np.asarray(taps, dtype=np.float64)
        self._tail = np.zeros(len(self.taps) - 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._tail, x])
        self._tail = buf[len(x):]
        return np.convolve(buf, self.taps, mode="valid")


@lru_cache(maxsize=1)
def band_limit_taps() -> np.ndarray:
    n = np.arange(BAND_LIMIT_TAPS) - BAND_LIMIT_DELAY_SAMPLES

    def lowpass(fc: float) -> np.ndarray:
        return 2 * fc / RATE * np.sinc(2 * fc / RATE * n)

    h = (lowpass(3550.0) - lowpass(210.0)) * np.kaiser(BAND_LIMIT_TAPS, 5.0)
    gain_1k = abs(np.exp(-2j * np.pi * 1000.0 * n / RATE) @ h)
    return h / gain_1k


@lru_cache(maxsize=4)
def colour_taps(kind: str) -> np.ndarray:
    """Linear-phase FIR of the echo's colour: a small loudspeaker's (speakerphone: no bass below
    ~550 Hz, +8 dB resonance at 1.8 kHz, roll-off above 3.3 kHz, slight downward tilt) or an
    earpiece's (handset: gentle high-pass at 250 Hz, +4 dB presence at 2.5 kHz). Unit mean power
    gain over 300-3400 Hz."""
    nfft = 1024
    f = np.maximum(np.fft.rfftfreq(nfft, 1.0 / RATE), 1.0)
    if kind == "speakerphone":
        high_pass = np.sqrt((f / 550) ** 4 / (1 + (f / 550) ** 4))
        resonance = 1 + (10 ** (8 / 20) - 1) / (1 + ((f - 1800) / (1800 / 2.5)) ** 2)
        mag = high_pass * resonance / np.sqrt(1 + (f / 3300) ** 8) * (f / 1000) ** -0.15
    else:
        high_pass = np.sqrt((f / 250) ** 2 / (1 + (f / 250) ** 2))
        mag = high_pass * (1 + (10 ** (4 / 20) - 1) / (1 + ((f - 2500) / (2500 / 1.5)) ** 2))
    h = np.roll(np.fft.irfft(mag, nfft), COLOUR_TAPS // 2)[:COLOUR_TAPS] * np.hanning(COLOUR_TAPS + 2)[1:-1]
    response = np.abs(np.fft.rfft(h, nfft))
    freqs = np.fft.rfftfreq(nfft, 1.0 / RATE)
    band = (freqs >= 300) & (freqs <= 3400)
    return h / np.sqrt(np.mean(response[band] ** 2))


def _ramp(start: float, end: float) -> np.ndarray:
    """Per-sample values going linearly from just after ``start`` to ``end`` over one frame."""
    return start + (end - start) * _RAMP


_RAMP = np.arange(1, FRAME + 1) / FRAME
_N = np.arange(FRAME)


# --- noise sources -----------------------------------------------------------------------------------

class _Noise:
    """Unit-RMS noise of one kind, a frame at a time."""

    def __init__(self, kind: str, rng: np.random.Generator, babble: np.ndarray | None) -> None:
        self.kind, self.rng = kind, rng
        self._t = 0                                   # samples generated
        if kind == "pink":
            self._bank = _PoleBank(*_pink_sections())
        elif kind == "street":
            # traffic: a low-passed body (corner 300 Hz) and pink tyre/wind noise, under a level envelope
            # that wanders (+-2 dB, ~3 s) with passing-car swells (+4..+10 dB, 0.6-1.5 s, every ~8 s)
            self._bank = _mixed_bank([(0.35, ([_pole(300.0)], [1.0], 0.0)), (0.65, _pink_sections())])
            self._envelope = self._street_envelope()
            self._env_prev = self._envelope[-1]
        elif kind == "car":
            # rumble (brown, corner 20 Hz) + engine harmonics (30-60 Hz fundamental) + pink road noise
            self._bank = _mixed_bank([(0.70, ([_pole(20.0)], [1.0], 0.0)), (0.15, _pink_sections())])
            self._engine_hz = float(rng.uniform(30.0, 60.0))
            self._rpm_period_s = float(rng.uniform(7.0, 13.0))
            self._rpm_phase = float(rng.uniform(0, 2 * np.pi))
            self._phase = 0.0
            harmonics = np.arange(1, 7)
            amps = 1.0 / harmonics
            self._harmonics = harmonics[:, None]
            self._engine_amps = amps * np.sqrt(0.15 / (np.sum(amps ** 2) / 2))
            self._harmonic_phases = rng.uniform(0, 2 * np.pi, len(harmonics))[:, None]
        elif kind == "hum":
            # mains at 50 Hz: exactly one period per 160-sample frame; odd harmonics (rectifier buzz) stronger
            amps = np.array([1.0, 0.3, 0.6, 0.15, 0.4, 0.1, 0.25, 0.05, 0.15])
            phases = rng.uniform(0, 2 * np.pi, len(amps))
            hum = sum(a * np.sin(2 * np.pi * 50 * (h + 1) * _N / RATE + p) for h, (a, p) in
                      enumerate(zip(amps, phases)))
            self._hum = hum / np.sqrt(np.mean(hum ** 2))
        elif kind == "babble":
            if babble is None:
                raise ValueError("this line asks for babble noise: pass babble= (float PCM of several voices "
                                 "already mixed, e.g. sim.audio.espeak_babble())")
            src = np.asarray(babble, dtype=np.float64).ravel()
            if len(src) < FRAME:
                raise ValueError(f"the babble source must hold at least {FRAME} samples, got {len(src)}")
            src = src - src.mean()
            rms = np.sqrt(np.mean(src ** 2))
            if rms <= 0:
                raise ValueError("the babble source is silent")
            self._babble = src / rms
            self._pos = int(rng.integers(0, len(src)))
        if hasattr(self, "_bank"):
            for _ in range(40):                       # warm up the filter state (no start-up ramp)
                self._bank(rng.standard_normal(FRAME))
            self._scale = 1.0 / self._bank.rms_gain

    def _street_envelope(self) -> np.ndarray:
        rng = self.rng
        n = STREET_LOOP_MS // FRAME_MS
        frames_per_s = 1000 // FRAME_MS
        alpha = np.exp(-1.0 / (3.0 * frames_per_s))
        steps = rng.normal(0.0, 2.0 * np.sqrt(1 - alpha ** 2), n)
        wander = np.empty(n)
        level = rng.normal(0.0, 2.0)
        for k in range(n):                            # construction only, 3000 steps
            level = alpha * level + steps[k]
            wander[k] = level
        t = np.arange(n) / frames_per_s
        swells = np.zeros(n)
        arrival = rng.exponential(8.0)
        while arrival < t[-1] + 3.0:
            peak_db, width_s = rng.uniform(4.0, 10.0), rng.uniform(0.6, 1.5)
            for shift in (-t[-1] - 1.0 / frames_per_s, 0.0):      # wrap around the loop smoothly
                swells += peak_db * np.exp(-0.5 * ((t - arrival + shift) / width_s) ** 2)
            arrival += rng.exponential(8.0)
        env = 10 ** ((wander + swells) / 20.0)
        return env / np.sqrt(np.mean(env ** 2))

    def frame(self) -> np.ndarray:
        kind = self.kind
        if kind in ("white", "line"):
            out = self.rng.standard_normal(FRAME)
        elif kind == "pink":
            out = self._bank(self.rng.standard_normal(FRAME)) * self._scale
        elif kind == "street":
            k = (self._t // FRAME) % len(self._envelope)
            env = self._envelope[k]
            out = self._bank(self.rng.standard_normal(FRAME)) * self._scale * _ramp(self._env_prev, env)
            self._env_prev = env
        elif kind == "car":
            t = (self._t + _N) / RATE
            f0 = self._engine_hz * (1 + 0.15 * np.sin(2 * np.pi * t / self._rpm_period_s + self._rpm_phase))
            phase = self._phase + np.cumsum(2 * np.pi * f0 / RATE)
            self._phase = float(phase[-1] % (2 * np.pi))
            engine = self._engine_amps @ np.sin(self._harmonics * phase[None, :] + self._harmonic_phases)
            out = self._bank(self.rng.standard_normal(FRAME)) * self._scale + engine
        elif kind == "hum":
            out = self._hum
        elif kind == "babble":
            idx = self._pos + _N
            out = self._babble.take(idx, mode="wrap")
            self._pos = (self._pos + FRAME) % len(self._babble)
        else:
            out = np.zeros(FRAME)
        self._t += FRAME
        return out


# --- echo ------------------------------------------------------------------------------------------

class _Echo:
    def __init__(self, path: EchoPath, rng: np.random.Generator) -> None:
        self.path = path
        self.gain = 10 ** (path.gain_db / 20.0)
        self.colour = _Fir(colour_taps(path.kind)) if path.colour else None
        group_delay = COLOUR_TAPS // 2 if path.colour else 0
        self.delay = max(0, path.delay_ms * RATE // 1000 - group_delay)      # samples, on the delay line
        self.jitter = path.jitter_ms * RATE // 1000
        self.drive = float(path.clip_drive)
        self.taps = np.zeros(0, dtype=np.int64)
        self.tap_gains = np.zeros(0)
        direct_power = 1.0
        if path.reverb_ms > 0:
            # velvet noise: one signed tap per segment at a random place, envelope -60 dB at reverb_ms
            length = path.reverb_ms * RATE // 1000
            start = 2 * RATE // 1000                                          # the tail starts 2 ms late
            edges = np.linspace(start, start + length, REVERB_TAPS + 1)
            self.taps = np.floor(edges[:-1] + rng.uniform(0, 1, REVERB_TAPS) * np.diff(edges)).astype(np.int64)
            envelope = np.exp(-np.log(1000.0) * (self.taps - start) / length)
            gains = envelope * rng.choice([-1.0, 1.0], REVERB_TAPS)
            tail_power = 10 ** (-REVERB_DIRECT_TO_TAIL_DB / 10.0)
            self.tap_gains = gains * np.sqrt(tail_power / np.sum(gains ** 2))
            direct_power += tail_power
        self.gain /= np.sqrt(direct_power)                    # direct + tail together at gain_db
        longest = self.delay + self.jitter + (int(self.taps.max()) if len(self.taps) else 0)
        self.history = np.zeros(longest + 2 * FRAME + 1)
        self.rng = rng
        self._offset, self._velocity, self._offset_prev = 0.0, 0.0, 0.0
        self._drift_periods_s = (float(rng.uniform(6.0, 12.0)), float(rng.uniform(15.0, 30.0)))
        self._drift_phases = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))
        self._t = 0
        self._gain_prev = self._gain_at(0)

    def _gain_at(self, t_samples: int) -> float:
        if not self.path.drift_db:
            return self.gain
        t = t_samples / RATE
        (p1, p2), (f1, f2) = self._drift_periods_s, self._drift_phases
        db = self.path.drift_db * (0.6 * np.sin(2 * np.pi * t / p1 + f1) + 0.4 * np.sin(2 * np.pi * t / p2 + f2))
        return self.gain * 10 ** (db / 20.0)

    def _next_offset(self) -> float:
        """A smoothed random walk of the delay within +-jitter samples (crossing it in a few seconds)."""
        j = self.jitter
        self._velocity = 0.95 * self._velocity + self.rng.normal(0.0, j / 320.0)
        offset = self._offset + self._velocity
        if abs(offset) > j:
            offset = float(np.sign(offset) * (2 * j - abs(offset)))
            self._velocity = -self._velocity
        self._offset = offset
        return offset

    def frame(self, played: np.ndarray) -> np.ndarray:
        x = played
        if self.drive > 0:
            x = np.tanh(self.drive / 32768.0 * x) * (32768.0 / self.drive)
        if self.colour is not None:
            x = self.colour(x)
        h = self.history
        h[:-FRAME] = h[FRAME:]
        h[-FRAME:] = x
        now = len(h) - FRAME + _N                         # this frame's samples in the history
        if self.jitter:
            offset = self._next_offset()
            delays = self.delay + np.rint(_ramp(self._offset_prev, offset)).astype(np.int64)
            self._offset_prev = offset
            idx = now - delays
        else:
            idx = now - self.delay
        out = h[idx]
        if len(self.taps):
            out = out + self.tap_gains @ h[idx[None, :] - self.taps[:, None]]
        self._t += FRAME
        gain = self._gain_at(self._t)
        out = out * (_ramp(self._gain_prev, gain) if gain != self._gain_prev else gain)
        self._gain_prev = gain
        return out


# --- the line ----------------------------------------------------------------------------------------

class PhoneLine:
    """One call's telephone line (see the module docstring). Feed it every frame, in order."""

    def __init__(self, profile: LineProfile, babble: np.ndarray | None = None,
                 speech_level_dbfs: float | None = None) -> None:
        """``babble``: float PCM (int16 scale) of several voices already mixed, looped as the
        babble noise; required when ``profile.noise == "babble"``, ignored otherwise.

        ``speech_level_dbfs``: the active level of the caller's clean speech as the user of the
        class will pass it to ``process`` (measure it with ``active_level_dbfs`` over the speech
        material). With ``profile.caller_level_dbfs`` it sets the voice gain, once; None: the voice
        is not scaled. It is also the reference of ``snr_db`` when ``caller_level_dbfs`` is None."""
        if not isinstance(profile, LineProfile):
            raise ValueError(f"profile must be a LineProfile, got {profile!r}")
        self.profile = profile
        self.speech_level_dbfs = speech_level_dbfs
        self._voice_gain = 1.0
        if profile.caller_level_dbfs is not None and speech_level_dbfs is not None:
            if not np.isfinite(speech_level_dbfs):
                raise ValueError(f"speech_level_dbfs must be finite, got {speech_level_dbfs}")
            self._voice_gain = 10 ** ((profile.caller_level_dbfs - speech_level_dbfs) / 20.0)
        seeds = np.random.SeedSequence(profile.seed).spawn(3)
        noise_rng, echo_rng, self._loss_rng = (np.random.default_rng(s) for s in seeds)

        if profile.noise == "none":
            self.noise_dbfs: float | None = None
        elif profile.noise_dbfs is not None:
            self.noise_dbfs = float(profile.noise_dbfs)
        elif profile.noise == "line":
            self.noise_dbfs = LINE_NOISE_DBFS
        else:
            self.noise_dbfs = self.reference_dbfs - profile.snr_db
        self._noise = _Noise(profile.noise, noise_rng, babble) if self.noise_dbfs is not None else None
        self._noise_rms = dbfs_to_rms(self.noise_dbfs) if self.noise_dbfs is not None else 0.0

        self._echo = _Echo(profile.echo, echo_rng) if profile.echo.kind != "none" else None
        self._band = _Fir(band_limit_taps()) if profile.band_limit else None
        self._agc_db = 0.0
        self._agc_prev = 1.0
        self._attack = 1 - np.exp(-FRAME_MS / AGC_ATTACK_MS)
        self._release = 1 - np.exp(-FRAME_MS / AGC_RELEASE_MS)
        # Gilbert-Elliott: bad -> good with 1/burst, good -> bad so that the long-run loss is loss_pct
        p_loss = profile.loss_pct / 100.0
        self._to_good = 1.0 / LOSS_MEAN_BURST_FRAMES
        self._to_bad = p_loss * self._to_good / (1 - p_loss) if p_loss > 0 else 0.0
        self._bad = False
        self._last_good = np.zeros(FRAME)
        self._repeats = 0
        self.frames = 0                 # frames processed
        self.frames_lost = 0            # of which lost (and concealed)
        self.last_lost = False          # whether the frame just returned was a lost one

    @property
    def reference_dbfs(self) -> float:
        """The speech level ``snr_db`` is counted from."""
        if self.profile.caller_level_dbfs is not None:
            return float(self.profile.caller_level_dbfs)
        if self.speech_level_dbfs is not None:
            return float(self.speech_level_dbfs)
        return DEFAULT_REFERENCE_DBFS

    @property
    def delay_samples(self) -> int:
        """How much later than it went in the caller's voice comes out (the band limit's group delay)."""
        return BAND_LIMIT_DELAY_SAMPLES if self.profile.band_limit else 0

    def level_gain(self) -> float:
        """The linear gain applied to the caller's voice (for ``caller_level_dbfs``)."""
        return self._voice_gain

    def agc_gain_db(self) -> float:
        return self._agc_db

    def process(self, near_end: np.ndarray, played: np.ndarray | None) -> bytes:
        """One 20 ms frame: the caller's voice (160 samples, int16 scale, zeros when silent) and what
        the handset's loudspeaker played in it (160 samples; None = nothing) -> 160 µ-law bytes."""
        near_end = np.asarray(near_end, dtype=np.float64)
        if near_end.shape != (FRAME,):
            raise ValueError(f"near_end must be {FRAME} samples, got shape {near_end.shape}")
        x = near_end * self._voice_gain if self._voice_gain != 1.0 else near_end
        if self._echo is not None:
            played = np.zeros(FRAME) if played is None else np.asarray(played, dtype=np.float64)
            if played.shape != (FRAME,):
                raise ValueError(f"played must be {FRAME} samples, got shape {played.shape}")
            x = x + self._echo.frame(played)
        if self._noise is not None:
            x = x + self._noise.frame() * self._noise_rms
        if self.profile.agc:
            x = self._agc(x)
        if self.profile.g711:
            x = _DECODE_F[_ENCODE[np.clip(np.rint(x), -32768, 32767).astype(np.int32) + 32768]]
        if self._band is not None:
            x = self._band(x)
        codes = _ENCODE[np.clip(np.rint(x), -32768, 32767).astype(np.int32) + 32768]
        self.frames += 1
        if self._to_bad:
            return self._lose_or_keep(codes)
        return codes.tobytes()

    def _agc(self, x: np.ndarray) -> np.ndarray:
        level_db = rms_to_dbfs(np.sqrt(np.dot(x, x) / FRAME))
        wanted = min(AGC_MAX_GAIN_DB, max(AGC_MIN_GAIN_DB, AGC_TARGET_DBFS - level_db))
        rate = self._attack if wanted < self._agc_db else self._release
        self._agc_db += (wanted - self._agc_db) * rate
        gain = 10 ** (self._agc_db / 20.0)
        out = x * _ramp(self._agc_prev, gain)
        self._agc_prev = gain
        return out

    def _lose_or_keep(self, codes: np.ndarray) -> bytes:
        draw = self._loss_rng.random()
        self._bad = (draw >= self._to_good) if self._bad else (draw < self._to_bad)
        self.last_lost = self._bad
        if not self._bad:
            self._last_good = _DECODE_F[codes]
            self._repeats = 0
            return codes.tobytes()
        self.frames_lost += 1
        self._repeats += 1
        if self._repeats > CONCEAL_MAX_REPEATS:
            return bytes([SILENCE_BYTE]) * FRAME
        return ulaw_encode(self._last_good * 10 ** (CONCEAL_STEP_DB * self._repeats / 20.0))
