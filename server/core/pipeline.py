"""The call's pipeline: LISTENING, PROCESSING (an answer asked for), SPEAKING (the AI audible).

The table computes the next state from the state and the cause of the move, as h11's
``_state.py`` does: the caller of ``move`` says *why* (an end of utterance, a response's first
audio, a barge-in...), never *where to*. A (state, cause) pair missing from the table is a bug in
the core, and raises ``ForbiddenTransition`` in production as in tests: a call in a state the
table does not know would answer wrongly for the rest of its life. Pairs that leave the state as
it is are listed too (a second utterance while an answer is being prepared), so the table is the
complete list of what can happen.
"""
from __future__ import annotations

from enum import Enum


class Pipeline(Enum):
    LISTENING = "LISTENING"
    PROCESSING = "PROCESSING"
    SPEAKING = "SPEAKING"


class Cause(Enum):
    """Why the pipeline moves."""
    GREETING = "greeting"
    UTTERANCE = "end of utterance"
    TOOL = "tool answer"
    PROMPT = "silence prompt or goodbye"
    FIRST_AUDIO = "first audio"
    NO_AUDIO = "response ended without audio or a watchdog gave up"
    RESUMED = "caller resumed during the hold"
    BARGE_IN = "barge-in"
    PLAYED = "played to the end"


class ForbiddenTransition(RuntimeError):
    pass


_L, _P, _S = Pipeline.LISTENING, Pipeline.PROCESSING, Pipeline.SPEAKING
NEXT: dict[tuple[Pipeline, Cause], Pipeline] = {
    (_L, Cause.GREETING): _P, (_P, Cause.GREETING): _P,     # a caller who spoke before the session was ready
    # the caller's turn: also over a reply whose first frames are queued but not heard yet, and
    # while an earlier turn's answer is still being prepared (or during a reconnection)
    (_L, Cause.UTTERANCE): _P, (_S, Cause.UTTERANCE): _P, (_P, Cause.UTTERANCE): _P,
    (_L, Cause.TOOL): _P, (_S, Cause.TOOL): _P, (_P, Cause.TOOL): _P,
    (_L, Cause.PROMPT): _P,                       # a prompt or goodbye never over an AI speaking
    (_L, Cause.FIRST_AUDIO): _S, (_P, Cause.FIRST_AUDIO): _S, (_S, Cause.FIRST_AUDIO): _S,
    (_P, Cause.NO_AUDIO): _L, (_S, Cause.NO_AUDIO): _L,
    (_P, Cause.RESUMED): _L,
    (_S, Cause.BARGE_IN): _L, (_P, Cause.BARGE_IN): _L, (_L, Cause.BARGE_IN): _L,
    (_S, Cause.PLAYED): _L,
}
"""Forbidden, among others: a greeting, silence prompt or goodbye over an AI that is speaking;
SPEAKING from anything but a response's first audio; LISTENING on a response's end while idle."""


class PipelineMachine:
    def __init__(self) -> None:
        self.state = Pipeline.LISTENING

    def move(self, cause: Cause, detail: str = "") -> Pipeline | None:
        """Apply ``cause``; the new state when it changed, else None."""
        new = NEXT.get((self.state, cause))
        if new is None:
            raise ForbiddenTransition(f"{self.state.value} on {cause.value} ({detail})")
        if new is self.state:
            return None
        self.state = new
        return new
