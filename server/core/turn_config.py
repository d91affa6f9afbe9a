"""Every threshold of turn-taking in one frozen object, integers with units in their names.

``server.settings`` overrides any field from the environment as ``TURN_<FIELD_NAME_UPPER>``
(e.g. ``TURN_MIN_UTTERANCE_MS=350``). The README's configuration table lists them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TurnConfig:
    # --- caller VAD (per 20 ms frame, int16 RMS of the decoded µ-law) ---
    calibration_ms: int = 400
    """Noise floor is the mean frame RMS over the first this-many ms of caller audio."""
    threshold_min_rms: int = 35
    """Voiced-frame threshold is max(threshold_min_rms, floor * ratio/100 + offset)."""
    threshold_ratio_pct: int = 220
    """Noise-floor multiplier of the threshold, in percent (220 = x2.2)."""
    threshold_offset_rms: int = 8
    """Added to the scaled noise floor."""
    speech_confirm_ms: int = 60
    """MAYBE_SPEECH becomes SPEECH after this much voiced audio (hysteresis against clicks)."""
    maybe_speech_gap_ms: int = 40
    """Unvoiced audio tolerated inside MAYBE_SPEECH before falling back to SILENCE."""
    eou_silence_ms: int = 300
    """Continuous silence after the last voiced frame that ends an utterance."""
    min_utterance_ms: int = 300
    """Shorter utterances are skipped (never above 600: longer minimums lost real answers)."""
    speech_min_modulation_db: int = 4
    """An utterance whose 20 ms frame energies vary less than this (std, dB) is steady sound, not speech: no trigger."""
    speech_veto_min_ms: int = 800
    """The speech-likeness veto judges utterances this long or longer: a short word («כן», "ask") can be
    one sustained vowel, and the room test judges short sounds."""
    max_utterance_ms: int = 30000
    """Safety: a VAD stuck in SPEECH forces an end of utterance after this long."""
    floor_window_ms: int = 1500
    """Window of the minimum statistic that raises the noise floor under long swelling noise."""
    floor_percentile: int = 10
    """Percentile of the window's frame RMS taken as the minimum statistic."""
    floor_track_pct: int = 5
    """Weight of a silent frame in the running noise floor after calibration (EMA, percent)."""
    # --- whose voice: the room and the caller (server/core/caller_voice.py) ---
    room_window_ms: int = 3000
    """The room's level distribution is kept over this much of its most recent frames."""
    room_margin_db: int = 2
    """A frame must be this much louder than the room's loud level (90th percentile) to be voiced."""
    room_cap_db: int = 8
    """The room's loud level counts at most this much over the VAD's noise floor (an AGC that pumped
    the room up in a pause backs off as the caller talks; the floor follows at once)."""
    room_test_db: int = 5
    """An utterance (75th percentile of its frames) this far over the room's loud level is the caller's,
    while the caller's own level is not known yet."""
    room_test_known_db: int = 3
    """The same once the caller's level is known (from the utterances answered)."""
    caller_drop_db: int = 10
    """A sound more than this under the caller's level is not the caller."""
    barge_room_db: int = 3
    """Caller sound over the AI must be this much over the room's voiced minimum."""
    # --- echo protection and barge-in ---
    echo_window_ms: int = 500
    """Caller frames are not forwarded while AI audio plays and this long after the last AI frame."""
    echo_max_lag_ms: int = 500
    """Longest echo delay searched (line delay + our TX lead + the caller's playout buffer)."""
    echo_learn_window_ms: int = 600
    """Envelope window the echo path (lag, gain) is estimated over."""
    echo_margin_db: int = 5
    """A frame louder than the predicted echo by this much is the caller, not echo."""
    echo_min_corr_pct: int = 70
    """Envelope correlation needed to trust an echo lag."""
    barge_in_min_ms: int = 120
    """Caller speech not explained by echo, sustained this long over the AI, pauses its playout at once
    (in the echo tail after the AI spoke: opens the gate for the caller's speech)."""
    barge_in_confirm_ms: int = 460
    """A sound over the paused AI that lasts this long is a barge-in (cancel, clear, truncate); shorter
    ones («כן», «אהה», a cough: up to 400 ms) are backchannels and the AI resumes where it paused."""
    backchannel_resume_ms: int = 200
    """A paused AI resumes after this much caller quiet (a backchannel ended), nothing lost."""
    onset_modulation_pct: int = 40
    """Caller sound pauses the AI only if its last 160 ms vary by this percentage of
    speech_min_modulation_db (a word's onset does; noise swelling past the threshold does not)."""
    backchannel_max_ms: int = 600
    """A sound over the paused AI that goes on this long from its onset (soft stretches included) is a
    barge-in too, however few of its frames were loud."""
    barge_in_ratio_pct: int = 400
    """Caller frames over the AI count only above noise_floor * this/100 + barge_in_offset_rms: 12 dB over
    the floor, where the VAD needs 7. Other voices in the room (a cafe's babble, 10-15 dB under the
    caller) peak past the VAD's threshold; the caller's own syllables clear this one."""
    barge_in_offset_rms: int = 10
    """Added to the scaled noise floor for barge-in frames."""
    pre_roll_ms: int = 300
    """Caller audio forwarded before the onset of an utterance (and of real speech when the echo gate opens)."""
    append_batch_ms: int = 200
    """Caller audio per ``input_audio_buffer.append`` (the rest of an utterance goes at its end, before its commit)."""
    reply_hold_ms: int = 760
    """The reply to a caller turn is requested at the end of utterance, but its audio reaches the caller
    only after this much caller silence: a thinking pause shorter than this is never talked over; a
    caller who resumes inside it gets the unheard reply cancelled and removed, and one reply later."""
    reply_hold_max_ms: int = 900
    """The held reply plays at the latest this long after the end of speech, even if the line never
    went quiet (noise that keeps crossing the quiet level)."""
    hold_quiet_ratio_pct: int = 150
    """During the hold a frame above noise_floor * this/100 + hold_quiet_offset_rms is not quiet (a
    soft word ending or onset the VAD's threshold misses): the hold counts from after it."""
    hold_quiet_offset_rms: int = 4
    """Added to the scaled noise floor for the quiet level of the hold."""
    # --- response lifecycle ---
    response_created_timeout_ms: int = 2500
    """No response.created this long after response.create -> pending cleared (never re-sent)."""
    no_audio_timeout_ms: int = 7000
    """No AI audio this long after an end of utterance -> back to LISTENING."""
    drain_poll_ms: int = 50
    """Period of the drain check while one is pending (the call's timer wakes this often then, not otherwise)."""
    drain_timeout_ms: int = 500
    """The AI stops counting as speaking at the latest this long after its queued audio should have played."""
    tts_tail_silence_ms: int = 200
    """µ-law silence appended after a response's last frame, before the assistant_tts_end mark."""
    status_interval_ms: int = 2500
    """Period of the [PIPELINE STATUS] line."""
    max_turns: int = 40
    """Safety net only: the call ends after this many caller turns."""
    # --- silence and hangup ---
    silence_timeout_ms: int = 8000
    """Caller silence after the AI finished before a silence prompt (then before the goodbye)."""
    max_silence_warnings: int = 1
    """Silence prompts before the polite goodbye and hangup."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def threshold_rms(self, noise_floor_rms: float) -> float:
        return max(float(self.threshold_min_rms),
                   noise_floor_rms * self.threshold_ratio_pct / 100.0 + self.threshold_offset_rms)
