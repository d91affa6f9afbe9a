"""Logging setup: one format, a per-call prefix, phone numbers masked in every record."""
from __future__ import annotations

import logging
import re
import sys

_PHONE = re.compile(r"\+\d{6,15}")


def mask_phone(text: str) -> str:
    """``+972501234567`` -> ``+97*******4567``: country prefix and last four digits stay."""
    return _PHONE.sub(lambda m: m.group()[:3] + "*" * (len(m.group()) - 7) + m.group()[-4:], text)


class PhoneMaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg, record.args = record.getMessage(), None
        record.msg = mask_phone(str(record.msg))
        return True


def configure(level: str) -> None:
    root = logging.getLogger()
    if any(isinstance(f, PhoneMaskFilter) for h in root.handlers for f in h.filters):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))
    handler.addFilter(PhoneMaskFilter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websocket", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class CallLog(logging.LoggerAdapter):
    """Prefixes every line with ``call=CA… stream=MZ…``."""

    def process(self, msg, kwargs):
        return f"{self.extra['prefix']} {msg}", kwargs


def call_logger(name: str, call_sid: str, stream_sid: str) -> CallLog:
    return CallLog(logging.getLogger(name), {"prefix": f"call={call_sid} stream={stream_sid}"})


FLOODABLE = frozenset({"keypad"})
"""Note codes one message of the caller makes: a flood of messages must not flood the log."""


class NoteLimiter:
    """Per call: the first ``first`` lines of a floodable code, then one line in ``every`` (which
    says how many were left out), so 6,000 keys a second make a few dozen lines, not 6,000."""

    def __init__(self, first: int = 10, every: int = 100) -> None:
        self.first, self.every = first, every
        self.seen: dict[str, int] = {}

    def allow(self, code: str) -> tuple[bool, int]:
        """(log this one?, how many of this code were left out since the last line logged)."""
        if code not in FLOODABLE:
            return True, 0
        n = self.seen.get(code, 0) + 1
        self.seen[code] = n
        if n <= self.first:
            return True, 0
        if (n - self.first) % self.every == 0:
            return True, self.every - 1
        return False, 0
