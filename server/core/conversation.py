"""The call's conversation as text (pure): what the caller and the AI said, and the tools' answers.

Kept in order, it is replayed into a new model session after a lost link or a renewal
(``replay``) and stored with the call. An AI reply the caller never heard (abandoned during the
hold, deleted from the model's conversation) is left out. The caller's words also feed the lead
(a partial lead can be filled from them).
"""
from __future__ import annotations

from server.core import realtime_protocol as rt
from server.core.events import CoreAction, note
from server.leads.capture import LeadCapture


class Conversation:
    def __init__(self, stats=None) -> None:
        self.stats = stats
        """``CallStats``: the input transcriptions' billed seconds and tokens are counted there."""
        self.turns: list[tuple[str, str]] = []
        """(role, text) of every transcribed turn, in order."""
        self.caller_turns = 0
        """Caller turns answered (``conversation_index`` in the operators' lines)."""

    def __iter__(self):
        return iter(self.turns)

    def __len__(self) -> int:
        return len(self.turns)

    def replay(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.turns)

    def ai_said(self, e: rt.TranscriptDone, unheard: bool, out: list[CoreAction]) -> None:
        if unheard:                      # never heard, and deleted from the model's conversation
            out.append(note('INFO', 'hold_transcript_dropped', response_id=e.response_id, transcript=e.transcript))
            return
        if e.transcript:
            self.turns.append(("assistant", e.transcript))
        out.append(note('INFO', 'ai_said', transcript=e.transcript))

    def caller_said(self, e: rt.InputTranscription, lead: LeadCapture | None, last_utterance_ms: int,
                    out: list[CoreAction]) -> None:
        if self.stats is not None:
            self.stats.transcription_s += e.seconds
            self.stats.transcription_tokens += e.tokens
        if e.transcript:
            self.turns.append(("user", e.transcript))
            if lead is not None:
                lead.on_caller_text(e.transcript)
        out.append(note('INFO', 'asr_text', transcript=e.transcript, last_utterance_ms=last_utterance_ms))

    def tool_answered(self, tool: str, output: str) -> None:
        self.turns.append(("system", f"{tool} answered: {output}"))

    def caller_turn(self, end_ms: int, duration_ms: int, out: list[CoreAction]) -> None:
        self.caller_turns += 1
        out.append(note('INFO', 'utterance_triggering', end_ms=end_ms, dur=duration_ms))
        out.append(note('INFO', 'trigger_response', conversation_index=self.caller_turns))
