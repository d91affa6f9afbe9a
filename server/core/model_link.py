"""The call's link to the model: its sessions, their losses and renewals (pure).

``OPENING`` until the first session is configured (``session.updated``: the call greets), ``UP``
while a session serves the call, ``DOWN`` between a lost session and its replacement (the
conversation is replayed when it is configured), ``CLOSED`` once the call gave up on the model.
A lost link is retried on this module's backoff (``Reconnect`` out, ``ReconnectFailed`` in); a
model that loses every session soon after opening it cannot loop: sessions lost within
``STABLE_SESSION_MS`` of opening spend one budget of ``MAX_QUICK_LOSSES`` (a healthy session's
loss starts a new one), and no call replaces its link more than ``MAX_LINK_LOSSES`` times. A
session is renewed before OpenAI's 60-minute limit, between turns only (``renewal_due``).
"""
from __future__ import annotations

from enum import Enum

from server.core.events import CoreAction, Reconnect, ReplayConversation, StartAudio, note


class LinkState(Enum):
    OPENING = "OPENING"
    UP = "UP"
    DOWN = "DOWN"
    CLOSED = "CLOSED"


class LinkEvent(Enum):
    READY = "session configured"
    LOST = "link lost"
    GIVE_UP = "given up"


_O, _U, _D, _C = LinkState.OPENING, LinkState.UP, LinkState.DOWN, LinkState.CLOSED
NEXT: dict[tuple[LinkState, LinkEvent], LinkState] = {
    (_O, LinkEvent.READY): _U, (_U, LinkEvent.READY): _U, (_D, LinkEvent.READY): _U,
    (_O, LinkEvent.LOST): _D, (_U, LinkEvent.LOST): _D, (_D, LinkEvent.LOST): _D,
    (_O, LinkEvent.GIVE_UP): _C, (_U, LinkEvent.GIVE_UP): _C, (_D, LinkEvent.GIVE_UP): _C,
}
"""Forbidden: anything once ``CLOSED`` (the call is ending on the model's failure)."""

RECONNECT_BACKOFF_MS = (250, 1000, 2500)   # bounded: three tries, ~4 s, then the fallback message
STABLE_SESSION_MS = 15000                  # a session that lived this long was healthy: its loss starts a new budget
MAX_QUICK_LOSSES = 3                       # sessions lost within STABLE_SESSION_MS of opening, in a row
MAX_LINK_LOSSES = 6                        # whatever happens, a call replaces its model link at most this often
RENEW_RETRY_MS = 1000                      # a renewal that found the call busy looks again this much later


class ForbiddenLinkMove(RuntimeError):
    pass


class ModelLink:
    def __init__(self, session_renew_ms: int | None) -> None:
        self.session_renew_ms = session_renew_ms
        self.state = LinkState.OPENING
        self.greeted = False
        self.answer_owed = False
        """A caller's turn waits for its answer across the reconnection."""
        self.renew_at_ms: int | None = None
        self._began_ms: int | None = None
        self.quick_losses = 0
        self.losses = 0

    def _move(self, event: LinkEvent) -> None:
        new = NEXT.get((self.state, event))
        if new is None:
            raise ForbiddenLinkMove(f"{self.state.value} on {event.value}")
        self.state = new

    @property
    def up(self) -> bool:
        """Sends reach a session (or will, once the first one is configured)."""
        return self.state in (LinkState.OPENING, LinkState.UP)

    def on_ready(self, now_ms: int, conversation: tuple, out: list[CoreAction]) -> str | None:
        """A session was configured: the first opens the caller's audio path (``greet``: the core
        asks for the greeting); one after a loss gets the conversation replayed (``restore``: the
        core asks for an answer owed); any other changes nothing (None)."""
        if self.state is LinkState.CLOSED:
            return None
        was = self.state
        self._move(LinkEvent.READY)
        if was is LinkState.UP:
            return None
        self._began_ms = now_ms
        self.renew_at_ms = None if self.session_renew_ms is None else now_ms + self.session_renew_ms
        if not self.greeted:
            self.greeted = True
            out.append(StartAudio())
            out.append(note('INFO', 'greeting_first'))
            out.append(note('INFO', 'greeting_same_session'))
            return "greet"
        out.append(ReplayConversation(conversation))
        out.append(note('INFO', 'link_restored', turns=len(conversation)))
        return "restore"

    def on_lost(self, now_ms: int, reason: str, out: list[CoreAction]) -> bool:
        """The session died: the next reconnect goes out, or (False) the budget is spent: give up."""
        if self.state is LinkState.CLOSED:
            return False
        self._move(LinkEvent.LOST)
        self.losses += 1
        self.renew_at_ms = None
        lived = None if self._began_ms is None else now_ms - self._began_ms
        self.quick_losses = self.quick_losses + 1 if lived is None or lived < STABLE_SESSION_MS else 1
        if self.quick_losses > MAX_QUICK_LOSSES or self.losses > MAX_LINK_LOSSES:
            self._move(LinkEvent.GIVE_UP)
            out.append(note('ERROR', 'reconnect_budget_spent', losses=self.losses, quick=self.quick_losses,
                            lived_ms=lived if lived is not None else -1, reason=reason))
            return False
        # the backoff grows with the losses in a row: a model that drops every session is asked less often
        out.append(Reconnect(RECONNECT_BACKOFF_MS[min(self.quick_losses, len(RECONNECT_BACKOFF_MS)) - 1], 1))
        return True

    def on_reconnect_failed(self, attempt: int, reason: str, out: list[CoreAction]) -> bool:
        """The next attempt goes out, or (False) the call gives up on the model."""
        out.append(note('WARNING', 'reconnect_failed', attempt=attempt, tries=len(RECONNECT_BACKOFF_MS),
                        reason=reason))
        if attempt < len(RECONNECT_BACKOFF_MS) and self.state is not LinkState.CLOSED:
            out.append(Reconnect(RECONNECT_BACKOFF_MS[attempt], attempt + 1))
            return True
        if self.state is not LinkState.CLOSED:
            self._move(LinkEvent.GIVE_UP)
        out.append(note('ERROR', 'reconnect_given_up', reason=reason))
        return False

    def renewal_due(self, now_ms: int, idle: bool) -> bool:
        """The session is old enough to renew and the call is idle now (busy: look again shortly)."""
        if self.renew_at_ms is None or now_ms < self.renew_at_ms:
            return False
        if not (idle and self.state is LinkState.UP):
            self.renew_at_ms = now_ms + RENEW_RETRY_MS
            return False
        self.renew_at_ms = None
        return True
