"""The AI's replies in the model's conversation: once heard whole, re-read as text (pure).

Every response reads the whole conversation again as input, and the AI's own audio is the dearest
part of it: 1 token per 50 ms at the audio input price (gpt-realtime: $32 per 1M), against a few
text tokens at $4 per 1M for the words it said. A reply the caller heard to the end gains nothing
from staying audio (its transcript is exactly what it said; truncation, the one edit a spoken
reply needs, can no longer happen), so it is replaced by an assistant text message in the same
place: ``AudioReplyAsText`` (the shell inserts the text item after the audio one, then deletes the
audio one). Nothing before it changes, so the prompt cache keeps its prefix.

A reply stays audio when the caller did not hear it whole: truncated at a barge-in, deleted as
abandoned in a hold, or when a response is in flight or owed (a tool's follow-up) at the moment:
the next full playout converts it. Items of a session that was lost are forgotten (the new session was given text).
Which items were truncated or deleted is read from the core's own verbs (``watch``), so no other
part has to report them.
"""
from __future__ import annotations

from server.core import realtime_protocol as rt
from server.core.events import (AudioReplyAsText, CoreAction, DeleteItem, Reconnect, ReplayConversation,
                                TruncateAssistant, note)


class ReplyHistory:
    def __init__(self) -> None:
        self._spoken: dict[str, str] = {}
        """item id -> transcript of each audio reply not yet converted, in order."""
        self._edited: set[str] = set()
        """Items truncated or deleted: they stay as they are (a late transcript does not bring one back)."""

    def said(self, e: rt.TranscriptDone, unheard: bool) -> None:
        if not unheard and e.transcript.strip() and e.item_id not in self._edited:
            self._spoken[e.item_id] = e.transcript

    def watch(self, out: list[CoreAction]) -> None:
        """The core's verbs of one event: truncated and deleted items are left alone; a new session forgets."""
        for action in out:
            if isinstance(action, (TruncateAssistant, DeleteItem)):
                self._edited.add(action.item_id)
                self._spoken.pop(action.item_id, None)
            elif isinstance(action, (ReplayConversation, Reconnect)):
                self._spoken.clear()

    def heard_whole(self, response_in_flight: bool, out: list[CoreAction]) -> None:
        """The caller heard everything played so far: its replies become text (not under a response)."""
        if response_in_flight or not self._spoken:
            return
        for item_id, transcript in self._spoken.items():
            out.append(AudioReplyAsText(item_id, transcript))
        out.append(note('DEBUG', 'replies_as_text', count=len(self._spoken)))
        self._edited.update(self._spoken)
        self._spoken.clear()
