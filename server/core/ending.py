"""How a call ends (pure): its reasons, the ending machine, and the ``Ending`` it leaves.

``ACTIVE`` while the call goes on; ``CLOSING`` once the call is to end after the AI's current line
has played (the goodbye after a lead, the silence limit, the turn limit, a draining server, a
transfer to a person: ``after_playout`` says which); ``ENDED`` once the core said ``HangUp`` or
``TransferCall``. A transfer replaces any other reason to close (a person comes first); the first
of the others stays. A draining server asks for the goodbye once the call is idle and gives it
``SHUTDOWN_GOODBYE_LIMIT_MS`` at most.

``Ending`` is the call's end as one value, made by ``CallCore.finish``: how it ended (completed by
the agent, transferred, failed, the caller left), the reason, the lead to write, whether the owner's
summary is wanted. The shell turns it into Twilio's steps (``server.call.ending``) and records.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from server.core.events import CoreAction, HangUp, TransferCall, note
from server.leads.capture import LeadSnapshot

TRANSFERRED = "transferred"                # the hangup reason of a call handed to a person
MODEL_FAILING = "realtime_failing"         # the hangup reason of a model that fails every response
FAILURE_REASONS = frozenset({"realtime_unavailable", "realtime_closed", MODEL_FAILING, "model_unavailable"})
"""Hangup reasons after which the caller hears the fallback message."""
CALLER_HUNG_UP = "caller_hung_up"
SHUTDOWN_GOODBYE_LIMIT_MS = 20000          # under gunicorn's graceful_timeout (25 s)


class EndKind(Enum):
    COMPLETED = "completed"        # the agent ended it: goodbye, silence limit, turn limit, a draining server
    TRANSFERRED = "transferred"
    FAILED = "failed"              # the caller hears the fallback message
    CALLER_LEFT = "caller_left"


class EndPhase(Enum):
    ACTIVE = "ACTIVE"
    CLOSING = "CLOSING"
    ENDED = "ENDED"


_A, _C, _E = EndPhase.ACTIVE, EndPhase.CLOSING, EndPhase.ENDED
NEXT: dict[tuple[EndPhase, str], EndPhase] = {
    (_A, "close"): _C, (_C, "close"): _C,
    (_A, "end"): _E, (_C, "end"): _E,
}
"""Forbidden: anything once ``ENDED``."""


class ForbiddenEndingMove(RuntimeError):
    pass


@dataclass
class CallStats:
    frames_sent: int = 0
    frames_blocked: int = 0
    turns: int = 0
    responses_created: int = 0
    barge_ins: int = 0
    errors: Counter = field(default_factory=Counter)
    dropped_deltas: int = 0
    skipped_utterances: int = 0
    echo_blocked_utterances: int = 0
    vetoed_utterances: int = 0
    room_utterances: int = 0
    """Utterances that were the room's (other voices, a street), not the caller's: not answered."""
    latencies_ms: list = field(default_factory=list)
    """Caller's last voiced frame -> first AI audio released to the caller, per answered caller turn."""
    eou_to_create_ms: list = field(default_factory=list)
    """Caller's last voiced frame -> ``response.create`` sent, per caller turn."""
    played_latencies_ms: list = field(default_factory=list)
    """Caller's last voiced frame -> the answer's first frame sent to Twilio, per answered caller turn."""
    tool_calls: int = 0
    pauses: int = 0
    backchannels: int = 0
    resumed_turns: int = 0
    """Replies requested at an end of utterance and abandoned unheard because the caller went on."""
    tokens: Counter = field(default_factory=Counter)
    """The model's usage of every response of the call, by kind (``realtime_protocol.TOKEN_KINDS``)."""
    abandoned_tokens: Counter = field(default_factory=Counter)
    """Of those, the replies abandoned unheard in a hold: paid for, never heard."""
    transcription_s: float = 0.0
    transcription_tokens: int = 0


@dataclass(frozen=True)
class Ending:
    kind: EndKind
    hangup_reason: str
    outcome: str
    """``lead_captured``, ``partial_lead``, ``no_lead`` or ``failed``."""
    lead: LeadSnapshot | None
    """The lead as it stands (complete, or partial when the caller left first or the call failed)."""
    lead_to_write: LeadSnapshot | None
    """What the call's end must still store: the lead, unless a complete one was written already."""
    stats: CallStats
    transcript: tuple[tuple[str, str], ...]
    timeline: dict = field(default_factory=dict)
    """The call's picture as data (``server.core.timeline``), stored with the call."""
    asked_for_person: bool = False
    """The caller asked for a person (the tool or the keypad), transferred or not."""
    transfer_reason: str | None = None
    summary_wanted: bool = False
    """The model link is still up and the call did not fail: the owner's summary can be asked."""

    @property
    def failed(self) -> bool:
        return self.kind is EndKind.FAILED


class CallEnding:
    def __init__(self, transfer_allowed: bool) -> None:
        self.phase = EndPhase.ACTIVE
        self.transfer_allowed = transfer_allowed
        self.after_playout: str | None = None
        """The reason the call ends once the AI's current line has played."""
        self.reason: str | None = None
        """The core's hangup reason, once it hung up or transferred."""
        self.transfer_reason = ""
        self.asked_for_person = False
        self.shutdown_at_ms: int | None = None

    def _move(self, event: str) -> None:
        new = NEXT.get((self.phase, event))
        if new is None:
            raise ForbiddenEndingMove(f"{self.phase.value} on {event}")
        self.phase = new

    @property
    def ended(self) -> bool:
        return self.phase is EndPhase.ENDED

    @property
    def winding_up(self) -> bool:
        """The call is to end (after the current line) or has ended: no new caller turn is answered."""
        return self.phase is not EndPhase.ACTIVE

    def close_after_playout(self, reason: str) -> bool:
        """End the call once the AI's current line has played; the first reason stays (a transfer
        replaces it). False when the call is already ending."""
        if self.ended or (self.after_playout is not None and reason != TRANSFERRED):
            return False
        self._move("close")
        self.after_playout = reason
        return True

    def ask_for_person(self, reason: str, out: list[CoreAction]) -> bool:
        """The caller wants a person: transfer after the AI's next line where allowed. True if so."""
        self.asked_for_person = True
        if not self.person_available:
            why = "the call is ending" if self.ended else "transfers are not allowed now"
            out.append(note('INFO', 'transfer_unavailable', reason=reason, why=why))
            return False
        self.transfer_reason = reason
        self.close_after_playout(TRANSFERRED)      # over a goodbye or a lead's end: a person comes first
        out.append(note('INFO', 'transfer_requested', reason=reason))
        return True

    @property
    def person_available(self) -> bool:
        return self.transfer_allowed and not self.ended

    def hang_up(self, reason: str, lead_captured: bool, out: list[CoreAction], announce: bool = True) -> bool:
        """Say ``HangUp`` (or ``TransferCall``) once; False when the call had ended already.
        ``announce=False``: the model link gave up, already logged (no smart-hangup lines)."""
        if self.ended:
            return False
        self._move("end")
        self.reason = reason
        if reason == TRANSFERRED:
            out.append(note('INFO', 'transfer_now', reason=self.transfer_reason))
            out.append(TransferCall(self.transfer_reason))
            return True
        if announce:
            out.append(note('INFO', 'hangup', reason=reason))
            out.append(note('INFO', 'hangup_lead', lead_captured=lead_captured))
        out.append(HangUp(reason))
        return True

    def shutdown(self, now_ms: int) -> bool:
        """The server drains: True the first time."""
        if self.shutdown_at_ms is not None:
            return False
        self.shutdown_at_ms = now_ms
        return True

    def shutdown_deadline_ms(self) -> int | None:
        if self.shutdown_at_ms is None or self.ended:
            return None
        return self.shutdown_at_ms + SHUTDOWN_GOODBYE_LIMIT_MS

    def kind_of(self, stream_end_reason: str | None) -> tuple[EndKind, str]:
        """How the call ended: the stream's own end (``stream_end_reason``: the caller hung up, the
        socket or the model went away) when it came first, else the core's decision."""
        reason = stream_end_reason or self.reason or CALLER_HUNG_UP
        if reason in FAILURE_REASONS:
            return EndKind.FAILED, reason
        if reason == TRANSFERRED:
            return EndKind.TRANSFERRED, reason
        if stream_end_reason is None and self.reason is not None:
            return EndKind.COMPLETED, reason
        return EndKind.CALLER_LEFT, reason

    def finish(self, stream_end_reason: str | None, lead, complete_lead_written: bool, stats: CallStats,
               transcript: tuple, timeline: dict, link_up: bool) -> Ending:
        """The call's ``Ending``: how it ended, its outcome, the lead to keep and what is left to write."""
        kind, reason = self.kind_of(stream_end_reason)
        outcome, kept = "no_lead", None
        if lead is not None and lead.complete:
            outcome, kept = "lead_captured", lead.snapshot()
        elif lead is not None and lead.has_content:
            outcome, kept = "partial_lead", lead.snapshot()
        if kind is EndKind.FAILED and outcome != "lead_captured":
            outcome = "failed"               # the lead so far is kept all the same
        to_write = kept if kept is not None and (kept.status != "complete" or not complete_lead_written) else None
        return Ending(kind, reason, outcome, kept, to_write, stats, transcript, timeline, self.asked_for_person,
                      self.transfer_reason if kind is EndKind.TRANSFERRED else None,
                      summary_wanted=kind is not EndKind.FAILED and link_up)


def apologise_after_stream(record: tuple[str, str | None, bool] | None) -> bool:
    """After the stream closed: apologise when the call failed, or was answered but its stream never
    ended normally (the instance carrying it died); a call no instance recorded just hangs up.
    ``record``: (outcome, hangup reason, ended) from the call's shared record."""
    if record is None:
        return False
    outcome, reason, ended = record
    return not ended or outcome == "failed" or reason in FAILURE_REASONS


def after_stream_action(record: tuple[str, str | None, bool] | None) -> str:
    """What Twilio's after-stream request gets, from the call's record: ``apologise``, ``transfer``
    (the call ended to be handed to a person and was not redirected through the REST API) or
    ``hangup``."""
    if apologise_after_stream(record):
        return "apologise"
    return "transfer" if record is not None and record[1] == TRANSFERRED else "hangup"
