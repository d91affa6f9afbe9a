"""Signing webhook bodies so the CRM can trust them (pure: no clock, no I/O).

Theory of operation, Stripe-style:

* The sender signs ``"<timestamp_s>." + body`` with HMAC-SHA256 under the shared secret and sends
  ``X-ProSaaS-Signature: t=<timestamp_s>,v1=<hex>``. Putting the timestamp inside the MAC lets the
  receiver refuse old captures (replay protection) without trusting the header's ``t`` on its own.
* The receiver recomputes the MAC over the *raw* body bytes (never a re-serialised JSON), compares in
  constant time, and accepts only if ``|now_s - t| <= tolerance_s``.
* Several ``v1=`` entries may be present, so a sender can sign with the old and the new secret while
  a secret is rotated; one match is enough. Unknown ``k=v`` parts (a future ``v2``) are ignored.
* ``X-ProSaaS-Delivery`` carries an idempotency key, stable across retries of one delivery: the
  receiver dedupes on it, because a retry after a lost 200 would otherwise store the lead twice.

The caller passes the time in (``timestamp_s``, ``now_s``); ``verify`` never raises on bad input.
"""
from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-ProSaaS-Signature"
DELIVERY_HEADER = "X-ProSaaS-Delivery"
DEFAULT_TOLERANCE_S = 300
_SCHEME = "v1"
_MAX_TIMESTAMP_DIGITS = 15   # a header is attacker input: keep int() on it cheap and bounded


def _mac_hex(secret: str, body: bytes, timestamp_s: int) -> str:
    signed = f"{timestamp_s}.".encode("ascii") + bytes(body)
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp_s: int) -> str:
    """The ``X-ProSaaS-Signature`` value for ``body`` sent at ``timestamp_s`` (Unix seconds)."""
    if not secret:
        raise ValueError("webhook secret is empty")
    if isinstance(timestamp_s, bool) or not isinstance(timestamp_s, int) or timestamp_s < 0:
        raise ValueError(f"timestamp_s={timestamp_s!r} is not a non-negative integer")
    return f"t={timestamp_s},{_SCHEME}={_mac_hex(secret, body, timestamp_s)}"


def _parse(header: str) -> tuple[int, list[str]] | None:
    """``(timestamp_s, [v1 signatures])`` or ``None`` if the header is malformed."""
    timestamp_s: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            continue                      # stray text between commas: tolerated like unknown parts
        if key == "t":
            if timestamp_s is not None:   # two timestamps: ambiguous, refuse rather than pick one
                return None
            if not (value.isascii() and value.isdigit()) or len(value) > _MAX_TIMESTAMP_DIGITS:
                return None
            timestamp_s = int(value)
        elif key == _SCHEME and value:
            signatures.append(value)
    if timestamp_s is None or not signatures:
        return None
    return timestamp_s, signatures


def verify(secret: str, body: bytes, header: str | None, now_s: int,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> bool:
    """True if ``header`` signs ``body`` under ``secret`` within ``tolerance_s`` of ``now_s``."""
    try:
        if not secret or not isinstance(header, str):
            return False
        parsed = _parse(header)
        if parsed is None:
            return False
        timestamp_s, signatures = parsed
        if abs(now_s - timestamp_s) > tolerance_s:
            return False
        expected = _mac_hex(secret, body, timestamp_s).encode("ascii")
        matched = False
        for candidate in signatures:      # no early exit: time does not depend on which entry matched
            matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
        return matched
    except (TypeError, ValueError):       # a non-bytes body or a non-int now_s: not a valid signature
        return False
