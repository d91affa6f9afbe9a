import pytest

from server.core.energy_vad import EnergyVad, SpeechStarted, UtteranceEnded, VadState
from server.core.turn_config import TurnConfig
from server.core.ulaw import rms
from tests.audio_helpers import SILENT, VOICE, tone

CFG = TurnConfig()


class Feeder:
    """Feeds frames in audio time (20 ms each) and collects the records."""

    def __init__(self, vad: EnergyVad) -> None:
        self.vad, self.end_ms, self.records = vad, 0, []

    def feed(self, frame: bytes, count: int = 1) -> list:
        out = []
        for _ in range(count):
            self.end_ms += 20
            out += self.vad.on_frame(rms(frame), self.end_ms)
        self.records += out
        return out


def calibrated(frame: bytes = SILENT) -> Feeder:
    f = Feeder(EnergyVad(CFG))
    f.feed(frame, CFG.calibration_ms // 20)
    return f


def test_end_of_utterance_after_silence_measured_from_last_voiced_frame():
    f = calibrated()
    f.feed(VOICE, 50)                                    # 1000 ms of speech, 400..1400
    starts = [r for r in f.records if isinstance(r, SpeechStarted)]
    assert starts == [SpeechStarted(400)]
    f.feed(SILENT, CFG.eou_silence_ms // 20 - 1)
    assert f.vad.state is VadState.SPEECH                # one frame short of the end-of-utterance silence
    ended = f.feed(SILENT, 1)
    assert UtteranceEnded(start_ms=400, end_ms=1400, silence_ms=CFG.eou_silence_ms) in ended
    assert f.vad.state is VadState.SILENCE


def test_a_short_pause_does_not_end_the_utterance():
    f = calibrated()
    f.feed(VOICE, 25)
    f.feed(SILENT, 12)                                   # a 240 ms pause inside the sentence
    f.feed(VOICE, 25)
    f.feed(SILENT, CFG.eou_silence_ms // 20)
    ends = [r for r in f.records if isinstance(r, UtteranceEnded)]
    assert len(ends) == 1 and ends[0].duration_ms == 1240


def test_a_click_does_not_start_speech():
    f = calibrated()
    f.feed(VOICE, 1)
    assert f.vad.state is VadState.MAYBE_SPEECH
    f.feed(SILENT, 3)
    assert f.vad.state is VadState.SILENCE
    assert not [r for r in f.records if isinstance(r, SpeechStarted)]


def test_threshold_follows_the_calibrated_noise_floor():
    noise = tone(100)
    f = calibrated(noise)
    assert f.vad.noise_floor_rms == pytest.approx(rms(noise), rel=1e-12)   # µ-law makes the 100-RMS tone ~103
    assert f.vad.threshold_rms == pytest.approx(rms(noise) * 2.2 + 8, rel=1e-12)
    f.feed(tone(150), 10)                                # louder than the floor, under the threshold
    assert f.vad.state is VadState.SILENCE
    f.feed(tone(600), 5)
    assert f.vad.state is VadState.SPEECH


def test_max_utterance_forces_an_end():
    f = calibrated()
    for _ in range(CFG.max_utterance_ms // 40 + 1):     # a stuck VAD: voiced every other frame, no end
        f.feed(VOICE, 1)
        f.feed(SILENT, 1)
    ends = [r for r in f.records if isinstance(r, UtteranceEnded)]
    assert len(ends) == 1 and ends[0].forced


def test_minimum_threshold_applies_in_digital_silence():
    f = calibrated()
    assert f.vad.threshold_rms == CFG.threshold_min_rms
