"""The echo detector on real speech clips through a µ-law line: the AI's echo at 20-300 ms and
-6..-30 dB is never taken for the caller; the caller talking over it is found at once."""
import numpy as np
import pytest

from server.core import ulaw
from server.core.echo_detector import EchoDetector
from sim import audio as sim_audio

LEAD_SLOTS = 2            # our TX sends 40 ms ahead of the caller's playout
TALK_AT_MS = 2500
VOICED_ENERGY = 150.0 ** 2


def _pcm(name: str) -> np.ndarray:
    return ulaw.decode(sim_audio.clip(name).audio).astype(np.float64)


AI = np.concatenate([_pcm("ai_greeting"), _pcm("ai_ask_city")])
CALLER = _pcm("caller_service")


def run_line(delay_ms: int, gain_db: int, talk: bool) -> tuple[list[bool], EchoDetector]:
    rng = np.random.default_rng(0)
    det = EchoDetector()
    near_end = []
    for k in range(len(AI) // 160):
        now_ms = 1000 + 20 * k
        ref = AI[160 * k:160 * (k + 1)]
        det.on_reference(now_ms, float((ref ** 2).mean()))
        inbound = rng.normal(0, 23.0, 160)                             # -60 dBFS line noise
        j = k - delay_ms // 20 - LEAD_SLOTS
        if j >= 0:
            inbound += AI[160 * j:160 * (j + 1)] * 10 ** (gain_db / 20)
        c = k - TALK_AT_MS // 20
        if talk and 0 <= c < len(CALLER) // 160:
            inbound += CALLER[160 * c:160 * (c + 1)]
        line = ulaw.decode(ulaw.encode(np.clip(inbound, -32768, 32767).astype(np.int16))).astype(np.float64)
        energy = float((line ** 2).mean())
        verdict = det.on_inbound(now_ms, energy)
        near_end.append(verdict.reference_active and verdict.near_end and energy > VOICED_ENERGY)
    return near_end, det


def longest_run(flags: list[bool]) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


@pytest.mark.parametrize("delay_ms", [20, 120, 300])
@pytest.mark.parametrize("gain_db", [-6, -12, -20, -30])
def test_echo_alone_is_never_near_end(delay_ms, gain_db):
    flags, det = run_line(delay_ms, gain_db, talk=False)
    assert longest_run(flags) < 3                  # barge-in needs 8 (150 ms); here not even 3
    assert abs(det.lag - (delay_ms // 20 + LEAD_SLOTS)) <= 1     # 20 ms envelope slots
    # learnt from an upper percentile: never meaningfully below the true echo (that would let the AI
    # interrupt itself), at most a few dB above it (barge-in slightly harder)
    assert gain_db - 1.5 <= det.gain_db <= gain_db + 4


@pytest.mark.parametrize("delay_ms", [20, 120, 300])
@pytest.mark.parametrize("gain_db", [-6, -12, -20, -30])
def test_caller_over_the_echo_is_near_end_within_250ms(delay_ms, gain_db):
    flags, _ = run_line(delay_ms, gain_db, talk=True)
    start = TALK_AT_MS // 20 + sim_audio.clip("caller_service").speech_span_ms[0] // 20
    window = flags[start:start + 40]
    sustained_at = next(i for i in range(len(window)) if sum(window[max(0, i - 7):i + 1]) >= 7)
    assert sustained_at * 20 <= 250


def test_quiet_line_learns_a_low_gain():
    det = EchoDetector()
    for k in range(len(AI) // 160):
        ref = AI[160 * k:160 * (k + 1)]
        det.on_reference(1000 + 20 * k, float((ref ** 2).mean()))
        det.on_inbound(1000 + 20 * k, 23.0 ** 2)
    assert det.lag is None and det.gain_db is not None and det.gain_db < -35


def test_slot_series_window_matches_a_brute_force_history():
    import random

    from server.core.echo_detector import _SlotSeries
    rnd = random.Random(1)
    for _ in range(2000):
        series, truth = _SlotSeries(16), {}
        slot = rnd.randint(0, 50)
        for _ in range(rnd.randint(1, 40)):
            slot += rnd.choice([0, 1, 1, 2, 5, -1])          # repeats, gaps and late frames
            energy = rnd.random()
            series.record(slot, energy)
            if series.last_slot - slot < 16:
                truth[slot] = max(truth.get(slot, 0.0), energy)
        last = series.last_slot
        first = rnd.randint(last - 30, last + 5)
        end = first + rnd.randint(0, 25)
        expected = [truth.get(s, 0.0) if last - 16 < s <= last else 0.0 for s in range(first, end + 1)]
        assert series.window(first, end) == expected


def test_a_caller_who_starts_with_the_ai_is_not_learnt_as_echo():
    """Both envelopes step up together, but an echo is never louder than what was played."""
    det = EchoDetector()
    for k in range(100):
        now_ms = 1000 + 20 * k
        det.on_reference(now_ms, 300.0 ** 2 if k >= 20 else 0.0)
        verdict = det.on_inbound(now_ms, 2000.0 ** 2 if k >= 20 else 10.0)
    assert det.gain_db is None or det.gain_db <= 0
    assert verdict.near_end


def run_busy_line(echo_gain_db: float | None, babble_dbfs: float = -36.0, delay_ms: int = 120) -> EchoDetector:
    """The AI talks over a café (espeak voices, ``babble_dbfs``), with or without its echo."""
    rng = np.random.default_rng(3)
    voices = sim_audio.espeak_babble(30, seed=9)
    voices = voices / np.sqrt((voices ** 2).mean()) * 23170.0 * 10 ** (babble_dbfs / 20)
    det = EchoDetector()
    for k in range(len(AI) // 160):
        now_ms = 1000 + 20 * k
        det.on_reference(now_ms, float((AI[160 * k:160 * (k + 1)] ** 2).mean()))
        inbound = voices[160 * k:160 * (k + 1)] + rng.normal(0, 23.0, 160)
        j = k - delay_ms // 20 - LEAD_SLOTS
        if echo_gain_db is not None and j >= 0:
            inbound = inbound + AI[160 * j:160 * (j + 1)] * 10 ** (echo_gain_db / 20)
        det.on_inbound(now_ms, float((inbound ** 2).mean()))
    return det


def test_other_voices_on_a_line_without_echo_teach_no_echo_path():
    """Voices rise and fall like the AI's speech and correlate with it by chance; a path needs the line
    to be louder while the AI talks than in its pauses (here it is not), so none is learnt. The
    line's level while the AI talks bounds any echo instead."""
    for babble_dbfs in (-31.0, -36.0, -41.0):
        det = run_busy_line(None, babble_dbfs)
        assert det.lag is None, (babble_dbfs, det.lag, det.gain_db)
        assert det.gain_db is not None and det.gain_db < -3, (babble_dbfs, det.gain_db)


def test_an_echo_over_other_voices_is_still_learnt():
    det = run_busy_line(-6.0, -36.0)
    assert det.lag is not None and abs(det.lag - (120 // 20 + LEAD_SLOTS)) <= 1
    assert -9 <= det.gain_db <= -2
