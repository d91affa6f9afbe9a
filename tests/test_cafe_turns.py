"""A caller in a café, on fake time: other voices around the caller (3-5 dB from frame to frame,
15 dB from their quiet to their loud frames) neither make a turn, nor resume one over a held reply,
nor hold the reply back (``server.core.caller_voice`` in the call core)."""
import base64

import numpy as np

from server.core import realtime_protocol as rt
from server.core.events import CommitAndTrigger, QueueAssistantAudio
from tests.audio_helpers import VOICE, tone
from tests.test_call_core import CFG, Call, ask, notes

RNG = np.random.default_rng(7)
CAFE = [tone(float(r)) for r in 10 ** (RNG.uniform(np.log10(150), np.log10(900), 400))]   # 43-59 dB
LOUD = tone(4000.0)
CALLER = [LOUD, LOUD, LOUD, tone(1500.0), tone(1500.0), tone(2500.0)]          # 64-72 dB: close to the phone


def cafe(call: Call, frames: int, offset: int = 0) -> list:
    return call.frames(CAFE[offset:] + CAFE[:offset], frames)


def test_the_cafe_alone_makes_no_turn():
    call = Call()
    cafe(call, 500)                                             # 10 s of voices, nobody talking to us
    assert not any(isinstance(a, CommitAndTrigger) for a in call.actions)
    assert call.core.stats.turns == 0


def test_a_held_reply_is_not_held_hostage_and_voices_do_not_resume_the_turn():
    call = Call()
    cafe(call, 150)
    call.frames(CALLER, 60)                                     # 1.2 s question
    eou = cafe(call, CFG.eou_silence_ms // 20, offset=37)
    assert any(isinstance(a, CommitAndTrigger) for a in eou)
    speech_end_ms = call.audio_ms - CFG.eou_silence_ms
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(rt.AudioDelta("resp_1", "item_1", base64.b64encode(VOICE * 50).decode()))
    released_at = None
    for k in range(100):                                        # the café goes on
        out = cafe(call, 1, offset=(60 + k) % 400)
        if any(isinstance(a, QueueAssistantAudio) for a in out):
            released_at = call.audio_ms
            break
    assert released_at is not None and released_at - speech_end_ms <= CFG.reply_hold_max_ms + 20
    assert not any("caller resumed" in n for n in notes(call.actions))
    assert call.core.stats.turns == 1
