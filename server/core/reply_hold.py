"""A preemptive reply with a hold: ask early, speak only when the caller has really finished.

Theory of operation. People pause 300-900 ms inside a sentence («אני צריך... אממ... התקנה של
מנעול»). Waiting that long before asking the model would add the whole wait to every answer; asking
at the 300 ms end of utterance lets the AI talk into the pause. So the reply is requested at the
end of utterance (no latency lost: the model thinks while the caller is silent), and its playout
events are *held* here, not sent to Twilio, until the caller has been silent for ``hold_ms`` since
the last voiced frame of the turn, and the line has been quiet that long (no frame above a quiet
level just over the noise floor: the VAD's threshold misses soft word endings and soft onsets),
or at the latest ``hold_max_ms`` after the end of speech. Then they are released in order. If the caller speaks again
first (speech of at least the minimum utterance: a click or a blip of noise only delays the
release), the hold is abandoned: the caller heard nothing, the core cancels the response and removes
its items from the conversation, and the real end of the turn asks for one new reply (through the
same guarded trigger: never two responses in flight).

``IDLE -> ARMED`` at the end of utterance (before ``response.created``), ``ARMED -> HOLDING`` when
the response is bound (``response.created``), ``HOLDING -> IDLE`` on release or when abandoned,
``ARMED -> IDLE`` when abandoned before the response was created, ``HOLDING -> ARMED`` when the
bound response had no audio but a tool follow-up was asked for (the follow-up is held instead). Times are caller-audio ms (the
end of the last voiced frame vs. the end of the latest inbound frame), so the hold is exact to a
frame and never reads a clock. Pure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class HoldState(Enum):
    IDLE = "IDLE"
    ARMED = "ARMED"
    HOLDING = "HOLDING"


_ALLOWED = {(HoldState.IDLE, HoldState.ARMED), (HoldState.ARMED, HoldState.HOLDING),
            (HoldState.HOLDING, HoldState.IDLE), (HoldState.ARMED, HoldState.IDLE),
            (HoldState.HOLDING, HoldState.ARMED)}


@dataclass(frozen=True)
class Released:
    response_id: str | None
    silence_ms: int
    held: tuple
    """The playout events kept back, oldest first."""

    @property
    def audio_ms(self) -> int:
        """The held audio (base64 deltas of 8 kHz µ-law), in ms."""
        return sum(len(e.audio_b64) * 3 // 4 // 8 for e in self.held if hasattr(e, "audio_b64"))


@dataclass(frozen=True)
class Abandoned:
    response_id: str | None
    """None: the response was not created yet."""
    pause_ms: int
    item_ids: tuple[str, ...]


@dataclass
class _Hold:
    speech_end_ms: int
    quiet_from_ms: int
    response_id: str | None = None
    events: list = field(default_factory=list)
    item_ids: list = field(default_factory=list)


class ReplyHold:
    def __init__(self, hold_ms: int, hold_max_ms: int | None = None) -> None:
        self.hold_ms = hold_ms
        self.hold_max_ms = max(hold_ms, hold_max_ms if hold_max_ms is not None else hold_ms)
        self.state = HoldState.IDLE
        self._hold: _Hold | None = None

    def _set(self, new: HoldState) -> None:
        if (self.state, new) not in _ALLOWED:
            raise AssertionError(f"hold transition {self.state} -> {new} not allowed")
        self.state = new

    # --- inputs -----------------------------------------------------------------------------

    def arm(self, speech_end_ms: int, last_audible_ms: int | None = None) -> None:
        """An end of utterance asked for a reply; ``speech_end_ms``: end of its last voiced frame,
        ``last_audible_ms``: end of the last frame above the quiet level (a soft tail the VAD's
        threshold missed). A hold still armed from an earlier turn (its trigger was skipped) is
        replaced."""
        if self.state is not HoldState.IDLE:
            self.cancel()
        self._set(HoldState.ARMED)
        self._hold = _Hold(speech_end_ms, max(speech_end_ms, last_audible_ms or 0))

    def bind(self, response_id: str) -> bool:
        """``response.created`` while armed: this is the held reply. True if it was bound."""
        if self.state is not HoldState.ARMED or self.hold_ms <= 0:
            return False
        self._set(HoldState.HOLDING)
        self._hold.response_id = response_id
        return True

    def holds(self, response_id: str) -> bool:
        return self.state is HoldState.HOLDING and self._hold.response_id == response_id

    def keep(self, response_id: str, event, item_id: str | None = None) -> None:
        """A playout event of the held response, kept back until release."""
        assert self.holds(response_id)
        self._hold.events.append(event)
        if item_id is not None and item_id not in self._hold.item_ids:
            self._hold.item_ids.append(item_id)

    def has_events(self) -> bool:
        return self.state is HoldState.HOLDING and bool(self._hold.events)

    def rearm(self) -> None:
        """The held response ended without audio (a tool call) and a follow-up was asked for: the
        follow-up's audio is held instead, against the same end of speech."""
        assert self.state is HoldState.HOLDING
        self._set(HoldState.ARMED)
        self._hold = _Hold(self._hold.speech_end_ms, self._hold.quiet_from_ms)

    def on_caller_audio(self, audio_end_ms: int, caller_silent: bool, audible: bool = False) -> Released | None:
        """Every inbound frame (and every held event, with the latest audio time): release once the
        line has been quiet for ``hold_ms`` (no frame above the quiet level: a soft tail or a soft
        onset of the caller's next words keeps the reply back), or at the latest ``hold_max_ms``
        after the end of speech (noise that keeps crossing the quiet level cannot hold it forever).
        Never while the VAD hears speech."""
        if self.state is HoldState.IDLE:
            return None
        if audible:
            self._hold.quiet_from_ms = audio_end_ms
        if self.state is not HoldState.HOLDING or not caller_silent:
            return None
        silence_ms = audio_end_ms - self._hold.speech_end_ms
        if audio_end_ms - self._hold.quiet_from_ms < self.hold_ms and silence_ms < self.hold_max_ms:
            return None
        hold, self._hold = self._hold, None
        self._set(HoldState.IDLE)
        return Released(hold.response_id, silence_ms, tuple(hold.events))

    def on_caller_resumed(self, audio_start_ms: int) -> Abandoned | None:
        """Speech again (``audio_start_ms``: its onset) before the release: the reply was never
        heard. Speech that began before the end of the held turn is that turn's, not a resumption."""
        if self.state is HoldState.IDLE or audio_start_ms < self._hold.speech_end_ms:
            return None
        hold, self._hold = self._hold, None
        self._set(HoldState.IDLE)
        return Abandoned(hold.response_id, audio_start_ms - hold.speech_end_ms, tuple(hold.item_ids))

    def cancel(self) -> None:
        """The reply went away on its own (failed, no audio, link lost): nothing to hold."""
        if self.state is not HoldState.IDLE:
            self._hold = None
            self._set(HoldState.IDLE)
