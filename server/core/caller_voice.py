"""Whose voice is it? The caller's, or the room's (a café's other voices, a crowd, a street).

Theory of operation. The caller talks into the phone; the other voices of a café reach it from
metres away, 10-20 dB under the caller. Two levels tell them apart, both in dB of int16 RMS:

* **The room** (``RoomLevel``): the level distribution of everything known not to be the caller,
  learnt from the line before anyone talks (the calibration), the frames between the caller's
  utterances (outside the echo window: the AI's echo is the echo detector's business) and every
  sound that turned out not to be the caller's (its frames are kept aside while it lasts and given
  to the room when it ends; the caller's own never are). Its loud level (90th percentile) raises
  the VAD's threshold by ``room_margin_db``: other voices stop counting as speech. A steady room
  (line hiss, a fan: under ``STEADY_ROOM_DB`` from frame to frame, where voices jump by 3-5 dB)
  counts at most ``room_cap_db`` over the VAD's noise floor: a handset's AGC pumps such a room up
  in a pause and backs off as the caller talks, and the floor follows it down at once. A room of
  voices is not capped: its quiet gaps pull the floor far under its loud level.
* **The caller**: the level of the utterances that were answered (the 75th percentile of their
  frames; the median of the last five). Once it is known, a sound more than ``caller_drop_db``
  under it is not the caller.

A sound is the caller's (``is_callers``) when its level is ``room_test_db`` over the room's loud
level (``room_test_known_db`` once the caller's level is known, which then does most of the
work) and not ``caller_drop_db`` under the caller's (``TRAIL_OFF_DB`` more within a turn: people
trail off by 10-15 dB within a sentence), unless it stands ``CLEAR_OF_ROOM_DB`` over the room: on a
quiet line nobody else is there, and a caller's soft word is theirs. A room heard for less than
``YOUNG_ROOM_FRAMES`` (the first seconds of a call) asks ``YOUNG_ROOM_DB`` more of the room test:
its loud level is still a guess. Otherwise it neither triggers a reply, nor
resumes a turn over a held reply (nor keeps the reply held), and it becomes part of the room.
Pure: levels in, thresholds and verdicts out.
"""
from __future__ import annotations

from collections import deque

from server.core.room_level import RoomLevel, level_db, rms_of
from server.core.turn_config import TurnConfig
from server.core.ulaw import FRAME_MS

UTTERANCE_PERCENTILE = 75
CALLER_LEVELS = 5
TRAIL_OFF_DB = 5
CLEAR_OF_ROOM_DB = 12
YOUNG_ROOM_FRAMES = 100                 # 2 s of the room
YOUNG_ROOM_DB = 3
STEADY_ROOM_DB = 1.5


class CallerVoice:
    def __init__(self, cfg: TurnConfig, enabled: bool = True) -> None:
        """``enabled=False``: every sound is the caller's and no threshold moves (another detector
        decides what is voiced: ``scripts/bench_vad.py`` measures it under the same rules)."""
        self.cfg = cfg
        self.enabled = enabled
        self.room = RoomLevel(cfg.room_window_ms // FRAME_MS)
        self._sound: list[float] = []          # the current sound's frames outside the echo window (dB)
        self._levels: deque[float] = deque(maxlen=CALLER_LEVELS)
        self._cap = rms_of(cfg.room_cap_db)
        self.voiced_over_room = rms_of(cfg.room_margin_db)
        """A voiced frame's least RMS over ``room_loud_rms`` (a factor)."""
        self.barge_over_room = rms_of(cfg.room_margin_db + cfg.barge_room_db)
        """The same for the caller's sound over the AI."""

    # --- levels -----------------------------------------------------------------------------

    @property
    def caller_db(self) -> float | None:
        """The caller's level (median of the last answered utterances), None until one was answered."""
        if not self._levels:
            return None
        ordered = sorted(self._levels)
        return ordered[len(ordered) // 2]

    def room_loud_rms(self, vad_floor_rms: float) -> float:
        """How loud the room gets (0 while unknown), at most ``room_cap_db`` over the VAD's floor."""
        if not self.enabled:
            return 0.0
        if self.room.roughness_db < STEADY_ROOM_DB:
            return min(self.room.loud_rms, vad_floor_rms * self._cap)
        return self.room.loud_rms

    def voiced_min_rms(self, vad_floor_rms: float) -> float:
        """The least RMS a frame needs to be voiced, whatever the VAD's own threshold says."""
        return self.room_loud_rms(vad_floor_rms) * self.voiced_over_room

    def barge_min_rms(self, vad_floor_rms: float) -> float:
        """The least RMS of a frame of the caller's sound over the AI (0 on a quiet line)."""
        return self.room_loud_rms(vad_floor_rms) * self.barge_over_room

    @staticmethod
    def sound_level_db(frame_rms: list[float]) -> float:
        """The level of a sound: the 75th percentile of its frames' RMS, in dB."""
        ordered = sorted(frame_rms)
        return level_db(ordered[len(ordered) * UTTERANCE_PERCENTILE // 100]) if ordered else 0.0

    def is_callers(self, sound_db: float, vad_floor_rms: float, within_turn: bool = False) -> bool:
        """``within_turn``: the sound goes on a turn the caller has just taken (over a held reply, or
        after one): people trail off within a sentence, so it may be ``TRAIL_OFF_DB`` softer still."""
        if not self.enabled:
            return True
        caller = self.caller_db
        room = self.room_loud_rms(vad_floor_rms)
        margin = self.cfg.room_test_db if caller is None and not within_turn else self.cfg.room_test_known_db
        if self.room.frames < YOUNG_ROOM_FRAMES:
            margin += YOUNG_ROOM_DB           # a room heard for under a second: its loud level is a guess
        if room > 0 and sound_db < level_db(room) + margin:
            return False
        if caller is None or sound_db >= level_db(room) + CLEAR_OF_ROOM_DB:
            return True                  # no voice of the room is that loud: a quiet line, or the caller softer
        drop = self.cfg.caller_drop_db + (TRAIL_OFF_DB if within_turn else 0)
        return sound_db >= caller - drop

    def speech_energy(self, energy: float) -> float:
        """A frame's energy as the speech-likeness veto measures it: less the room's mean."""
        return self.room.above(energy) if self.enabled else energy

    # --- what the frames were ---------------------------------------------------------------

    def on_frame(self, frame_db: float, audio_end_ms: int, in_window: bool, in_sound: bool) -> None:
        """Every caller frame. ``in_sound``: the VAD is (or was, before this frame) out of SILENCE."""
        if not self.enabled:
            return
        if audio_end_ms <= self.cfg.calibration_ms:
            self.room.add(frame_db)              # the line before anyone talks: the room as it is
        elif in_window:
            return                               # the AI's echo: not the room's level
        elif in_sound:
            self._sound.append(frame_db)
        else:
            self.room.add(frame_db)

    def sound_ended(self, room: bool) -> None:
        """The VAD went back to SILENCE; ``room``: the sound was not the caller's (its frames join
        the room). The caller's sounds, and short ones that were loud like the caller, do not."""
        if room:
            for db in self._sound:
                self.room.add(db)
        self._sound = []

    def answered(self, sound_db: float) -> None:
        """An utterance of this level was answered: it was the caller."""
        self._levels.append(sound_db)
