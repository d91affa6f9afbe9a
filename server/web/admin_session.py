"""Admin sign-in decisions: the signed session cookie and the throttle of failed attempts.

Theory of operation. A person signs in once with ``ADMIN_TOKEN`` (a form POST, so the token never
travels in a URL) and gets a session cookie ``v1.<expires_s>.<mac>``: the MAC is HMAC-SHA256 over
``v1.<expires_s>`` with a key derived from the token itself (HMAC of the token with a fixed
label). So no new setting is needed, and rotating ``ADMIN_TOKEN`` (a restart with a new value)
signs everyone out: old cookies no longer verify. Sessions are stateless: signing out clears the
browser's cookie, and a copied cookie stays valid until it expires (``SESSION_TTL_S``) or the token
rotates. The cookie carries nothing secret; the MAC is compared in constant time.

Failed attempts (a wrong token in the form or in an ``Authorization: Bearer`` header) are counted
per client address: past ``limit`` failures within ``window_ms`` that client is refused without
its token being checked until the oldest failure ages out, so guessing gets about one try a
minute. Behind a reverse proxy every client has the proxy's address, so they share one budget:
a flood of wrong tokens can lock the admin out for at most ``window_ms``, never let a guess through.

Pure: times come in as arguments (wall-clock seconds for the cookie, which must survive restarts;
monotonic ms for the throttle); the Flask shell is ``server/web/admin.py``. (itsdangerous, which Flask
ships, would sign the same way but reads the clock itself.)
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict, deque

COOKIE_NAME = "prosaas_admin"
SESSION_TTL_S = 12 * 3600
_KEY_LABEL = b"prosaas admin session cookie v1"


def session_key(admin_token: str) -> bytes:
    """The cookie signing key: a function of the token alone, so a new token voids every cookie."""
    return hmac.new(admin_token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(key: bytes, now_s: int, ttl_s: int = SESSION_TTL_S) -> str:
    body = f"v1.{now_s + ttl_s}"
    return f"{body}.{_mac(key, body)}"


def valid(key: bytes, cookie: str | None, now_s: int) -> bool:
    """Signed by ``key`` and not expired (nor expiring further ahead than a session lasts)."""
    parts = (cookie or "").split(".")
    if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit() or len(parts[1]) > 12:
        return False
    if not hmac.compare_digest(_mac(key, f"v1.{parts[1]}"), parts[2]):
        return False
    return now_s < int(parts[1]) <= now_s + SESSION_TTL_S


def tokens_equal(given: str | None, expected: str) -> bool:
    """Constant time in the content and the length of both (digests of equal size are compared)."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


class FailureThrottle:
    """Failed sign-in attempts per client: at most ``limit`` within ``window_ms``."""

    def __init__(self, limit: int = 10, window_ms: int = 600_000, max_clients: int = 4096) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()

    def _recent(self, client: str, now_ms: int) -> deque[int] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now_ms - self.window_ms:
            times.popleft()
        if not times:
            self._failures.pop(client, None)
            return None
        return times

    def retry_after_ms(self, client: str, now_ms: int) -> int:
        """0 when the client may try; otherwise how long until its oldest failure ages out."""
        times = self._recent(client, now_ms)
        if times is None or len(times) < self.limit:
            return 0
        return times[0] + self.window_ms - now_ms

    def failed(self, client: str, now_ms: int) -> None:
        times = self._recent(client, now_ms) or deque(maxlen=self.limit)
        times.append(now_ms)
        self._failures.pop(client, None)
        self._failures[client] = times                   # the most recent client last
        while len(self._failures) > self.max_clients:   # bounded memory: the stalest client goes
            self._failures.popitem(last=False)
