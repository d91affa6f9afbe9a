"""The AI's audio on its way to the caller (pure): queued, played, drained, marked, cleared.

One owner for "what the caller hears of the AI": the playout ledger (what was queued and played,
per item: the truncate point; the echo window; what is still to play), the response whose audio
is audible (the one owner of "the AI is speaking"), one drain check per response whose audio
ended (``response.output_audio.done`` arrives long before the caller heard the audio; the check
polls the ledger every ``drain_poll_ms`` and clears "speaking" once both queues are empty, or
``drain_timeout_ms`` after the queued audio should have played), and the ``assistant_tts_end``
mark sent after the last frame of a response, whose ack says the caller heard it all.
"""
from __future__ import annotations

from server.core.drain import DrainCheck, Drained, DrainTimedOut
from server.core.events import (AssistantFramePlayed, ClearPlayback, CoreAction, EndAssistantAudio,
                                QueueAssistantAudio, SendMark, TruncateAssistant, note)
from server.core.playout import PlayoutLedger
from server.core.timeline import Timeline
from server.core.ulaw import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, energy

TTS_END_MARK = "assistant_tts_end"


class Playback:
    def __init__(self, drain_timeout_ms: int, echo_window_ms: int, timeline: Timeline) -> None:
        self.drain_timeout_ms = drain_timeout_ms
        self.echo_window_ms = echo_window_ms
        self.timeline = timeline
        self.ledger = PlayoutLedger()
        self.playing: str | None = None
        """The response whose audio is playing (None: the AI is quiet)."""
        self.drains: dict[str, DrainCheck] = {}

    @property
    def audible(self) -> bool:
        return self.playing is not None

    def echo_blocked(self, now_ms: int) -> bool:
        return self.ledger.audible_or_echoing(now_ms, self.echo_window_ms)

    def queue(self, response_id: str, item_id: str, audio: bytes, first: bool, out: list[CoreAction]) -> None:
        """Audio of a response goes to the caller; ``first``: it is the response's first."""
        self.ledger.on_received(response_id, item_id, len(audio))
        if first:
            self.playing = response_id
            out.append(note('INFO', 'tts_start', frames=len(audio) // 160))
        out.append(QueueAssistantAudio(response_id, item_id, audio))

    def end(self, response_id: str, now_ms: int, out: list[CoreAction]) -> None:
        """The response's audio is all queued: its end goes after it, and one drain check starts."""
        tx_frames, out_chunks = self.ledger.queues()
        out.append(note('INFO', 'audio_done', response_id=response_id, tx_frames=tx_frames, out_chunks=out_chunks))
        self.drains[response_id] = DrainCheck(response_id, now_ms, self.drain_timeout_ms, self.ledger.unplayed_ms)
        self.ledger.on_audio_ended(response_id)
        out.append(EndAssistantAudio(response_id))

    def played(self, ev: AssistantFramePlayed, on_frame) -> None:
        """Each frame of the message is placed at its own play slot (the echo reference, via
        ``on_frame(at_ms, energy)``, and the ledger advance 20 ms per frame)."""
        self.timeline.run(ev.now_ms, ev.now_ms + max(FRAME_MS, len(ev.audio) // BYTES_PER_MS), "playout", "ai_audio")
        if not ev.audio:
            self.ledger.on_frame_played(ev.item_id, ev.now_ms)
            return
        for offset in range(0, len(ev.audio), FRAME_BYTES):
            at_ms = ev.now_ms + offset // BYTES_PER_MS
            self.ledger.on_frame_played(ev.item_id, at_ms)
            on_frame(at_ms, energy(ev.audio[offset:offset + FRAME_BYTES]))

    def finished(self, response_id: str, cancelled: bool, out: list[CoreAction]) -> None:
        """The response's last frame and tail silence went out: the mark follows (not for a cancelled one)."""
        self.ledger.on_playout_finished(response_id)
        if not cancelled:
            self.ledger.on_mark_sent(TTS_END_MARK)
            out.append(SendMark(TTS_END_MARK))
            out.append(note('INFO', 'mark_sent', name=TTS_END_MARK))

    def acked(self, name: str, out: list[CoreAction]) -> bool:
        """A mark came back: True when it says the caller heard everything played."""
        if not self.ledger.on_mark_acked(name):
            out.append(note('DEBUG', 'mark_ignored', name=name))
            return False
        out.append(note('INFO', 'mark_ack', name=name))
        return name == TTS_END_MARK and not self.ledger.marks_pending

    def poll_drains(self, now_ms: int, active_response_id: str | None, out: list[CoreAction]) -> bool:
        """Poll every drain check against the ledger; True when the AI stopped being audible."""
        stopped = False
        for response_id, check in list(self.drains.items()):
            result = check.poll(now_ms, self.ledger.drained, active_response_id)
            if result is None:
                continue
            del self.drains[response_id]
            if isinstance(result, Drained):
                stopped = True
                out.append(note('INFO', 'drained', after_ms=result.after_ms, response_id=response_id))
            elif isinstance(result, DrainTimedOut):
                stopped = True
                tx_frames, out_chunks = self.ledger.queues()
                out.append(note('INFO', 'drain_timeout', timeout_s=self.drain_timeout_ms / 1000, tx_frames=tx_frames,
                                out_chunks=out_chunks))
            else:
                out.append(note('DEBUG', 'drain_superseded', response_id=response_id,
                                newer_response_id=result.newer_response_id))
        return stopped

    def shift_drains(self, paused_ms: int) -> None:
        for check in self.drains.values():
            check.deadline_ms += paused_ms          # nothing drained while paused

    def clear(self, item_id: str | None, out: list[CoreAction]) -> None:
        """A barge-in: nothing queued may reach the caller; the item is truncated at what was played."""
        out.append(ClearPlayback())
        self.ledger.on_clear()
        if item_id is not None:
            out.append(TruncateAssistant(item_id, self.ledger.truncate_point_ms(item_id)))
        self.drains.pop(self.playing, None)
        self.playing = None
