"""A circuit breaker per worker: while the model fails call after call, new callers hear the
apology at once instead of a minute of dead air.

Theory of operation. Every call that ends reports whether the model failed it (it could not be
reached, lost its sessions past the budget, or failed its responses: the reasons in
``MODEL_FAILURES``). ``CLOSED``: calls go through; ``FAILURES_TO_OPEN`` model failures within
``WINDOW_MS`` with no call that went well between them open it. ``OPEN``: ``allow`` says no
(the webhook answers with the apology and hangs up) until ``OPEN_MS`` have passed; then
``HALF_OPEN``: one trial call goes through (the others still hear the apology); its success
closes the breaker, its failure opens it again for another ``OPEN_MS``. Pure: the clock is
injected (``now_ms``), the state table forbids every other move.
"""
from __future__ import annotations

from enum import Enum

FAILURES_TO_OPEN = 3
WINDOW_MS = 60_000
OPEN_MS = 30_000
TRIAL_MAX_MS = 120_000
"""A trial call that never reports (its process died) stops counting as in flight after this."""
MODEL_FAILURES = frozenset({"realtime_unavailable", "realtime_closed", "realtime_failing"})


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_ALLOWED = {(BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
            (BreakerState.HALF_OPEN, BreakerState.CLOSED), (BreakerState.HALF_OPEN, BreakerState.OPEN)}


class ModelBreaker:
    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self._failures: list[int] = []       # when recent model failures happened (CLOSED)
        self._opened_at_ms = 0
        self._trial_since_ms: int | None = None
        self.refused = 0
        """Calls answered with the apology because the breaker was open."""

    def _set(self, new: BreakerState) -> None:
        if (self.state, new) not in _ALLOWED:
            raise AssertionError(f"breaker {self.state.value} -> {new.value} not allowed")
        self.state = new

    def allow(self, now_ms: int) -> bool:
        """May a new call try the model? (False: answer it with the apology.)"""
        if self.state is BreakerState.OPEN and now_ms - self._opened_at_ms >= OPEN_MS:
            self._set(BreakerState.HALF_OPEN)
            self._trial_since_ms = None
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and (self._trial_since_ms is None
                                                     or now_ms - self._trial_since_ms >= TRIAL_MAX_MS):
            self._trial_since_ms = now_ms    # this call is the trial
            return True
        self.refused += 1
        return False

    def record(self, now_ms: int, hangup_reason: str) -> None:
        """A call that tried the model ended with ``hangup_reason``."""
        failed = hangup_reason in MODEL_FAILURES
        if self.state is BreakerState.HALF_OPEN:
            self._trial_since_ms = None
            if failed:
                self._open(now_ms)
            else:
                self._set(BreakerState.CLOSED)
                self._failures = []
            return
        if self.state is BreakerState.OPEN:
            return                           # a call that started before it opened
        if not failed:
            self._failures = []
            return
        self._failures = [t for t in self._failures if now_ms - t < WINDOW_MS] + [now_ms]
        if len(self._failures) >= FAILURES_TO_OPEN:
            self._open(now_ms)

    def _open(self, now_ms: int) -> None:
        self._set(BreakerState.OPEN)
        self._opened_at_ms = now_ms
        self._failures = []

    @property
    def is_open(self) -> bool:
        return self.state is not BreakerState.CLOSED
