"""The speech labeller on synthetic audio (always), and the real-speech corpus when the recordings
are there (../shared/real-speech or $REAL_SPEECH_DIR; otherwise skipped: "not run").

No real audio is stored in the repository: it is read from the shared directory at run time."""
from collections import Counter

import numpy as np
import pytest

from bench import real_corpus
from sim import speech_labeller
from bench.vad_corpus import LEAD_IN_MS

FS = 23170.0
TOLERANCE_MS = 40


def _burst(ms: int, rng: np.random.Generator, f0: float = 140.0, dbfs: float = -20.0) -> np.ndarray:
    """A voiced-like sound: harmonics of a slowly moving f0, amplitude-modulated at syllable rate."""
    t = np.arange(ms * 8) / 8000
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.3 * t))) / 8000
    x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 26) if k * f0 < 3600)
    env = 1 - 0.6 * np.sin(4 * np.pi * t) ** 2                 # -8 dB dips every 250 ms
    r = min(160, len(t) // 4)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
    env[:r] *= ramp
    env[-r:] *= ramp[::-1]
    x = x * env
    return x / np.sqrt((x ** 2).mean()) * FS * 10 ** (dbfs / 20)


def _track(plan, seed=1, noise_dbfs=-55.0):
    """plan: [(ms, is_sound)] -> (float pcm over white noise, true sound spans)."""
    rng = np.random.default_rng(seed)
    parts, truth, t = [], [], 0
    for ms, sound in plan:
        parts.append(_burst(ms, rng) if sound else np.zeros(ms * 8))
        if sound:
            truth.append((t, t + ms))
        t += ms
    x = np.concatenate(parts)
    return x + rng.normal(0, FS * 10 ** (noise_dbfs / 20), len(x)), truth


def _close(found, truth):
    return len(found) == len(truth) and all(abs(a - c) <= TOLERANCE_MS and abs(b - d) <= TOLERANCE_MS
                                            for (a, b), (c, d) in zip(found, truth))


# --------------------------------------------------------------------------- labeller, synthetic

def test_labeller_finds_bursts_and_their_150_300_700ms_gaps():
    x, truth = _track([(500, False), (600, True), (150, False), (500, True), (300, False), (400, True),
                       (700, False), (800, True), (800, False)])
    labels = speech_labeller.label(x)
    assert _close(labels.segments, truth), (labels.segments, truth)
    assert [e - s for s, e in labels.pauses] == pytest.approx([150, 300, 700], abs=TOLERANCE_MS)
    assert all(s % 20 == 0 and e % 20 == 0 for s, e in labels.segments)
    assert labels.noise_dbfs == pytest.approx(-55, abs=3)


def test_gaps_shorter_than_120ms_are_bridged():
    x, truth = _track([(400, False), (500, True), (90, False), (400, True), (60, False), (300, True), (600, False)])
    labels = speech_labeller.label(x)
    assert _close(labels.segments, [(truth[0][0], truth[-1][1])]), labels.segments
    assert labels.pauses == []


def test_noise_only_gives_no_segment():
    rng = np.random.default_rng(3)
    white = rng.normal(0, FS * 10 ** (-40 / 20), 4 * 8000)
    assert speech_labeller.label(white).segments == []
    assert speech_labeller.label(np.zeros(8000, dtype=np.int16)).segments == []
    clicks = rng.normal(0, FS * 10 ** (-60 / 20), 4 * 8000)     # short unvoiced knocks: not speech
    for at in (4000, 12000, 20000):
        clicks[at:at + 200] += rng.normal(0, FS * 10 ** (-15 / 20), 200) * np.exp(-np.arange(200) / 40)
    assert speech_labeller.label(clicks).segments == []


def test_labeller_is_deterministic_and_takes_int16():
    x, _ = _track([(300, False), (700, True), (400, False)], seed=7)
    as_int = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    a, b = speech_labeller.label(as_int), speech_labeller.label(as_int.astype(np.float64))
    assert a.segments == b.segments and a.noise_dbfs == b.noise_dbfs


def test_short_sounds_are_words_or_first_syllables():
    x, truth = _track([(400, False), (300, True), (500, False), (1200, True), (500, False)], seed=5)
    labels = speech_labeller.label(x)
    sounds = speech_labeller.short_sounds(labels=labels)
    assert sounds[0] == labels.segments[0]                    # short by itself: whole
    start, end = sounds[1]
    assert start == labels.segments[1][0] and 250 <= end - start <= 400     # cut at a dip
    assert all(e - s <= 400 for s, e in sounds)


# --------------------------------------------------------------------------- the real recordings

@pytest.fixture(scope="module")
def real_dir():
    directory = real_corpus.real_speech_dir()
    if directory is None:
        pytest.skip("real speech not found: not run")
    return directory


@pytest.fixture(scope="module")
def cases(real_dir):
    return real_corpus.build(real_dir)


def test_real_speech_dir_resolution(tmp_path, monkeypatch):
    assert real_corpus.real_speech_dir(str(tmp_path / "missing")) is None
    assert real_corpus.real_speech_dir(str(tmp_path)) is None                 # no wav files
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "x.wav").write_bytes(b"")
    assert real_corpus.real_speech_dir(str(tmp_path)) == tmp_path.resolve()
    monkeypatch.setenv("REAL_SPEECH_DIR", str(tmp_path))
    assert real_corpus.real_speech_dir() == tmp_path.resolve()


def test_corpus_has_every_condition_and_stays_small(cases):
    counts = Counter(c.condition for c in cases)
    assert set(counts) == {"real_speech", "thinking_pause", "backchannel_over_ai", "real_barge_in",
                           "silence_only", "babble_only", "cafe", "speakerphone_echo"}
    assert {c.internal_pause_ms for c in cases if c.condition == "thinking_pause"} == {300, 500, 700, 900}
    clean = [c for c in cases if c.condition == "real_speech" and c.line == "clean"]
    assert len({real_corpus.speaker_of(c.name.split("/")[2].split("@")[0]) for c in clean}) >= 8
    assert sum(c.name.split("/")[2].startswith("he_") for c in clean) > len(clean) / 2
    assert {c.line for c in cases if c.condition == "real_speech"} >= {
        "clean", "handset", "network", "soft_caller", "loud_caller", "lossy", "street", "car", "hum"}
    assert sum(c.duration_ms for c in cases) <= 6.5 * 60_000
    assert len({c.name for c in cases}) == len(cases)
    assert all(c.source == "real" for c in cases)


def test_every_label_lies_inside_its_case(cases):
    for c in cases:
        spans = c.utterances + c.pauses + c.backchannels
        assert all(LEAD_IN_MS <= s < e <= c.duration_ms for s, e in spans), c.name
        assert all(s % 20 == 0 and e % 20 == 0 for s, e in spans), c.name
        assert len(c.caller) == c.duration_ms * 8 and np.isfinite(c.caller).all(), c.name
        if c.babble is not None:
            assert len(c.babble) == len(c.caller), c.name
        for s, e in c.pauses:
            assert any(us < s and e < ue for us, ue in c.utterances), c.name
            assert e - s == c.internal_pause_ms, c.name
        if c.condition in ("backchannel_over_ai", "real_barge_in"):
            ai_end = c.reference_start_ms + len(c.reference) // 8
            onsets = [s for s, _ in c.backchannels] + [c.barge_in_onset_ms]
            assert all(o is None or c.reference_start_ms < o < ai_end for o in onsets), c.name
            assert all(e - s <= 400 for s, e in c.backchannels), c.name
        if c.condition == "real_barge_in":
            assert c.utterances[0][0] == c.barge_in_onset_ms and c.utterances[0][1] - c.utterances[0][0] >= 1000
        if c.condition in ("backchannel_over_ai", "silence_only", "babble_only", "speakerphone_echo"):
            assert c.utterances == [], c.name


def test_relabelling_each_built_track_agrees_with_its_labels(cases):
    """The labeller run again on each finished caller track finds the placed speech (>= 90 % of
    each utterance outside its pauses, something of each backchannel) and nothing else: the room
    tone, the splices and the silence cases hold no speech."""
    for c in cases:
        found = speech_labeller.label(c.caller).segments
        spans = c.utterances + c.backchannels
        for s, e in spans:
            covered = sum(max(0, min(e, b) - max(s, a)) for a, b in found)
            paused = sum(pe - ps for ps, pe in c.pauses if s <= ps and pe <= e)
            assert covered >= 0.9 * (e - s - paused), (c.name, (s, e), found)
        stray = [(a, b) for a, b in found if not any(a < e + 60 and b > s - 60 for s, e in spans)]
        assert stray == [], (c.name, stray)


def test_corpus_is_deterministic(real_dir, cases):
    again = real_corpus.build(real_dir)
    assert [c.name for c in again] == [c.name for c in cases]
    assert all(np.array_equal(a.caller, b.caller) for a, b in zip(again, cases))


def test_babble_level_and_length(real_dir):
    mix = real_corpus.babble(real_dir, 2.0, 5)
    assert len(mix) == 16000
    assert 20 * np.log10(np.sqrt((mix ** 2).mean()) / FS) == pytest.approx(-26.0, abs=0.01)


def test_jfk_long_pauses_are_found(real_dir):
    path = real_corpus._wav_files(real_dir)
    jfk = [p for p in path if p.stem == "en_jfk"]
    if not jfk:
        pytest.skip("en_jfk.wav not in the real speech directory")
    src = real_corpus.load_sources(real_dir)
    labels = next(s.labels for s in src if s.stem == "en_jfk")
    long = [(s, e) for s, e in labels.pauses if e - s >= 500]
    # "And so, my fellow Americans | ask not | what your country can do for you | ask what you can..."
    for t in (2700, 4850, 7900):
        assert any(s <= t <= e for s, e in long), (t, labels.pauses)
    assert labels.segments[0][0] == pytest.approx(320, abs=60)
    assert labels.segments[-1][1] == pytest.approx(10400, abs=200)
