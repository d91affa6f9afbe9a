"""A media stream is bound to the call the webhook answered.

Twilio signs the WebSocket upgrade over the stream's URL, which is the same for every call: a
captured ``X-Twilio-Signature`` opens streams for any CallSid until the auth token rotates. So
the TwiML that answers a call (the webhook, or a transfer that comes back to the agent) gives its
``<Stream>`` a ``<Parameter name="StreamToken">``, which Twilio returns in ``start.customParameters``:

    v1.<expiry, unix s>.<nonce, 16 hex>.<HMAC-SHA256 of "<CallSid>|<expiry>|<nonce>", 32 hex>

keyed by a secret derived from ``TWILIO_AUTH_TOKEN`` (every instance derives the same one). A
``start`` must carry a token made for its own CallSid, not expired (``TTL_S``: Twilio opens the
stream within a second of the TwiML), and not used before: its nonce is claimed once, in this
worker's memory and in the shared database (``stream_claims``), so a replayed token fails on
every instance. A refused stream gets no model session and writes nothing. Pure, but for the
random nonce.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PARAM = "StreamToken"
TTL_S = 120
_VERSION = "v1"


def secret_from(auth_token: str) -> bytes:
    """The tokens' key: derived from the auth token (never the auth token itself), or random for
    this process when there is none (local development without Twilio)."""
    if not auth_token:
        return secrets.token_bytes(32)
    return hmac.new(b"prosaas-stream-token", auth_token.encode("utf-8"), hashlib.sha256).digest()


def _sign(secret: bytes, call_sid: str, expiry: int, nonce: str) -> str:
    return hmac.new(secret, f"{call_sid}|{expiry}|{nonce}".encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def issue(secret: bytes, call_sid: str, now_s: int, nonce: str | None = None) -> str:
    nonce = nonce or secrets.token_hex(8)
    expiry = now_s + TTL_S
    return f"{_VERSION}.{expiry}.{nonce}.{_sign(secret, call_sid, expiry, nonce)}"


@dataclass(frozen=True)
class TokenCheck:
    ok: bool
    reason: str
    """Why it was refused (empty when ok): missing, malformed, not this call's, expired."""
    nonce: str = ""
    expiry_s: int = 0


def check(secret: bytes, token: str | None, call_sid: str, now_s: int) -> TokenCheck:
    """Is ``token`` a token of ``call_sid`` still in time? (Whether it was used is the caller's to claim.)"""
    if not token:
        return TokenCheck(False, "no stream token")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit() or len(parts[2]) != 16:
        return TokenCheck(False, "malformed stream token")
    expiry, nonce, signature = int(parts[1]), parts[2], parts[3]
    if not call_sid or not hmac.compare_digest(signature, _sign(secret, call_sid, expiry, nonce)):
        return TokenCheck(False, "stream token not made for this call")
    if now_s > expiry:
        return TokenCheck(False, f"stream token expired {now_s - expiry}s ago")
    return TokenCheck(True, "", nonce, expiry)


class UsedTokens:
    """This worker's memory of the nonces that opened a stream, until they expire."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def claim(self, nonce: str, expiry_s: int, now_s: int) -> bool:
        """True the first time; False for a nonce already used."""
        for old in [n for n, until in self._used.items() if until < now_s]:
            del self._used[old]
        if nonce in self._used:
            return False
        self._used[nonce] = expiry_s
        return True
