"""Which media streams a call may open: only the one of a call this server answered, once.

A ``start`` is refused (``refusal`` says why) unless its ``StreamToken`` parameter is a token of
its own CallSid, in time (``server.call.stream_tokens.check``), and its nonce was never claimed, in this
worker's memory nor in the shared database (``CallRecords.claim_stream``; when the database cannot
say within its deadline, the worker's memory decides). The handler closes a refused stream before
it gets a model session or writes anything.
"""
from __future__ import annotations

from server.logs import mask_phone
from server.call.stream_tokens import TOKEN_PARAM, check


def refusal(start, registry, records, now_s: int) -> str:
    """Why ``start`` (a ``twilio_codec.Start``) may not open a call; empty when it may."""
    verdict = check(registry.stream_secret, start.custom_parameters.get(TOKEN_PARAM), start.call_sid, now_s)
    if not verdict.ok:
        return verdict.reason
    if not registry.used_tokens.claim(verdict.nonce, verdict.expiry_s, now_s):
        return "stream token already used"
    if records is not None and records.claim_stream(verdict.nonce, start.call_sid) is False:
        return "stream token already used (by another instance)"
    return ""


def shown_parameters(params: dict) -> dict:
    """A stream's parameters as logged: phone numbers masked, the stream token withheld."""
    return {k: (mask_phone(v) if k in ("From", "To") and v else "…" if k == TOKEN_PARAM else v)
            for k, v in params.items()}
