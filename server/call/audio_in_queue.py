"""``realtime_audio_in_queue``: the one path of caller audio to OpenAI, and the markers that follow it.

A commit (and the ``response.create`` after it) must reach OpenAI after every frame forwarded
before the end of utterance, so markers travel in the same queue as the audio, in order. The
queue is bounded in audio bytes: when the model link stalls, the oldest *audio* is dropped and
counted, never a marker and never the newest audio (a plain bounded queue would do the opposite: drop the
marker or move it behind newer audio, and lose the new frame uncounted).

One consumer (the audio sender) blocks in ``get``; producers never block.
"""
from __future__ import annotations

from collections import deque

from server import green


class AudioInQueue:
    def __init__(self, max_audio_bytes: int) -> None:
        self.max_audio_bytes = max_audio_bytes
        self.dropped_audio = 0
        """Audio messages dropped (oldest first) to keep within ``max_audio_bytes``."""
        self._items: deque = deque()
        self._audio_bytes = 0
        self._bell = green.Bell()          # rung on every put; the consumer sleeps on it

    def put(self, item) -> None:
        if isinstance(item, bytes):
            self._audio_bytes += len(item)
        self._items.append(item)
        while self._audio_bytes > self.max_audio_bytes and self._drop_oldest_audio(keep=item):
            pass
        self._bell.ring()

    def get(self):
        while not self._items:
            self._bell.wait()
        item = self._items.popleft()
        if isinstance(item, bytes):
            self._audio_bytes -= len(item)
        return item

    def __len__(self) -> int:
        return len(self._items)

    def _drop_oldest_audio(self, keep) -> bool:
        for index, item in enumerate(self._items):
            if isinstance(item, bytes) and item is not keep:
                del self._items[index]
                self._audio_bytes -= len(item)
                self.dropped_audio += 1
                return True
        return False
