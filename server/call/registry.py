"""Calls of this worker process: counts for /healthz, outcomes for the after-stream TwiML, draining.

Twilio fetches ``/webhook/stream_ended`` after our server closes a stream; only then do we answer
with an apology (a failed call) or a plain hangup. The answer comes from the call's shared record
(``CallRecords.after_stream``); the outcomes remembered here per CallSid (the newest 1000) are the
fallback when the database cannot be read. ``draining`` is set on SIGTERM (``gunicorn.conf.py``)
and read by every call.
"""
from __future__ import annotations

from server.core.pacer import MsHistogram
from server.call.model_breaker import ModelBreaker
from server.call.stream_tokens import UsedTokens, secret_from

_KEEP = 1000


def _remember(book: dict, key: str, value) -> None:
    book[key] = value
    while len(book) > _KEEP:
        book.pop(next(iter(book)))            # the oldest entry


class CallRegistry:
    """Counts calls for /healthz and remembers, per CallSid, whether a call failed, so the TwiML
    that Twilio fetches after the stream closes can apologise (bounded: the newest 1000 calls)."""

    def __init__(self, auth_token: str = "") -> None:
        """``auth_token``: Twilio's, from which the stream tokens' key is derived (``server.call.stream_tokens``)."""
        self.stream_secret = secret_from(auth_token)
        self.used_tokens = UsedTokens()         # nonces that opened a stream here, until they expire
        self.active = 0
        self.total = 0
        self.failed: dict[str, str] = {}
        self.ended: dict[str, str] = {}
        self.answered: dict[str, bool] = {}      # CallSids this process answered at the webhook
        self.draining = False
        self._drain_listeners: set = set()
        self.model_breaker = ModelBreaker()      # while the model fails call after call: the apology at once
        self.tx_lateness = MsHistogram(250)      # outbound pacing lateness of every frame, ms
        self.eou_to_create = MsHistogram(3000)   # caller's end of speech -> response.create, ms

    def start_draining(self) -> None:
        """SIGTERM: every call hears of it at once (its timer is rung), not on a poll."""
        self.draining = True
        for ring in list(self._drain_listeners):
            ring()

    def on_drain(self, ring) -> None:
        self._drain_listeners.add(ring)

    def forget_drain(self, ring) -> None:
        self._drain_listeners.discard(ring)

    def record_answered(self, call_sid: str) -> None:
        _remember(self.answered, call_sid, True)

    def should_apologise(self, call_sid: str) -> bool:
        """After the stream: apologise when the call failed here, or was answered here but its
        stream never ended normally; a call this process never saw just hangs up."""
        if call_sid in self.failed:
            return True
        return call_sid in self.answered and call_sid not in self.ended

    def record_end(self, call_sid: str, reason: str, failed: bool) -> None:
        _remember(self.failed if failed else self.ended, call_sid, reason)
