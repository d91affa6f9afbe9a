"""Whose voice is it (``server.core.caller_voice``, ``server.core.room_level``): pure, on levels in dB."""
import math

import numpy as np

from server.core.caller_voice import CLEAR_OF_ROOM_DB, TRAIL_OFF_DB, CallerVoice
from server.core.room_level import RoomLevel, level_db, rms_of
from server.core.turn_config import TurnConfig

CFG = TurnConfig()
AFTER_CALIBRATION_MS = CFG.calibration_ms + 20


def babble(n: int, median_db: float = 50.0, seed: int = 1) -> list[float]:
    """Frame levels of other voices: jumping 3-5 dB from frame to frame, 10 dB from p10 to p90."""
    rng = np.random.default_rng(seed)
    return list(median_db + rng.normal(0, 4.0, n))


def hiss(n: int, db: float = 30.0, seed: int = 2) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(db + rng.normal(0, 0.3, n))


def voice_with_room(levels: list[float]) -> CallerVoice:
    voice = CallerVoice(CFG)
    for k, db in enumerate(levels):
        voice.on_frame(db, AFTER_CALIBRATION_MS + 20 * k, in_window=False, in_sound=False)
    return voice


def test_the_room_level_is_a_percentile_of_what_it_was_given():
    room = RoomLevel(window_frames=150)
    for db in range(100):
        room.add(float(db % 50))                    # 0..49 twice
    assert room.loud_db == 45.0                     # the 90th percentile
    assert math.isclose(room.loud_rms, rms_of(45.0))
    assert room.roughness_db > 1.0
    assert math.isclose(room.mean_energy, sum(10 ** ((d % 50) / 10) for d in range(100)) / 100)
    assert room.above(10 * room.mean_energy) == 9 * room.mean_energy     # less the room's mean
    assert room.above(room.mean_energy / 2) == room.mean_energy / 40     # never under a twentieth of its own


def test_a_room_of_voices_raises_the_voiced_minimum_to_over_its_loud_level():
    levels = babble(150)
    voice = voice_with_room(levels)
    loud = voice.room.loud_db
    assert loud == sorted(levels)[135]              # the 90th percentile of the voices' frames
    floor_rms = rms_of(40.0)                        # the VAD's floor sits in the voices' gaps
    assert math.isclose(level_db(voice.voiced_min_rms(floor_rms)), level_db(rms_of(loud)) + CFG.room_margin_db,
                        abs_tol=0.01)
    assert voice.barge_min_rms(floor_rms) > voice.voiced_min_rms(floor_rms)


def test_a_steady_room_is_capped_by_the_vad_floor_an_agc_that_backs_off():
    voice = voice_with_room(hiss(150, db=57.0))     # pink noise pumped up in a pause
    floor_rms = rms_of(44.0)                        # the caller talks: the AGC backed off, the floor followed
    assert math.isclose(voice.room_loud_rms(floor_rms), floor_rms * rms_of(CFG.room_cap_db))
    voices = voice_with_room(babble(150, median_db=53.0))
    assert math.isclose(voices.room_loud_rms(floor_rms), voices.room.loud_rms)   # voices are not capped


def test_the_room_learns_only_from_what_is_not_the_caller():
    voice = CallerVoice(CFG)
    voice.on_frame(30.0, 20, in_window=False, in_sound=True)              # calibration: always the room
    for k in range(30):
        voice.on_frame(30.0, AFTER_CALIBRATION_MS + 20 * k, in_window=False, in_sound=False)
    assert voice.room.loud_db == 30.0
    for k in range(30):
        voice.on_frame(80.0, 2000 + 20 * k, in_window=True, in_sound=False)   # the AI's echo: never
    for k in range(30):
        voice.on_frame(70.0, 3000 + 20 * k, in_window=False, in_sound=True)   # the caller: kept aside
    voice.sound_ended(room=False)
    for k in range(5):
        voice.on_frame(30.0, 4000 + 20 * k, in_window=False, in_sound=False)
    assert voice.room.loud_db == 30.0
    for k in range(30):
        voice.on_frame(45.0, 5000 + 20 * k, in_window=False, in_sound=True)   # a sound of the room
    voice.sound_ended(room=True)
    for k in range(5):
        voice.on_frame(30.0, 6000 + 20 * k, in_window=False, in_sound=False)
    assert voice.room.loud_db == 45.0


def test_is_callers_by_the_room_then_by_the_callers_own_level():
    voice = voice_with_room(babble(150))
    floor_rms = rms_of(40.0)
    room = level_db(voice.room_loud_rms(floor_rms))
    assert not voice.is_callers(room + CFG.room_test_db - 0.5, floor_rms)   # near the room: not the caller
    assert voice.is_callers(room + CFG.room_test_db + 0.5, floor_rms)
    voice.answered(room + 10)                                               # the caller speaks 10 dB over it
    assert voice.caller_db == room + 10
    assert voice.is_callers(room + CFG.room_test_known_db + 0.5, floor_rms)  # known caller: a smaller margin
    assert not voice.is_callers(room + CFG.room_test_known_db - 0.5, floor_rms)
    voice = voice_with_room(babble(150))
    voice.answered(room + 20)                                               # a loud caller
    low = room + 20 - CFG.caller_drop_db - 1
    assert not voice.is_callers(low, floor_rms)                             # far under the caller: the room's
    assert voice.is_callers(low, floor_rms, within_turn=True)               # trailing off within a turn
    assert not voice.is_callers(room + 20 - CFG.caller_drop_db - TRAIL_OFF_DB - 1, floor_rms, within_turn=True)


def test_on_a_quiet_line_a_soft_word_is_the_callers():
    voice = voice_with_room(hiss(150, db=25.0))
    floor_rms = rms_of(25.0)
    voice.answered(65.0)
    soft = level_db(voice.room_loud_rms(floor_rms)) + CLEAR_OF_ROOM_DB + 1      # 20+ dB under the caller
    assert soft < 65.0 - CFG.caller_drop_db
    assert voice.is_callers(soft, floor_rms)


def test_disabled_it_judges_nothing():
    voice = CallerVoice(CFG, enabled=False)
    for k in range(100):
        voice.on_frame(50.0, 20 * k, in_window=False, in_sound=False)
    assert voice.voiced_min_rms(rms_of(40.0)) == 0.0 and voice.barge_min_rms(1.0) == 0.0
    assert voice.is_callers(0.0, 1.0)
    assert voice.speech_energy(123.0) == 123.0


def test_the_level_of_a_sound_is_its_75th_percentile():
    assert CallerVoice.sound_level_db([rms_of(float(x)) - 1 for x in range(1, 101)]) == 76.0
    assert CallerVoice.sound_level_db([]) == 0.0
