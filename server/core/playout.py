"""What the caller has actually heard: framing and the playout ledger.

Deltas from OpenAI arrive faster than real time and in arbitrary sizes. ``Framer`` cuts them into
exact 160-byte (20 ms) µ-law frames; the TX loop sends one frame per 20 ms of its sample clock, so
"sent by TX" is "played" to within Twilio's jitter buffer. ``PlayoutLedger`` keeps, per assistant
item, how much audio we received (``received_ms``: the truncate clamp) and how much was played
(``played_ms``: the truncate position), plus the clock time of the last AI frame played, which
drives the echo window. Twilio mark acks confirm playback; after a ``clear`` Twilio echoes the
pending marks too, so a cleared mark is remembered and its echo is not taken as "heard".
"""
from __future__ import annotations

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
class PlayoutLedger:
    items: dict[str, ItemPlayout] = field(default_factory=dict)
    last_ai_frame_played_at_ms: int | None = None
    marks_pending: list[str] = field(default_factory=list)
    marks_cleared: list[str] = field(default_factory=list)

    def on_received(self, response_id: str, item_id: str, nbytes: int) -> ItemPlayout:
        item = self.items.setdefault(item_id, ItemPlayout(response_id))
        item.received_ms += nbytes // BYTES_PER_MS
        return item

    def on_frame_played(self, item_id: str, now_ms: int) -> None:
        item = self.items.get(item_id)
        if item is not None:
            item.played_ms = min(item.played_ms + FRAME_MS, item.received_ms)
        self.last_ai_frame_played_at_ms = now_ms

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
