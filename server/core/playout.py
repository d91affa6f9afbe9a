"""What the caller has actually heard: framing and the playout ledger.

Deltas from OpenAI arrive faster than real time and in arbitrary sizes. ``Framer`` cuts them into
exact 160-byte (20 ms) µ-law frames; the TX loop sends one frame per 20 ms of its sample clock, so
"sent by TX" is "played" to within Twilio's jitter buffer. ``PlayoutLedger`` keeps, per assistant
item, how much audio we received (``received_ms``: the truncate clamp) and how much was played
(``played_ms``: the truncate position), plus the clock time of the last AI frame played, which
drives the echo window. Twilio mark acks confirm playback; after a ``clear`` Twilio echoes the
pending marks too, so a cleared mark is remembered and its echo is not taken as "heard".

The ledger is also the one owner of "what is still to play": the core sees every chunk it queues
(``on_received``), every frame the TX loop sends (``on_frame_played``), every response whose end it
queued (``on_audio_ended``) and the TX loop's word that a response's last frame and tail silence
went out (``on_playout_finished``); a ``clear`` empties it. So the shell never copies its queue
depths into the facts: ``drained`` is "both queues empty" and ``queues`` the figures operators read
in the drain lines (frames of chunks already being played; chunks not started yet).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from server.core.ulaw import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, SILENCE_BYTE


class Framer:
    """Bytes in, exact 160-byte frames out; ``flush`` pads the tail with µ-law silence."""

    def __init__(self) -> None:
        self._rest = b""

    def push(self, audio: bytes) -> list[bytes]:
        data = self._rest + audio
        whole = len(data) - len(data) % FRAME_BYTES
        self._rest = data[whole:]
        return [data[i:i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]

    def flush(self) -> list[bytes]:
        if not self._rest:
            return []
        frame = self._rest + bytes([SILENCE_BYTE]) * (FRAME_BYTES - len(self._rest))
        self._rest = b""
        return [frame]


@dataclass
class ItemPlayout:
    response_id: str
    received_ms: int = 0
    played_ms: int = 0


@dataclass
class _Chunk:
    response_id: str
    size: int
    left: int


@dataclass
class PlayoutLedger:
    items: dict[str, ItemPlayout] = field(default_factory=dict)
    last_ai_frame_played_at_ms: int | None = None
    marks_pending: list[str] = field(default_factory=list)
    marks_cleared: list[str] = field(default_factory=list)
    _chunks: deque = field(default_factory=deque)
    """Chunks queued for the caller and not wholly played yet, oldest first."""
    _ending: set = field(default_factory=set)
    """Responses whose end was queued and whose last frame has not gone out yet."""

    def on_received(self, response_id: str, item_id: str, nbytes: int) -> ItemPlayout:
        """A chunk of the response's audio is queued for the caller."""
        item = self.items.setdefault(item_id, ItemPlayout(response_id))
        item.received_ms += nbytes // BYTES_PER_MS
        if nbytes:
            self._chunks.append(_Chunk(response_id, nbytes, nbytes))
        return item

    def on_frame_played(self, item_id: str, now_ms: int) -> None:
        item = self.items.get(item_id)
        if item is not None:
            item.played_ms = min(item.played_ms + FRAME_MS, item.received_ms)
        self.last_ai_frame_played_at_ms = now_ms
        left = FRAME_BYTES                  # a frame can span the end of one chunk and the start of the next
        while left and self._chunks:
            head = self._chunks[0]
            taken = min(left, head.left)
            head.left -= taken
            left -= taken
            if head.left == 0:
                self._chunks.popleft()

    def on_audio_ended(self, response_id: str) -> None:
        self._ending.add(response_id)

    def on_playout_finished(self, response_id: str) -> None:
        """The response's last frame and its tail silence went out (a last partial frame goes padded,
        as silence: its bytes are not reported played, so they leave the ledger here)."""
        self._ending.discard(response_id)
        self._chunks = deque(c for c in self._chunks if c.response_id != response_id)

    @property
    def unplayed_ms(self) -> int:
        return sum(c.left for c in self._chunks) // BYTES_PER_MS

    @property
    def drained(self) -> bool:
        """Nothing left to play: every chunk played and every queued end gone out."""
        return not self._chunks and not self._ending

    def queues(self) -> tuple[int, int]:
        """(frames of chunks being played, chunks not started): the TX queue and the out queue."""
        started = [c for c in self._chunks if c.left < c.size]
        return -(-sum(c.left for c in started) // FRAME_BYTES), len(self._chunks) - len(started)

    def audible_or_echoing(self, now_ms: int, echo_window_ms: int) -> bool:
        last = self.last_ai_frame_played_at_ms
        return last is not None and now_ms - last < echo_window_ms

    def truncate_point_ms(self, item_id: str) -> int:
        """Where to truncate: what was played, never past what was received."""
        item = self.items.get(item_id)
        return 0 if item is None else min(item.played_ms, item.received_ms)

    def on_mark_sent(self, name: str) -> None:
        self.marks_pending.append(name)

    def on_mark_acked(self, name: str) -> bool:
        """True if the ack means the audio before the mark was really played."""
        if name in self.marks_cleared:
            self.marks_cleared.remove(name)
            return False
        if name in self.marks_pending:
            self.marks_pending.remove(name)
            return True
        return False

    def on_clear(self) -> None:
        self.marks_cleared.extend(self.marks_pending)
        self.marks_pending.clear()
        self._chunks.clear()
        self._ending.clear()
