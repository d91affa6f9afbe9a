"""When an answer was asked for, and how long the caller waited for it (pure).

One owner for three instants the core used to stamp by hand in many places: when the pipeline
started waiting for an answer (the no-audio watchdog counts from it), the end of the caller's
speech the answer is for (latency figures: to ``response.create``, to the first audio released,
to the first frame sent to Twilio) and the item whose first played frame closes that wait. An
answer abandoned (the caller resumed, barged in, a watchdog gave up) has no latency figure.
"""
from __future__ import annotations

from server.core.ending import CallStats
from server.core.timeline import Timeline


class AnswerClock:
    def __init__(self, no_audio_timeout_ms: int, stats: CallStats, timeline: Timeline) -> None:
        self.no_audio_timeout_ms = no_audio_timeout_ms
        self.stats = stats
        self.timeline = timeline
        self.waiting_since_ms: int | None = None
        """The pipeline waits for an answer's audio since then (None: it does not)."""
        self._speech_end_ms: int | None = None
        self._first_play: tuple[str, int] | None = None     # (item, caller's speech end) of an answer

    def asked(self, now_ms: int) -> None:
        """An answer was asked for (a greeting, a prompt, a tool's follow-up, a restored turn)."""
        self.waiting_since_ms = now_ms

    def turn_ended(self, now_ms: int, speech_end_ms: int) -> None:
        """The caller's turn ended (its last voiced frame ended at ``speech_end_ms``)."""
        self.waiting_since_ms = now_ms
        self._speech_end_ms = speech_end_ms
        self.timeline.turn_ended(speech_end_ms)

    def create_sent(self, now_ms: int, caller_turn: bool) -> None:
        if caller_turn and self._speech_end_ms is not None:
            self.stats.eou_to_create_ms.append(now_ms - self._speech_end_ms)
            self.timeline.response_requested(now_ms)

    def first_audio(self, now_ms: int, item_id: str) -> None:
        """A response's first audio was released to the caller."""
        self.waiting_since_ms = None
        if self._speech_end_ms is not None:
            self.stats.latencies_ms.append(now_ms - self._speech_end_ms)
            self._first_play = (item_id, self._speech_end_ms)
            self._speech_end_ms = None

    def frame_played(self, item_id: str, now_ms: int) -> None:
        if self._first_play is not None and self._first_play[0] == item_id:
            self.stats.played_latencies_ms.append(now_ms - self._first_play[1])
            self._first_play = None
            self.timeline.answer_heard(now_ms)

    def stop_waiting(self) -> None:
        """No answer is awaited any more (a response without audio, a lost link)."""
        self.waiting_since_ms = None

    def abandon(self) -> None:
        """The answer will never be heard as one (the caller went on, a watchdog gave up)."""
        self.waiting_since_ms = None
        self._speech_end_ms = None

    def cut(self) -> None:
        """A barge-in cut the answer before its first frame was heard: no latency figure."""
        self._first_play = None

    def overdue_ms(self, now_ms: int) -> int | None:
        """How long the awaited answer is overdue, once ``no_audio_timeout_ms`` has passed."""
        if self.waiting_since_ms is None or now_ms - self.waiting_since_ms < self.no_audio_timeout_ms:
            return None
        return now_ms - self.waiting_since_ms

    def deadline_ms(self) -> int | None:
        return None if self.waiting_since_ms is None else self.waiting_since_ms + self.no_audio_timeout_ms
