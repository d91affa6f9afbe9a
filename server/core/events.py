"""Inputs (facts) and outputs (verbs) of the call core. All frozen; all times in integer ms."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from server.core import log_lines
from server.core import realtime_protocol as rt
from server.leads.capture import LeadSnapshot

# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallerFrame:
    audio: bytes
    audio_end_ms: int
    """End of this frame in caller-audio time (frames x 20 ms since the stream started)."""
    now_ms: int


@dataclass(frozen=True)
class RealtimeReceived:
    event: rt.ServerEvent
    now_ms: int


@dataclass(frozen=True)
class AssistantFramePlayed:
    """Assistant audio went out to Twilio at ``now_ms``: one or more whole 20 ms frames, the n-th
    playing n x 20 ms after the first."""
    item_id: str
    now_ms: int
    audio: bytes = b""
    """The frames themselves: the echo detector's reference."""


@dataclass(frozen=True)
class AssistantPlayoutFinished:
    """The TX loop sent the last frame (and tail silence) of this response."""
    response_id: str
    now_ms: int


@dataclass(frozen=True)
class MarkAcked:
    name: str
    now_ms: int


@dataclass(frozen=True)
class Tick:
    now_ms: int


@dataclass(frozen=True)
class CommitSent:
    """The audio sender committed the input buffer (after every frame queued before it) for the
    turn the core asked for with ``CommitAndTrigger``: the core may ask for the answer now."""
    reason: str
    now_ms: int


@dataclass(frozen=True)
class TriggerReached:
    """A ``QueueTrigger`` came out of the audio queue (after the caller audio queued before it):
    the core may ask for that response now."""
    reason: str
    now_ms: int


@dataclass(frozen=True)
class ToolIoDone:
    """The I/O a tool asked for (``RunToolIo``) finished: its result, or why it failed (``error``:
    ``timeout`` or the exception's type and text)."""
    ticket: int
    result: object
    error: str | None
    now_ms: int


@dataclass(frozen=True)
class ShutdownRequested:
    """The server is stopping: finish the current turn, say goodbye, hang up."""
    now_ms: int


@dataclass(frozen=True)
class RealtimeLinkLost:
    now_ms: int
    reason: str


@dataclass(frozen=True)
class ReconnectFailed:
    """Reconnect attempt ``attempt`` (from 1) could not open a new model session."""
    now_ms: int
    attempt: int
    reason: str


@dataclass(frozen=True)
class CallerDigit:
    """The caller pressed a key (Twilio's ``dtmf`` message): never speech, only its keypad action."""
    digit: str
    now_ms: int


CoreEvent = (CallerFrame | RealtimeReceived | AssistantFramePlayed | AssistantPlayoutFinished | MarkAcked | Tick
             | CommitSent | TriggerReached | ToolIoDone | ShutdownRequested | RealtimeLinkLost | ReconnectFailed
             | CallerDigit)

# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardAudio:
    audio: bytes
    """µ-law caller audio for ``input_audio_buffer.append`` (one or more frames)."""


@dataclass(frozen=True)
class CommitAndTrigger:
    """Commit the input buffer after every frame forwarded before it, then report ``CommitSent``."""
    reason: str


@dataclass(frozen=True)
class QueueTrigger:
    """Report ``TriggerReached`` once the caller audio queued before it has gone."""
    reason: str


@dataclass(frozen=True)
class SendResponseCreate:
    reason: str
    instructions: str | None


@dataclass(frozen=True)
class QueueAssistantAudio:
    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True)
class EndAssistantAudio:
    response_id: str


@dataclass(frozen=True)
class SendMark:
    name: str


@dataclass(frozen=True)
class CancelResponse:
    response_id: str | None


@dataclass(frozen=True)
class ClearPlayback:
    """Flush tx_q and the out queue and send Twilio ``clear``."""


@dataclass(frozen=True)
class PausePlayout:
    """Stop sending assistant frames to Twilio (keep them queued): a sound over the AI is being judged."""


@dataclass(frozen=True)
class ResumePlayout:
    """Send the queued assistant frames again from where they stopped (the sound was a backchannel)."""


@dataclass(frozen=True)
class DeleteItem:
    """``conversation.item.delete``: an assistant item the caller never heard leaves the conversation."""
    item_id: str


@dataclass(frozen=True)
class AudioReplyAsText:
    """A reply the caller heard whole: its audio item becomes an assistant text item in the same
    place (inserted after it, then the audio item deleted), re-read far cheaper by every response."""
    item_id: str
    transcript: str


@dataclass(frozen=True)
class TruncateAssistant:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ReplayConversation:
    """Give a new model session the conversation so far, as text items, oldest first."""
    turns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ConfigureSession:
    """Send this call's ``session.update`` (a new session was created)."""


@dataclass(frozen=True)
class StartAudio:
    """The model session is configured: caller audio may flow to it now."""


@dataclass(frozen=True)
class Reconnect:
    """Open a new model session after ``after_ms`` (attempt ``attempt``); report a failure back."""
    after_ms: int
    attempt: int


@dataclass(frozen=True)
class RenewSession:
    """Replace the model session now (the call is idle): the conversation is replayed into the new one."""


@dataclass(frozen=True)
class HangUp:
    reason: str


@dataclass(frozen=True)
class TransferCall:
    """The AI's line before the transfer has played: hand the call to a person (``<Dial>``)."""
    reason: str


@dataclass(frozen=True)
class RunToolIo:
    """Run ``request`` through tool ``tool``'s ``run_io`` off the call's thread, for at most
    ``timeout_ms``, then report ``ToolIoDone(ticket, ...)``."""
    ticket: int
    tool: str
    request: object
    timeout_ms: int
    run: Callable[[], object] = field(default=lambda: None, compare=False, repr=False)
    """The tool's ``run_io`` bound to ``request``: what the shell calls, knowing no tool."""


@dataclass(frozen=True)
class SendToolOutput:
    """``conversation.item.create`` of a ``function_call_output`` (its follow-up response is a
    separate ``QueueTrigger``, through the guard)."""
    call_id: str
    output: str


@dataclass(frozen=True)
class LeadChanged:
    """The lead changed: store it; ``deliver`` queues it for the business's CRM in the same write."""
    lead: LeadSnapshot
    deliver: bool
    asked_for_person: bool = False
    """The caller asked for a person before this write (the CRM is told)."""


@dataclass(frozen=True)
class Note:
    """A log record: ``code`` names its line in ``log_lines`` and ``fields`` fill it. ``level`` is
    a logging level name. The shell logs ``text``."""
    level: str
    code: str
    fields: tuple[tuple[str, object], ...] = ()

    @property
    def text(self) -> str:
        return log_lines.render(self.code, self.fields)

    def get(self, name: str):
        return dict(self.fields)[name]


def note(level: str, code: str, /, **fields) -> Note:
    return Note(level, code, tuple(fields.items()))


CoreAction = (ConfigureSession | StartAudio | Reconnect | RenewSession | ReplayConversation | ForwardAudio | CommitAndTrigger | QueueTrigger | SendResponseCreate
              | QueueAssistantAudio | EndAssistantAudio | SendMark | CancelResponse | ClearPlayback
              | PausePlayout | ResumePlayout | DeleteItem | AudioReplyAsText | TruncateAssistant | HangUp | TransferCall | RunToolIo
              | SendToolOutput | LeadChanged | Note)
