"""Silence after the AI finished: prompt, then say goodbye and hang up.

The clock restarts whenever the caller makes a sound or the pipeline re-enters LISTENING. After
``silence_timeout_ms`` of quiet the policy asks for a ``silence_warning`` prompt, up to
``max_silence_warnings`` times; the next timeout asks for the ``goodbye``. A real caller turn
resets the warnings. The policy only decides; responses still go through the one guarded trigger.
"""
from __future__ import annotations

from enum import Enum

from server.core.events import CoreAction, note


class SilenceStep(Enum):
    WARN = "silence_warning"
    GOODBYE = "goodbye"


class SilencePolicy:
    def __init__(self, timeout_ms: int, max_warnings: int) -> None:
        self.timeout_ms = timeout_ms
        self.max_warnings = max_warnings
        self.warnings = 0
        self._quiet_since_ms: int | None = None

    def restart(self, now_ms: int) -> None:
        self._quiet_since_ms = now_ms

    def on_caller_turn(self, now_ms: int) -> None:
        self.warnings = 0
        self.restart(now_ms)

    def quiet_ms(self, now_ms: int) -> int:
        return 0 if self._quiet_since_ms is None else now_ms - self._quiet_since_ms

    def deadline_ms(self, now_ms: int) -> int:
        """When the silence clock next runs out; ``now_ms`` when it has not started (a tick starts it)."""
        return now_ms if self._quiet_since_ms is None else self._quiet_since_ms + self.timeout_ms

    def on_tick(self, now_ms: int, listening: bool, out: list[CoreAction] | None = None) -> SilenceStep | None:
        """``listening``: the pipeline waits for the caller (no response pending or audible);
        ``out``: where the step's line goes."""
        step = self._step(now_ms, listening)
        if out is not None and step is SilenceStep.WARN:
            out.append(note('INFO', 'silence_prompt', silence_timeout_ms=self.timeout_ms, warnings=self.warnings,
                            max_silence_warnings=self.max_warnings))
        elif out is not None and step is SilenceStep.GOODBYE:
            out.append(note('INFO', 'silence_goodbye'))
        return step

    def _step(self, now_ms: int, listening: bool) -> SilenceStep | None:
        if not listening:
            self._quiet_since_ms = now_ms
            return None
        if self._quiet_since_ms is None:
            self._quiet_since_ms = now_ms
        if now_ms - self._quiet_since_ms < self.timeout_ms:
            return None
        self._quiet_since_ms = now_ms
        if self.warnings < self.max_warnings:
            self.warnings += 1
            return SilenceStep.WARN
        return SilenceStep.GOODBYE
