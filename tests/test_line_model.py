"""The telephone-line model (sim/line_model.py): codec, band limit, noise levels, echo, loss, AGC."""
import ast
import re
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from sim import audio as sim_audio
from sim import line_model as lm
from sim import scenario as scenario_mod
from sim.line_model import FRAME, RATE, EchoPath, PhoneLine, line
from sim.scenario import ScenarioError
from sim.twilio_caller import InboundAudio, speech_level_dbfs

ROOT = Path(__file__).resolve().parent.parent


def run(phone: PhoneLine, near: np.ndarray | None = None, played: np.ndarray | None = None,
        frames: int | None = None) -> np.ndarray:
    """Feed whole signals frame by frame; the decoded output."""
    n = frames if frames is not None else len(near if near is not None else played) // FRAME
    near = np.zeros(n * FRAME) if near is None else near
    played = np.zeros(n * FRAME) if played is None else played
    out = b"".join(phone.process(near[k * FRAME:(k + 1) * FRAME], played[k * FRAME:(k + 1) * FRAME])
                   for k in range(n))
    return lm.ulaw_decode(out).astype(np.float64)


def dbfs(x: np.ndarray) -> float:
    return lm.rms_to_dbfs(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def tone(hz: float, seconds: float, level_dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return lm.dbfs_to_rms(level_dbfs) * np.sqrt(2) * np.sin(2 * np.pi * hz * t)


def babble_source(seconds: float = 8.0) -> np.ndarray:
    """Four 'voices': noise with syllable-rate (3-6 Hz) on/off envelopes, mixed."""
    rng = np.random.default_rng(5)
    t = np.arange(int(seconds * RATE)) / RATE
    voices = [rng.normal(0, 3000, len(t)) * (np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)) > 0)
              for _ in range(4)]
    return np.sum(voices, axis=0)


# --- G.711 ---------------------------------------------------------------------------------------

def test_ulaw_is_bit_exact_with_audioop():
    audioop = pytest.importorskip("audioop", reason="audioop is gone from this Python (3.13+): "
                                  "no reference codec to compare with")
    every = np.arange(-32768, 32768).astype(np.int16)
    assert lm.lin2ulaw_algorithm(every).tobytes() == audioop.lin2ulaw(every.tobytes(), 2)
    assert lm.ulaw_encode(every) == audioop.lin2ulaw(every.tobytes(), 2)
    codes = bytes(range(256))
    assert lm.ulaw2lin_algorithm(np.arange(256)).tobytes() == audioop.ulaw2lin(codes, 2)
    assert lm.ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_ulaw_encode_rounds_and_clips_floats():
    assert lm.ulaw_encode(np.array([0.4, -0.4, 1e6, -1e6])) == lm.ulaw_encode(np.array([0, 0, 32767, -32768]))
    assert lm.ulaw_encode(np.zeros(3)) == bytes([lm.SILENCE_BYTE]) * 3


def test_clean_line_is_just_the_codec():
    x = np.random.default_rng(1).normal(0, 3000, 20 * FRAME)
    assert np.array_equal(run(PhoneLine(line("clean")), x), lm.ulaw_decode(lm.ulaw_encode(x)))


# --- band limit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hz, low, high", [(100, None, -20.0), (3800, None, -20.0), (1000, -1.0, 1.0)])
def test_band_limit(hz, low, high):
    x = tone(hz, 1.0, -12.0)
    y = run(PhoneLine(line("clean", band_limit=True)), x)
    gain = dbfs(y[800:]) - dbfs(x[800:])
    assert gain < high and (low is None or gain > low), f"{hz} Hz: {gain:.1f} dB"


# --- noise -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, seconds", [("white", 10), ("pink", 10), ("babble", 10), ("car", 10), ("hum", 2),
                                           ("street", lm.STREET_LOOP_MS // 1000)])
def test_noise_is_at_the_requested_level(kind, seconds):
    profile = line("clean", noise=kind, caller_level_dbfs=-26.0, snr_db=12.0)
    phone = PhoneLine(profile, babble=babble_source(), speech_level_dbfs=-20.0)
    y = run(phone, frames=seconds * 50)
    assert abs(dbfs(y) - (-38.0)) < 1.0, f"{kind}: {dbfs(y):.2f} dBFS"


@pytest.mark.parametrize("noise, band_limit", [("pink", False), ("white", True)])
def test_snr_is_measured_between_speech_and_pauses(noise, band_limit):
    """Bursts of white 'speech' (1 s on, 1 s off) at -20 dBFS, scaled to -30; noise 15 dB below.
    The SNR is acoustic (before the band limit): through the band limit it holds only when voice
    and noise have the same spectrum (pink noise loses its low end there)."""
    rng = np.random.default_rng(3)
    on = np.tile(np.repeat([1.0, 0.0], 50 * FRAME), 5)
    voice = rng.normal(0, lm.dbfs_to_rms(-20.0), len(on)) * on
    speech_level = lm.active_level_dbfs(voice)
    assert abs(speech_level - (-20.0)) < 0.2
    phone = PhoneLine(line("network", caller_level_dbfs=-30.0, noise=noise, snr_db=15.0, echo=EchoPath(),
                           band_limit=band_limit),
                      speech_level_dbfs=speech_level)
    assert phone.level_gain() == pytest.approx(10 ** (-10 / 20), rel=0.03)
    y = run(phone, voice)
    d = phone.delay_samples
    frames_on = on.reshape(-1, FRAME).min(axis=1) > 0
    y_frames = np.concatenate([y[d:], np.zeros(d)]).reshape(-1, FRAME)          # undo the band limit's delay
    edges = np.convolve(frames_on, [1, 1, 1], "same")        # keep away from the on/off edges
    speech_power = np.mean(y_frames[frames_on & (edges == 3)] ** 2)
    noise_power = np.mean(y_frames[~frames_on & (edges == 0)] ** 2)
    snr = 10 * np.log10((speech_power - noise_power) / noise_power)
    assert abs(snr - 15.0) < 1.0, snr


def test_line_noise_floor_and_missing_babble():
    # 1.5 dB: at -65 dBFS (RMS 13) the µ-law steps are 8 and negative samples round away from zero
    assert abs(dbfs(run(PhoneLine(line("lossy", band_limit=False)), frames=250)) - lm.LINE_NOISE_DBFS) < 1.5
    with pytest.raises(ValueError, match="babble"):
        PhoneLine(line("cafe"))


# --- echo --------------------------------------------------------------------------------------------

def _echo_lag_and_gain(phone: PhoneLine, played: np.ndarray) -> tuple[int, float]:
    y = run(phone, played=played)
    n = 4096
    ref = played[RATE: RATE + n]
    lags = np.arange(0, 2400)
    corr = np.array([np.dot(y[RATE + lag: RATE + lag + n], ref) for lag in lags])
    lag = int(lags[np.argmax(np.abs(corr))])
    return lag, dbfs(y[RATE + lag:]) - dbfs(played[RATE:len(y) - lag])


@pytest.mark.parametrize("band_limit", [False, True])
def test_plain_echo_arrives_at_its_delay_and_level(band_limit):
    played = np.random.default_rng(2).normal(0, lm.dbfs_to_rms(-12.0), 3 * RATE)
    profile = line("clean", band_limit=band_limit, echo={"kind": "plain", "gain_db": -18.0, "delay_ms": 120})
    phone = PhoneLine(profile)
    lag, gain = _echo_lag_and_gain(phone, played)
    assert lag == 120 * RATE // 1000 + phone.delay_samples
    # white noise loses ~1.1 dB outside 300-3400 Hz
    assert abs(gain - (-18.0 - (1.1 if band_limit else 0.0))) < 2.0, gain


def test_coloured_handset_echo_keeps_its_delay():
    played = np.random.default_rng(2).normal(0, lm.dbfs_to_rms(-12.0), 3 * RATE)
    lag, gain = _echo_lag_and_gain(PhoneLine(line("handset", band_limit=False, noise="none")), played)
    assert abs(lag - 90 * RATE // 1000) <= 2
    assert -24.0 < gain < -16.0


def test_speakerphone_echo_is_nonlinear():
    played = tone(500, 1.2, -3.0)

    def third_harmonic_db(clip_drive: float) -> float:
        profile = line("speakerphone", band_limit=False, noise="none",
                       echo={"jitter_ms": 0, "drift_db": 0.0, "reverb_ms": 0, "clip_drive": clip_drive})
        y = run(PhoneLine(profile), played=played)[RATE // 5:RATE // 5 + RATE]
        spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        return 20 * np.log10(spectrum[1500] / spectrum[500])

    assert third_harmonic_db(3.0) > -25.0
    assert third_harmonic_db(0.0) < -35.0


def test_speakerphone_echo_gain_drifts_and_delay_wanders():
    rng = np.random.default_rng(4)
    seconds = 60
    played = rng.normal(0, lm.dbfs_to_rms(-30.0), seconds * RATE)     # quiet: the loudspeaker stays linear
    phone = PhoneLine(line("speakerphone", band_limit=False, noise="none", echo={"jitter_ms": 0}))
    y = run(phone, played=played)
    window = 2 * RATE
    levels = [dbfs(y[k:k + window]) - dbfs(played[k:k + window]) for k in range(RATE, len(y) - window, window)]
    assert 3.0 < max(levels) - min(levels) < 2 * 3.0 + 1.5, levels
    assert abs(np.mean(levels) - (-6.0)) < 2.5

    jittery = PhoneLine(line("speakerphone", band_limit=False, noise="none",
                             echo={"drift_db": 0.0, "reverb_ms": 0, "clip_drive": 0.0, "colour": False}))
    y = run(jittery, played=played[:20 * RATE])
    lags = []
    for start in range(RATE, 19 * RATE, RATE):
        ref = played[start:start + 2048]
        corr = [np.dot(y[start + lag:start + lag + 2048], ref) for lag in range(1600, 2400)]
        lags.append(1600 + int(np.argmax(corr)))
    assert all(abs(lag - 2000) <= 160 for lag in lags), lags
    assert max(lags) - min(lags) > 10, lags


def test_echo_path_validation():
    with pytest.raises(ValueError, match="plain"):
        EchoPath("plain", gain_db=-20.0, delay_ms=50, colour=True)
    with pytest.raises(ValueError, match="none"):
        EchoPath("none", gain_db=-20.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        EchoPath("room")
    with pytest.raises(ValueError, match="delay_ms must be an integer"):
        EchoPath("plain", delay_ms=12.5)
    assert EchoPath("plain", gain_db=np.float64(-20), delay_ms=np.int64(40)).delay_ms == 40   # numpy scalars do


# --- packet loss -------------------------------------------------------------------------------------

def test_packet_loss_rate_bursts_and_concealment():
    n = 5000
    voice = tone(700, n / 50, -20.0)
    phone = PhoneLine(line("lossy", loss_pct=3.0, seed=11), speech_level_dbfs=None)
    lost, levels = [], []
    for k in range(n):
        out = phone.process(voice[k * FRAME:(k + 1) * FRAME], None)
        lost.append(phone.last_lost)
        levels.append(dbfs(lm.ulaw_decode(out)))
    lost = np.array(lost)
    assert phone.frames_lost == lost.sum()
    assert 0.02 < lost.mean() < 0.04, lost.mean()
    starts = np.nonzero(lost[1:] & ~lost[:-1])[0] + 1
    assert 1.4 < lost.sum() / len(starts) < 3.0                          # mean burst ~2 frames
    for s in starts:                                                    # the first concealed frame: -6 dB
        assert abs(levels[s] - levels[s - 1] - lm.CONCEAL_STEP_DB) < 1.0
    runs = [k for k in range(4, n) if lost[k - 3:k + 1].all()]
    assert all(levels[k] < -90 for k in runs)                            # silence after 3 repeats


def test_no_loss_means_no_lost_frames():
    phone = PhoneLine(line("network"))
    run(phone, frames=500)
    assert phone.frames_lost == 0 and not phone.last_lost


# --- determinism, presets, errors --------------------------------------------------------------------

def test_same_seed_same_bytes():
    rng = np.random.default_rng(9)
    voice, played = rng.normal(0, 2000, 100 * FRAME), rng.normal(0, 4000, 100 * FRAME)
    runs = [run(PhoneLine(line("speakerphone_cafe", loss_pct=5.0, seed=s), babble=babble_source(),
                          speech_level_dbfs=-25.0), voice, played).tobytes() for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_presets():
    required = {"clean", "network", "handset", "speakerphone", "soft_caller", "loud_caller", "cafe", "street",
                "car", "hum", "babble_10", "lossy", "speakerphone_cafe", "agc_pumping"}
    assert required <= set(lm.LINES)
    assert lm.LINES["clean"] == lm.LineProfile("clean", noise="none", band_limit=False, g711=False)
    sp = lm.LINES["speakerphone"].echo
    assert (sp.gain_db, sp.delay_ms, sp.jitter_ms, sp.reverb_ms, sp.drift_db, sp.colour) == (-6, 250, 20, 150, 3, True)
    assert lm.LINES["lossy"].loss_pct == 3.0
    assert lm.LINES["speakerphone_cafe"].noise == "babble" and lm.LINES["speakerphone_cafe"].echo == lm.LINES["speakerphone"].echo
    assert lm.LINES["agc_pumping"].agc
    for name in lm.LINES:
        phone = PhoneLine(line(name), babble=babble_source(1.0), speech_level_dbfs=-20.0)
        assert len(phone.process(np.zeros(FRAME), np.zeros(FRAME))) == FRAME


def test_line_overrides_and_errors():
    p = line("speakerphone", snr_db=5, echo={"gain_db": -12.0})
    assert p.snr_db == 5 and p.echo.gain_db == -12.0 and p.echo.delay_ms == 250      # merged onto the preset's echo
    assert line("network", echo=EchoPath()).echo.kind == "none"
    with pytest.raises(ValueError) as exc:
        line("tunnel")
    assert "'tunnel'" in str(exc.value) and "speakerphone_cafe" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        line("cafe", snr=10)
    assert "snr" in str(exc.value) and "snr_db" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        line("cafe", echo={"gain": -10})
    assert "gain" in str(exc.value) and "gain_db" in str(exc.value)
    with pytest.raises(ValueError, match="noise must be one of"):
        line("cafe", noise="rain")
    with pytest.raises(ValueError, match="agc must be true or false"):
        line("cafe", agc="yes")


# --- AGC -----------------------------------------------------------------------------------------

def test_agc_raises_a_quiet_segment_over_about_two_seconds():
    loud, quiet = tone(800, 2.0, -20.0), tone(800, 4.0, -45.0)
    phone = PhoneLine(line("clean", agc=True))
    y = run(phone, np.concatenate([loud, quiet]))
    start = 2 * RATE

    def level(at_s: float) -> float:
        k = start + int(at_s * RATE)
        return dbfs(y[k:k + 800])

    assert level(0.2) - level(0.0) < 6.0                    # slow, not a jump
    assert level(2.0) - level(0.0) > 10.0                   # but clearly up after ~2 s
    assert level(3.8) - (-45.0) <= lm.AGC_MAX_GAIN_DB + 0.5  # capped


# --- cost and purity -----------------------------------------------------------------------------

def test_per_frame_cost_is_small():
    rng = np.random.default_rng(0)
    phone = PhoneLine(line("speakerphone_cafe", loss_pct=3.0), babble=babble_source(2.0), speech_level_dbfs=-20.0)
    voice, played = rng.normal(0, 2000, (200, FRAME)), rng.normal(0, 4000, (200, FRAME))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for k in range(200):
            phone.process(voice[k], played[k])
        best = min(best, (time.perf_counter() - t0) / 200)
    assert best < 150e-6, f"{best * 1e6:.0f} µs per frame"


def test_line_model_is_pure_and_independent_of_the_server():
    tree = ast.parse((ROOT / "sim" / "line_model.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= {"__future__", "dataclasses", "functools", "numbers", "numpy"}, names


# --- scenarios: [caller] line ------------------------------------------------------------------

LINE_STEPS = 'steps = [{ say = "caller_service" }, { hangup = true }]\n'


def test_scenario_docstring_line_example():
    examples = re.findall(r"```toml\n(.*?)```", scenario_mod.__doc__, re.S)
    sc = scenario_mod.parse(examples[1], "line_example.toml")
    assert sc.line.noise == "babble" and sc.line.snr_db == 12
    assert (sc.line.echo.kind, sc.line.echo.gain_db, sc.line.echo.delay_ms, sc.line.echo.reverb_ms) == (
        "speakerphone", -10, 200, 150)
    assert scenario_mod.parse(examples[0]).line is None


@pytest.mark.parametrize("caller, complaint", [
    ('line = "tunnel"', "line 'tunnel': unknown line 'tunnel'; known: clean, network"),
    ('line = 3', "line must be the name of a line preset, got 3"),
    ('line = "cafe"\nnoise_dbfs = -60', "line replaces noise_dbfs"),
    ('line = "cafe"\necho = { delay_ms = 100, gain_db = -20 }', "line replaces echo"),
    ('[caller.line_overrides]\nsnr_db = 3', "line_overrides needs a 'line'"),
    ('line = "cafe"\nline_overrides = 5', "line_overrides must be a table"),
    ('line = "cafe"\n[caller.line_overrides]\nsnr = 3', "unknown line field(s) snr; known: name, caller_level_dbfs"),
    ('line = "cafe"\n[caller.line_overrides]\necho = 3', "line_overrides.echo must be a table"),
    ('line = "cafe"\n[caller.line_overrides.echo]\ndelay = 3', "unknown echo field(s) delay; known: kind, gain_db"),
    ('line = "cafe"\n[caller.line_overrides]\nnoise = "rain"', "noise must be one of"),
    ('line = "network"\n[caller.line_overrides.echo]\ncolour = true', "kind 'network' is electrical"),
])
def test_scenario_line_errors(caller, complaint):
    head, _, tables = caller.partition("[")
    text = "[caller]\n" + LINE_STEPS + head + ("[" + tables if tables else "")
    with pytest.raises(ScenarioError) as exc:
        scenario_mod.parse(text, "bad.toml")
    assert str(exc.value).startswith("bad.toml: [caller]"), str(exc.value)
    assert complaint in str(exc.value), str(exc.value)


LINE_SCENARIOS = {"thinking_pauses": "network", "backchannels": "handset", "speakerphone_cafe": "speakerphone_cafe",
                  "cafe_conversation": "cafe", "backchannels_handset": "handset"}


def test_every_committed_scenario_parses_and_only_the_line_calls_use_a_line():
    for path in sorted(scenario_mod.SCENARIOS_DIR.glob("*.toml")):
        sc = scenario_mod.load(str(path))
        if path.stem in LINE_SCENARIOS:
            assert sc.line is not None and sc.line.name == LINE_SCENARIOS[path.stem], path.name
        else:
            assert sc.line is None, path.name


def _legacy_frames(sc, seed, caller_frames, played_frames):
    """The caller's inbound mix as it was before line models (copied from the old run loop)."""
    rng = np.random.default_rng(seed)
    echo_frames = max(1, round(sc.echo.delay_ms / 20)) if sc.echo else 0
    echo_gain = sim_audio.db_to_gain(sc.echo.gain_db) if sc.echo else 0.0
    played_history = deque([np.zeros(160)] * echo_frames, maxlen=max(1, echo_frames))
    out = []
    for caller_pcm, played in zip(caller_frames, played_frames):
        echo = played_history[0] * echo_gain if sc.echo else None
        if sc.echo:
            played_history.append(played)
        noise = sim_audio.noise_frame(rng, sc.noise_dbfs) if sc.noise_dbfs is not None else None
        out.append(sim_audio.mix_to_ulaw(caller_pcm, echo, noise))
    return out


@pytest.mark.parametrize("name", ["barge_in", "quiet_echo", "two_turns"])
def test_scenarios_without_line_send_what_they_sent_before(name):
    sc = scenario_mod.load(name)
    rng = np.random.default_rng(8)
    caller_frames, played_frames = rng.normal(0, 2000, (60, FRAME)), rng.normal(0, 5000, (60, FRAME))
    inbound = InboundAudio(sc, np.random.default_rng(7))
    assert inbound.phone is None
    assert [inbound.frame(c, p) for c, p in zip(caller_frames, played_frames)] == \
        _legacy_frames(sc, 7, caller_frames, played_frames)


def test_scenario_line_goes_through_one_phone_line():
    text = ('[caller]\nline = "speakerphone_cafe"\nsteps = [{ say = "caller_service" }, { say = "caller_yes" }]\n'
            '[caller.line_overrides]\ncaller_level_dbfs = -30\nloss_pct = 0\n')
    sc = scenario_mod.parse(text, "line.toml")
    level = speech_level_dbfs(sc)
    assert -40 < level < -5
    inbound = InboundAudio(sc, np.random.default_rng(7))
    assert inbound.phone.profile == sc.line
    assert inbound.phone.level_gain() == pytest.approx(10 ** ((-30 - level) / 20))
    voice = sim_audio.frames(sim_audio.clip("caller_service").audio)
    out = [inbound.frame(lm.ulaw_decode(f).astype(np.float64), np.zeros(FRAME)) for f in voice]
    assert all(len(b) == FRAME for b in out)
    assert inbound.phone.frames == len(voice)
    assert speech_level_dbfs(scenario_mod.load("silent_caller")) is None
