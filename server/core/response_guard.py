"""The one guard in front of ``response.create``.

Theory of operation: a response is *pending* from the moment we send ``response.create`` until
``response.created`` arrives, then *active* until ``response.done`` (any status). A request while
one is pending or active is skipped and logged, never queued or retried: the caller's words are
already in the conversation and the running response will answer them. A pending create that
never gets ``response.created`` expires after ``response_created_timeout_ms``; expiry only clears
the guard, it never sends anything by itself.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SendCreate:
    reason: str


@dataclass(frozen=True)
class SkipCreate:
    reason: str
    blocking: str
    """The active response id, or 'pending:<reason>' when the create is not yet acknowledged."""


@dataclass(frozen=True)
class PendingExpired:
    reason: str
    waited_ms: int


class ResponseGuard:
    def __init__(self, created_timeout_ms: int) -> None:
        self._created_timeout_ms = created_timeout_ms
        self.active_response_id: str | None = None
        self.pending_reason: str | None = None
        self._pending_since_ms: int | None = None
        self.sent_count = 0

    @property
    def busy(self) -> bool:
        return self.active_response_id is not None or self.pending_reason is not None

    def request(self, reason: str, now_ms: int) -> SendCreate | SkipCreate:
        if self.active_response_id is not None:
            return SkipCreate(reason, self.active_response_id)
        if self.pending_reason is not None:
            return SkipCreate(reason, f"pending:{self.pending_reason}")
        self.pending_reason, self._pending_since_ms = reason, now_ms
        self.sent_count += 1
        return SendCreate(reason)

    def on_created(self, response_id: str) -> None:
        self.pending_reason = self._pending_since_ms = None
        self.active_response_id = response_id

    def on_done(self, response_id: str) -> bool:
        """True if this was the active response."""
        if self.active_response_id == response_id:
            self.active_response_id = None
            return True
        return False

    def on_create_rejected(self) -> None:
        """The server refused our create (e.g. conversation_already_has_active_response)."""
        self.pending_reason = self._pending_since_ms = None

    def reset(self) -> None:
        """The session is gone (link lost): nothing is pending or active any more."""
        self.active_response_id = None
        self.pending_reason = self._pending_since_ms = None

    def next_deadline_ms(self) -> int | None:
        if self._pending_since_ms is None:
            return None
        return self._pending_since_ms + self._created_timeout_ms

    def on_deadline(self, now_ms: int) -> PendingExpired | None:
        deadline = self.next_deadline_ms()
        if deadline is None or now_ms < deadline:
            return None
        expired = PendingExpired(self.pending_reason or "", now_ms - (self._pending_since_ms or now_ms))
        self.pending_reason = self._pending_since_ms = None
        return expired
