"""The periodic ``[PIPELINE STATUS]`` line (pure): one every ``status_interval_ms`` of ticks."""
from __future__ import annotations


class StatusLine:
    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self._last_ms: int | None = None

    def due_ms(self, now_ms: int) -> int:
        return (now_ms if self._last_ms is None else self._last_ms) + self.interval_ms

    def on_tick(self, now_ms: int) -> bool:
        """True when the line is due now (the first tick starts the clock)."""
        if self._last_ms is None:
            self._last_ms = now_ms
            return False
        if now_ms - self._last_ms < self.interval_ms:
            return False
        self._last_ms = now_ms
        return True
