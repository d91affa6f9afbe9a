"""The owner's summary of a call: a few Hebrew lines (who, what, where, how urgent, what was
promised), asked of the call's own Realtime session once the call is over.

It is an out-of-band text response (``conversation: "none"``, text only, ``metadata.purpose =
owner_summary``): the model reads the conversation so far and adds nothing to it, and nothing of
it reaches the caller (the stream is over; text is never played). It is billed like any response:
its tokens (``tokens``) join the call's cost once it is in. Its events are told apart by their
response id, learnt from ``response.created``'s purpose, and never reach the call core.
The call's model reader keeps reading while the summary is pending; if it has already ended, a
reader of its own is started. Bounded by ``TIMEOUT_S``, the request's own send included (a model
that stopped reading blocks a send): the call's end never waits longer; skipped when the model link
is known to be gone.
"""
from __future__ import annotations

from typing import Callable

from server import green
from server.core import realtime_protocol as rt

PURPOSE = "owner_summary"
TIMEOUT_S = 6.0
INSTRUCTIONS = (
    "The phone call is over. Write, for the owner of the business, a summary of it in 2 to 5 short Hebrew lines: "
    "who called, what they need, where, how urgent it is, and what was promised to them. Facts from the call "
    "only; write 'לא ידוע' for what was not said. Plain text, no greeting.")


class OwnerSummary:
    def __init__(self) -> None:
        self.pending = False
        self.response_id: str | None = None
        self.text: str | None = None
        self.tokens: dict[str, int] = {}
        """What the summary's response was billed, by kind (the call's cost includes it)."""
        self._done = green.Event()

    def take(self, event) -> bool:
        """The model reader's question for every event: is it the summary's (kept here, not for the core)?"""
        if isinstance(event, rt.ResponseCreated) and event.purpose == PURPOSE:
            self.response_id = event.response_id
            return True
        if self.response_id is None or getattr(event, "response_id", None) != self.response_id:
            return False
        if isinstance(event, rt.TextDone):
            self.text = event.text.strip() or None
        elif isinstance(event, rt.ResponseDone):
            if event.usage is not None:
                self.tokens = event.usage.as_dict()
            self._done.set()
        return True

    def ask(self, send: Callable[[str], None], reader_alive: bool, recv: Callable[[], str],
            timeout_s: float = TIMEOUT_S) -> str | None:
        """Ask and wait (at most ``timeout_s``); the text, or None (no answer, or the link failed)."""
        self.pending = True
        helpers = [green.spawn(self._send, send)]
        if not reader_alive:
            helpers.append(green.spawn(self._read, recv))
        try:
            self._done.wait(timeout_s)
        finally:
            self.pending = False
            for helper in helpers:
                if not green.is_dead(helper):
                    green.kill(helper)
        return self.text

    def _send(self, send: Callable[[str], None]) -> None:
        try:
            send(rt.out_of_band_text(INSTRUCTIONS, PURPOSE))
        except Exception:   # noqa: BLE001 - a closed link: no summary, the call is over anyway
            self._done.set()

    def _read(self, recv: Callable[[], str]) -> None:
        try:
            while self.pending:
                self.take(rt.parse_server_event(recv()))
        except Exception:   # noqa: BLE001 - the link closed under us: the wait times out
            return
