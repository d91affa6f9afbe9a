"""Inputs (facts) and outputs (verbs) of the call core. All frozen; all times in integer ms."""
from __future__ import annotations

from dataclasses import dataclass

from server.core import realtime_protocol as rt
from server.leads.capture import LeadSnapshot

# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionReady:
    now_ms: int


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
    tx_frames: int
    out_chunks: int
    queued_audio_ms: int = 0
    """Assistant audio waiting in tx_q and the out queue, in ms of playback."""


@dataclass(frozen=True)
class AssistantFramePlayed:
    item_id: str
    now_ms: int
    audio: bytes = b""
    """The frame itself: the echo detector's reference."""


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
    tx_frames: int
    out_chunks: int


@dataclass(frozen=True)
class ShutdownRequested:
    """The server is stopping: finish the current turn, say goodbye, hang up."""
    now_ms: int


@dataclass(frozen=True)
class RealtimeLinkLost:
    now_ms: int
    reason: str


@dataclass(frozen=True)
class RealtimeLinkRestored:
    """A new session is configured and the conversation so far was replayed into it."""
    now_ms: int


CoreEvent = (RealtimeLinkLost | RealtimeLinkRestored | ShutdownRequested | SessionReady | CallerFrame | RealtimeReceived | AssistantFramePlayed
             | AssistantPlayoutFinished | MarkAcked | Tick)

# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardAudio:
    audio: bytes
    """µ-law caller audio for ``input_audio_buffer.append`` (one or more frames)."""


@dataclass(frozen=True)
class CommitAndTrigger:
    """Commit the input buffer (after every frame forwarded before it), then trigger a response."""
    reason: str


@dataclass(frozen=True)
class QueueTrigger:
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
class TruncateAssistant:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ReplayConversation:
    """Give a new model session the conversation so far, as text items, oldest first."""
    turns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RenewSession:
    """Replace the model session now (the call is idle): the conversation is replayed into the new one."""


@dataclass(frozen=True)
class HangUp:
    reason: str


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


@dataclass(frozen=True)
class Note:
    """A log record; the shell logs it. ``level`` is a logging level name."""
    level: str
    text: str


CoreAction = (RenewSession | ReplayConversation | ForwardAudio | CommitAndTrigger | QueueTrigger | SendResponseCreate
              | QueueAssistantAudio | EndAssistantAudio | SendMark | CancelResponse | ClearPlayback
              | PausePlayout | ResumePlayout | DeleteItem | TruncateAssistant | HangUp | SendToolOutput | LeadChanged | Note)
