"""The labelled turn-taking corpus, generated deterministically in about a second.

Every case is a caller-side track (what the line brings in, before echo) plus, for echo cases, the
AI audio the server plays; the harness mixes the echo online (so a barge-in that clears playback
also stops the echo, as on a real line). Speech comes from the committed espeak-ng clips
(``sim/clips``: Hebrew and English, male and female voices); noise, pink noise, music-like chords
and mains hum are synthesised. Labels are ground truth: each utterance's first and last voiced
20 ms frame (energy of the clean clip), and for speech over the AI the onset a barge-in must catch.

``python scripts/make_vad_corpus.py`` writes it to ``bench/corpus/`` (µ-law + labels.json) for
listening; the benchmark regenerates it in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.core import ulaw
from sim import audio as sim_audio

LEAD_IN_MS = 1000          # line noise only: calibration
TAIL_MS = 1500
LINE_NOISE_DBFS = -60.0
FULL_SCALE_RMS = 23170.0
TX_LEAD_MS = 40            # the server plays this far ahead of the caller's playout
SPEECH_CLIPS = ("caller_service", "caller_city", "caller_name", "caller_when", "caller_problem",
                "caller_en_door", "caller_en_time", "caller_hello_en")
BACKCHANNELS = ("caller_yes", "caller_ok")
ECHO_DELAYS_MS = (20, 120, 300)
ECHO_GAINS_DB = (-6, -12, -20, -30)


@dataclass
class Case:
    name: str
    condition: str
    caller: np.ndarray                           # float PCM at 8 kHz: the caller and the room
    reference: np.ndarray | None = None          # AI audio the server plays (None: AI silent)
    reference_start_ms: int = LEAD_IN_MS
    echo_delay_ms: int = 0
    echo_gain_db: float = -120.0
    utterances: list[tuple[int, int]] = field(default_factory=list)
    barge_in_onset_ms: int | None = None
    internal_pause_ms: int | None = None
    line: str = "clean"
    """Phone-line profile the caller's audio goes through (``sim.line_model``); "clean" = none."""
    line_overrides: dict = field(default_factory=dict)
    pauses: list[tuple[int, int]] = field(default_factory=list)
    """Thinking pauses inside an utterance (start, end): no AI audio may reach the caller inside one."""
    backchannels: list[tuple[int, int]] = field(default_factory=list)
    """Short caller sounds over AI speech (start, end): they must not cancel the response."""
    babble: np.ndarray | None = None
    """Source audio of the line's babble noise (several voices mixed), when the line asks for babble."""
    source: str = "espeak"
    """Where the caller's speech comes from: espeak (committed clips), real (../shared/real-speech), synthetic."""

    @property
    def duration_ms(self) -> int:
        return len(self.caller) // 8


def _pcm(name: str) -> np.ndarray:
    return ulaw.decode(sim_audio.clip(name).audio).astype(np.float64)


def _level(dbfs: float) -> float:
    return FULL_SCALE_RMS * 10 ** (dbfs / 20.0)


def _noise(rng: np.random.Generator, n: int, dbfs: float = LINE_NOISE_DBFS) -> np.ndarray:
    return rng.normal(0.0, _level(dbfs), n)


def _pink(rng: np.random.Generator, n: int, dbfs: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    freqs = np.fft.rfftfreq(n, 1 / 8000)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    return pink / np.sqrt((pink ** 2).mean()) * _level(dbfs)


def _chords(n: int, dbfs: float) -> np.ndarray:
    """Music-like: a progression of sustained triads with harmonics and soft attacks."""
    t = np.arange(n) / 8000
    out = np.zeros(n)
    roots = (220.0, 261.6, 196.0, 246.9)
    chord_len = int(0.6 * 8000)
    for i in range(0, n, chord_len):
        root = roots[(i // chord_len) % len(roots)]
        seg = slice(i, min(n, i + chord_len))
        env = np.minimum(1.0, np.arange(seg.stop - seg.start) / 400.0) * np.exp(-np.arange(seg.stop - seg.start) / 16000)
        for ratio in (1.0, 1.26, 1.5):
            for h, amp in ((1, 1.0), (2, 0.4), (3, 0.2)):
                out[seg] += amp * env * np.sin(2 * np.pi * root * ratio * h * t[seg])
    return out / np.sqrt((out ** 2).mean()) * _level(dbfs)


def _hum(n: int, dbfs: float) -> np.ndarray:
    t = np.arange(n) / 8000
    hum = sum(amp * np.sin(2 * np.pi * 50 * k * t) for k, amp in ((1, 1.0), (2, 0.5), (3, 0.35), (5, 0.2)))
    return hum / np.sqrt((hum ** 2).mean()) * _level(dbfs)


def _place(track: np.ndarray, at_ms: int, audio: np.ndarray) -> None:
    start = at_ms * 8
    track[start:start + len(audio)] += audio[: max(0, len(track) - start)]


def _speech_case(rng, name, condition, clips, pause_ms=0, noise_dbfs=LINE_NOISE_DBFS) -> Case:
    # cut each clip to its voiced span so the pause between them is exactly pause_ms
    voiced = [_voiced(c) for c in clips]
    speech_ms = sum(len(v) // 8 for v in voiced) + pause_ms * (len(voiced) - 1)
    total_ms = LEAD_IN_MS + speech_ms + TAIL_MS
    track = _noise(rng, total_ms * 8, noise_dbfs)
    at = LEAD_IN_MS
    for i, v in enumerate(voiced):
        _place(track, at, v)
        at += len(v) // 8 + (pause_ms if i < len(voiced) - 1 else 0)
    return Case(name, condition, track, utterances=[(LEAD_IN_MS, LEAD_IN_MS + speech_ms)],
                internal_pause_ms=pause_ms if len(clips) > 1 else None)


def _non_speech_case(rng, name, condition, signal: np.ndarray) -> Case:
    total = LEAD_IN_MS * 8 + len(signal) + TAIL_MS * 8
    track = _noise(rng, total)
    track[LEAD_IN_MS * 8: LEAD_IN_MS * 8 + len(signal)] += signal
    return Case(name, condition, track)


def build() -> list[Case]:
    rng = np.random.default_rng(20261121)
    cases: list[Case] = []
    for clip in SPEECH_CLIPS:
        cases.append(_speech_case(rng, f"speech/{clip}", "speech", [clip]))
    for clip in SPEECH_CLIPS[:4]:
        cases.append(_speech_case(rng, f"speech_in_noise/{clip}", "speech_in_noise", [clip], noise_dbfs=-40))
    pairs = [("caller_name", "caller_city"), ("caller_problem", "caller_when"), ("caller_en_door", "caller_en_time")]
    for pause in (150, 250, 400):
        for a, b in pairs:
            cases.append(_speech_case(rng, f"pause_{pause}/{a}+{b}", f"pause_{pause}", [a, b], pause_ms=pause))
    for clip in BACKCHANNELS:
        cases.append(_speech_case(rng, f"backchannel/{clip}", "backchannel", [clip]))
    n = 4000 * 8
    cases.append(_non_speech_case(rng, "silence", "silence", np.zeros(n)))
    for db in (-40, -30, -20):
        cases.append(_non_speech_case(rng, f"noise/white_{db}dBFS", "noise", _noise(rng, n, db)))
        cases.append(_non_speech_case(rng, f"noise/pink_{db}dBFS", "noise", _pink(rng, n, db)))
    for db in (-30, -20):
        cases.append(_non_speech_case(rng, f"music/chords_{db}dBFS", "music", _chords(n, db)))
        cases.append(_non_speech_case(rng, f"hum/50Hz_{db}dBFS", "hum", _hum(n, db)))
    ai = np.concatenate([_pcm("ai_greeting"), _pcm("ai_ask_city")])
    caller = _pcm("caller_en_door")
    c_start, c_end = sim_audio.clip("caller_en_door").speech_span_ms
    talk_at = 2500
    for delay in ECHO_DELAYS_MS:
        for gain in ECHO_GAINS_DB:
            total_ms = LEAD_IN_MS + len(ai) // 8 + TAIL_MS
            cases.append(Case(f"echo/{delay}ms_{gain}dB", "echo", _noise(rng, total_ms * 8), ai,
                              echo_delay_ms=delay, echo_gain_db=gain))
            track = _noise(rng, total_ms * 8)
            _place(track, talk_at, caller)
            cases.append(Case(f"speech_over_echo/{delay}ms_{gain}dB", "speech_over_echo", track, ai,
                              echo_delay_ms=delay, echo_gain_db=gain,
                              utterances=[(talk_at + c_start, talk_at + c_end)], barge_in_onset_ms=talk_at + c_start))
    cases += line_cases(rng)
    return cases


def _voiced(clip: str) -> np.ndarray:
    s, e = sim_audio.clip(clip).speech_span_ms
    return _pcm(clip)[s * 8:e * 8]


def _silent_track(total_ms: int) -> np.ndarray:
    """The caller's side before the line: silence (the line model adds its own noise)."""
    return np.zeros(total_ms * 8)


def line_cases(rng: np.random.Generator) -> list[Case]:
    """The committed espeak speech through the phone-line model (``sim.line_model``): thinking pauses,
    soft callers, a café, noisy lines, packet loss, speakerphone echo, barge-ins and backchannels
    over the AI. The same kinds of case are built on real recordings by ``bench.real_corpus``."""
    cases: list[Case] = []
    pairs = [("caller_name", "caller_city"), ("caller_problem", "caller_when"), ("caller_en_door", "caller_en_time")]
    for pause in (300, 500, 700, 900):
        for a, b in pairs:
            first, second = _voiced(a), _voiced(b)
            pause_start = LEAD_IN_MS + len(first) // 8
            end = pause_start + pause + len(second) // 8
            track = _silent_track(end + TAIL_MS)
            _place(track, LEAD_IN_MS, first)
            _place(track, pause_start + pause, second)
            cases.append(Case(f"thinking_pause_{pause}/{a}+{b}", "thinking_pause", track,
                              utterances=[(LEAD_IN_MS, end)], internal_pause_ms=pause,
                              pauses=[(pause_start, pause_start + pause)], line="network"))
    for line, condition in (("soft_caller", "soft_caller"), ("cafe", "cafe"), ("lossy", "lossy"),
                            ("street", "street"), ("car", "car"), ("hum", "hum"), ("agc_pumping", "agc_pumping")):
        for clip in SPEECH_CLIPS[:3]:
            speech = _voiced(clip)
            track = _silent_track(LEAD_IN_MS + len(speech) // 8 + TAIL_MS)
            _place(track, LEAD_IN_MS, speech)
            cases.append(Case(f"{condition}/{clip}", condition, track, line=line,
                              utterances=[(LEAD_IN_MS, LEAD_IN_MS + len(speech) // 8)],
                              babble=sim_audio.espeak_babble(30, seed=3) if line == "cafe" else None))
    for line in ("babble_10", "street", "car", "hum", "agc_pumping"):
        cases.append(Case(f"line_noise/{line}", "line_noise", _silent_track(LEAD_IN_MS + 6000 + TAIL_MS), line=line,
                          babble=sim_audio.espeak_babble(30, seed=4) if line == "babble_10" else None))
    ai = np.concatenate([_pcm("ai_greeting"), _pcm("ai_ask_city")])
    ai_ms = len(ai) // 8
    for gain_db, delay_ms in ((-6, 250), (0, 250), (-10, 100), (-6, 400)):
        cases.append(Case(f"speakerphone_echo/{delay_ms}ms_{gain_db}dB", "speakerphone_echo",
                          _silent_track(LEAD_IN_MS + ai_ms + TAIL_MS), ai, line="speakerphone",
                          line_overrides={"echo": {"gain_db": gain_db, "delay_ms": delay_ms}}))
    for clip in SPEECH_CLIPS[:3]:
        speech = _voiced(clip)
        track = _silent_track(LEAD_IN_MS + len(speech) // 8 + TAIL_MS)
        _place(track, LEAD_IN_MS, speech)
        cases.append(Case(f"speakerphone_cafe/{clip}", "speakerphone_cafe", track, line="speakerphone_cafe",
                          utterances=[(LEAD_IN_MS, LEAD_IN_MS + len(speech) // 8)],
                          babble=sim_audio.espeak_babble(30, seed=5)))
    talk_at = 2500
    for line in ("handset", "speakerphone"):
        speech = _voiced("caller_en_door")
        track = _silent_track(LEAD_IN_MS + ai_ms + TAIL_MS)
        _place(track, talk_at, speech)
        cases.append(Case(f"barge_in_line/{line}", "barge_in_line", track, ai, line=line,
                          utterances=[(talk_at, talk_at + len(speech) // 8)], barge_in_onset_ms=talk_at))
        for clip in BACKCHANNELS:
            sound = _voiced(clip)
            track = _silent_track(LEAD_IN_MS + ai_ms + TAIL_MS)
            _place(track, talk_at, sound)
            cases.append(Case(f"backchannel_over_ai/{line}/{clip}", "backchannel_over_ai", track, ai, line=line,
                              backchannels=[(talk_at, talk_at + len(sound) // 8)]))
    return cases
