"""The barge-in judge (``server.core.barge_in``) on fake time: a backchannel is measured on the
caller's own sound, a barge-in still interrupts."""
from server.core.barge_in import BargeInJudge, Interrupt, Pause, Resume
from server.core.turn_config import TurnConfig

CFG = TurnConfig()


def judge() -> BargeInJudge:
    return BargeInJudge(CFG.barge_in_min_ms, CFG.barge_in_confirm_ms, CFG.backchannel_resume_ms,
                        CFG.backchannel_max_ms, CFG.speech_min_modulation_db,
                        CFG.speech_min_modulation_db * CFG.onset_modulation_pct / 100)


def play(j: BargeInJudge, frames: list[tuple[bool, float]], start_ms: int = 1000) -> list[tuple[int, object]]:
    out = []
    for k, (near_end, db) in enumerate(frames):
        verdict = j.on_frame(near_end, start_ms + 20 * k, db)
        if verdict is not None:
            out.append((start_ms + 20 * k, verdict))
    return out


def word(ms: int) -> list[tuple[bool, float]]:
    """A syllable-like sound: rising, loud, falling (60-72 dB)."""
    n = ms // 20
    return [(True, 60.0 + 12.0 * min(1.0, 3 * min(k + 1, n - k) / n)) for k in range(n)]


QUIET = (False, 40.0)


def test_a_340ms_sound_with_strays_before_and_a_soft_tail_after_is_a_backchannel():
    frames = ([QUIET] * 10 + [(True, 66.0), (True, 64.0)] + [QUIET] * 3      # two stray frames, then a gap
              + word(340)
              + [(True, 45.0)] * 8                                           # echo tail / breath: 25 dB under
              + [QUIET] * 15)
    verdicts = play(judge(), frames)
    kinds = [type(v) for _, v in verdicts]
    assert kinds == [Pause, Resume], verdicts
    pause, resume = verdicts[0][1], verdicts[1][1]
    assert pause.sound_ms == 80                 # the strays brought the pause forward, but are not the sound
    assert resume.sound_ms == 340 and not resume.steady                     # the caller's sound only


def test_sustained_speech_with_soft_stretches_interrupts_at_the_confirm_length():
    speech = (word(200) + [(True, 58.0)] * 3) * 4                           # soft stretches 14 dB under the peaks
    verdicts = play(judge(), [QUIET] * 10 + speech)
    assert [type(v) for _, v in verdicts][:2] == [Pause, Interrupt], verdicts
    onset_ms = 1000 + 10 * 20
    assert verdicts[1][0] - onset_ms < CFG.barge_in_confirm_ms + 60
    assert verdicts[1][1].sound_ms >= CFG.barge_in_confirm_ms
