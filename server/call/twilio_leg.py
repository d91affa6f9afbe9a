"""The Twilio leg of one call: our side of the media socket, both directions.

* RX (``receive``, the request's own green thread): every inbound message becomes a fact for the
  core (a caller frame, a mark's ack, a keypad digit) or the call's end (``stop``, a closed socket);
  bad input is counted and ignored, logged at a bounded rate.
* TX (``tx_loop``): the assistant audio the core queued (``queue_audio``, ``end_audio``) is cut
  into exact 160-byte frames and sent two whole frames per media message, paced by deadline from
  the frame count (``Pacer``), then tail silence and the response's end (``AssistantPlayoutFinished``).
  Every frame sent is reported (``AssistantFramePlayed``): the core's playout ledger, not this
  leg, knows what is still to play.
* ``pause``/``resume`` hold the TX loop where it is while the core judges a sound over the AI;
  ``clear`` (a barge-in) drops everything queued and sends Twilio's ``clear``.
* A ``CallRecorder`` (when the business records) taps both directions.

It reports facts through ``report`` and asks the call to end through ``stop``; it decides nothing.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Callable

from simple_websocket import ConnectionClosed

from server import green
from server.core import twilio_codec as tw
from server.core.events import AssistantFramePlayed, AssistantPlayoutFinished, CallerDigit, CallerFrame, MarkAcked
from server.core.pacer import Pacer
from server.core.playout import Framer
from server.core.ulaw import BYTES_PER_MS, FRAME_MS, silence

AUDIO_OUT_QUEUE_CHUNKS = 2000
TX_LEAD_MS = 40                      # frames go out this far ahead of their play time (jitter margin)
TX_FRAMES_PER_MESSAGE = 2            # 40 ms per Twilio media message: half the sends and wake-ups of 20 ms
TX_RESYNC_MS = 200                   # a TX loop this late restarts its clock instead of bursting
STOP = object()                      # put in the out queue: the TX loop ends


@dataclass(frozen=True)
class _EndOfResponse:
    response_id: str


class TwilioLeg:
    def __init__(self, ws, report: Callable[[object], None], stop: Callable[[str], None], stopping: green.Event,
                 tail_silence_ms: int, tx_lateness=None) -> None:
        self.ws, self.report, self.stop, self.stopping = ws, report, stop, stopping
        self.tail_silence_ms, self.tx_lateness = tail_silence_ms, tx_lateness
        self.log: logging.LoggerAdapter | logging.Logger = logging.getLogger(__name__)
        self.stream_sid = ""
        self.recorder = None               # a CallRecorder when the business records
        self.malformed_in = 0
        self._lock = green.Lock()
        self._out_q = green.Queue(AUDIO_OUT_QUEUE_CHUNKS)    # realtime_audio_out_queue
        self._tx_q: deque = deque()
        self._framer = Framer()
        self._paused = False               # PausePlayout .. ResumePlayout / ClearPlayback
        self._generation = 0               # a clear starts a new one: frames of the old never go out
        self._caller_audio_ms = 0

    # --- what the core's verbs do here ----------------------------------------------------------

    def send(self, text: str) -> bool:
        with self._lock:
            try:
                self.ws.send(text)
                return True
            except ConnectionClosed:
                self.stop("twilio_closed")
                return False

    def queue_audio(self, response_id: str, item_id: str, audio: bytes) -> None:
        self._out_q.put((response_id, item_id, audio))

    def end_audio(self, response_id: str) -> None:
        self._out_q.put(_EndOfResponse(response_id))

    def mark(self, name: str) -> None:
        self.send(tw.mark_message(self.stream_sid, name))

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def clear(self) -> None:
        """Barge-in: nothing queued before this point may reach the caller."""
        self._generation += 1
        self._paused = False
        if self.recorder is not None:
            self.recorder.cleared(green.monotonic_ms())
        self._tx_q.clear()
        self._framer = Framer()
        while True:
            try:
                self._out_q.get_nowait()
            except green.Empty:
                break
        self.send(tw.clear_message(self.stream_sid))

    def close_tx(self) -> None:
        try:
            self._out_q.put_nowait(STOP)
        except green.Full:
            pass

    # --- RX ---------------------------------------------------------------------------------

    def receive(self) -> None:
        while not self.stopping.is_set():
            try:
                text = self.ws.receive(timeout=0.2)
            except ConnectionClosed:
                self.stop("caller_hung_up")
                return
            if text is None:
                continue
            event = tw.parse(text)
            now_ms = green.monotonic_ms()
            if isinstance(event, tw.Media):
                audio = event.audio()
                if not audio:
                    continue
                self._caller_audio_ms += max(1, len(audio) // BYTES_PER_MS)   # duration from the audio itself
                self.report(CallerFrame(audio, self._caller_audio_ms, now_ms))
                if self.recorder is not None:
                    self.recorder.anchor(self._caller_audio_ms, now_ms)
                    self.recorder.caller(audio, self._caller_audio_ms)
            elif isinstance(event, tw.Mark):
                self.report(MarkAcked(event.name, now_ms))
            elif isinstance(event, tw.Stop):
                self.log.info("[TWILIO] stop received")
                self.stop("caller_hung_up")
            elif isinstance(event, tw.Dtmf):
                self.report(CallerDigit(event.digit, now_ms))
            elif isinstance(event, tw.Start):
                self.ignored_input(f"second start (stream {event.stream_sid}) rejected")
            elif isinstance(event, (tw.MalformedTwilioMessage, tw.UnknownTwilioEvent)):
                self.ignored_input(str(event))

    def ignored_input(self, what: str) -> None:
        """Bad input is counted and ignored; logged for the first few, then every 100th (bounded rate)."""
        self.malformed_in += 1
        if self.malformed_in <= 5 or self.malformed_in % 100 == 0:
            self.log.warning("[TWILIO] ignored input #%d: %s", self.malformed_in, what[:200])

    # --- TX ---------------------------------------------------------------------------------

    def tx_loop(self) -> None:
        pacer = Pacer(FRAME_MS, TX_LEAD_MS, TX_RESYNC_MS, self.tx_lateness)
        media = tw.media_encoder(self.stream_sid)
        while not self.stopping.is_set():
            if self._paused:
                green.sleep(FRAME_MS / 2000.0)
                pacer.restart()                      # resume at once, on a fresh clock
                continue
            if not self._tx_q:
                if not self._refill():
                    continue
                pacer.starved(green.monotonic_ms())
            entry = self._tx_q.popleft()
            generation = self._generation
            now_ms = green.monotonic_ms()
            due_ms = pacer.due_ms(now_ms)
            if due_ms > now_ms:
                green.sleep((due_ms - now_ms) / 1000.0)
            if generation != self._generation:
                pacer.restart()
                continue                  # cleared while we waited for this frame's turn
            if self._paused:
                self._tx_q.appendleft(entry)   # paused while we waited: this frame goes out on resume
                continue
            kind, key, frame = entry
            if kind == "end":
                self.report(AssistantPlayoutFinished(key, green.monotonic_ms()))
                continue
            frames = [frame]                 # whole frames of one item, TX_FRAMES_PER_MESSAGE per message
            while len(frames) < TX_FRAMES_PER_MESSAGE and self._tx_q and self._tx_q[0][:2] == (kind, key):
                frames.append(self._tx_q.popleft()[2])
            audio = b"".join(frames)
            if not self.send(media(audio)):
                return
            sent_ms = green.monotonic_ms()
            pacer.sent(sent_ms, len(frames))
            if kind == "ai":
                self.report(AssistantFramePlayed(key, sent_ms, audio))
                if self.recorder is not None:
                    self.recorder.played(audio, sent_ms)

    def _refill(self) -> bool:
        try:
            item = self._out_q.get(timeout=0.1)
        except green.Empty:
            return False
        if item is STOP:
            self.stopping.set()
            return False
        if isinstance(item, _EndOfResponse):
            tail = self._framer.flush() + [silence(FRAME_MS)] * (self.tail_silence_ms // FRAME_MS)
            self._tx_q.extend(("pad", "", f) for f in tail)
            self._tx_q.append(("end", item.response_id, b""))
        else:
            _, item_id, audio = item
            self._tx_q.extend(("ai", item_id, f) for f in self._framer.push(audio))
        return bool(self._tx_q)
