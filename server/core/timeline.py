"""The picture of one call as data: spans and events per lane, on the call's own clock.

Theory of operation. The core already states everything that happens in a call: as notes (the
operators' log vocabulary, ``log_lines``) and as a few facts it handles itself (a caller frame
forwarded to the model or held back as possible echo, an AI frame played). ``Timeline`` turns
them into the compact record kept with the call (``calls.timeline_json``) and drawn by
``server/web/timeline_svg.py``. Reading notes instead of adding a second set of hooks keeps one owner
of "what happened": a line an operator greps for and a mark on the picture come from the same
``note``; ``NOTE_EVENTS`` is the table that maps one to the other.

Lanes, top to bottom: ``caller`` (speech the VAD heard, ends of utterance, barge-ins,
backchannels), ``gate`` (caller audio forwarded to the model, audio held back inside the echo
window, reply holds), ``model`` (``response.create``, each response from created to done, tool
calls, errors, silence prompts) and ``playout`` (AI audio as played to the caller, marks). Events
of the whole call (hangup, link lost or restored, shutdown) are on the lane ``call``.

Times are integer ms from the first fact of the call. Runs of frames (forwarded, held back,
played) closer than ``RUN_GAP_MS`` are one span. The record is bounded: past ``MAX_ITEMS`` spans
and events, later ones are only counted (``dropped``), so a long call never grows a row without
bound. Format ``v`` 1: ``{"v", "duration_ms", "lanes", "spans": [{lane, kind, from_ms, to_ms,
label}], "events": [{lane, kind, t_ms, label}], "latencies": [{eou_ms, create_ms,
first_audio_ms}], "dropped"}``.
"""
from __future__ import annotations

from typing import Callable

from server.core.events import Note

LANES = ("caller", "gate", "model", "playout")
RUN_GAP_MS = 100
MAX_ITEMS = 3000


def _label(template: str) -> Callable[[dict], str]:
    return lambda fields: template.format(**fields)


NOTE_EVENTS: dict[str, tuple[str, str, Callable[[dict], str]]] = {
    # note code: (lane, kind, label from the note's fields)
    'utterance_triggering': ("caller", "end_of_utterance", _label("after {dur} ms of speech")),
    'utterance_vetoed': ("caller", "not_speech", _label("steady sound")),
    'utterance_room': ("caller", "not_speech", _label("not the caller: {level_db} dB")),
    'barge_in': ("caller", "barge_in", _label("{sound_ms} ms")),
    'backchannel': ("caller", "backchannel", _label("{sound_ms} ms")),
    'echo_gate_opened': ("gate", "opened", _label("")),
    'utterance_echo_blocked': ("gate", "blocked_utterance", _label("echo: no answer")),
    'hold_armed': ("gate", "hold", _label("")),
    'hold_released': ("gate", "release", _label("{silence_ms} ms quiet")),
    'hold_resumed': ("gate", "resumed", _label("caller went on")),
    'response_create_sent': ("model", "response.create", _label("{reason}")),
    'lead_tool_answer': ("model", "tool_call", _label("{name}: {status}")),
    'tool_without_lead': ("model", "tool_call", _label("{name}")),
    'tool_unknown': ("model", "tool_call", _label("{name}: unknown")),
    'tool_io': ("model", "tool_io", _label("{name}")),
    'tool_io_done': ("model", "tool_io", _label("{name} done (error: {error})")),
    'slots_offered': ("model", "booking", _label("{count} times offered")),
    'visit_booked': ("model", "booking", _label("booked {start}")),
    'visit_taken': ("model", "booking", _label("taken: {start}")),
    'calendar_unavailable': ("model", "booking", _label("calendar unavailable")),
    'realtime_error': ("model", "error", _label("{code}")),
    'response_failed': ("model", "error", _label("{code}")),
    'watchdog_no_created': ("model", "error", _label("no response.created")),
    'watchdog_no_audio': ("model", "error", _label("no audio")),
    'silence_prompt': ("model", "silence_prompt", _label("{warnings}/{max_silence_warnings}")),
    'silence_goodbye': ("model", "silence_prompt", _label("goodbye")),
    'playout_paused': ("playout", "paused", _label("")),
    'mark_ack': ("playout", "mark", _label("{name}")),
    'link_lost': ("call", "reconnect", _label("link lost")),
    'link_restored': ("call", "reconnect", _label("restored")),
    'shutdown_requested': ("call", "shutdown", _label("")),
    'hangup': ("call", "hangup", _label("{reason}")),
    'transfer_now': ("call", "transfer", _label("{reason}")),
    'transfer_requested': ("model", "transfer", _label("{reason}")),
    'transfer_unavailable': ("model", "transfer", _label("unavailable: {why}")),
    'keypad': ("caller", "keypad", _label("{digit}: {action}")),
}


class Timeline:
    def __init__(self) -> None:
        self._origin_ms: int | None = None
        self._last_ms = 0
        self.spans: list[dict] = []
        self.events: list[dict] = []
        self.latencies: list[dict] = []
        self.dropped = 0
        self._runs: dict[tuple[str, str], dict] = {}       # the latest span of each run kind
        self._responses: dict[str, dict] = {}             # open model responses by id

    def _t(self, now_ms: int) -> int:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        t_ms = max(0, now_ms - self._origin_ms)
        self._last_ms = max(self._last_ms, t_ms)
        return t_ms

    def _room(self) -> bool:
        if len(self.spans) + len(self.events) < MAX_ITEMS:
            return True
        self.dropped += 1
        return False

    # --- what the core tells it -------------------------------------------------------------

    def on_notes(self, now_ms: int, actions) -> None:
        """The notes among a batch of the core's actions (cheap: a lookup per action)."""
        self._t(now_ms)
        for action in actions:
            if type(action) is Note:
                self.on_note(now_ms, action)

    def on_note(self, now_ms: int, n: Note) -> None:
        if n.code == 'response_created':
            self._response_created(now_ms, n.get('response_id'))
        elif n.code == 'response_done':
            self._response_done(now_ms, n.get('response_id'), n.get('status'))
        mapped = NOTE_EVENTS.get(n.code)
        if mapped is not None:
            lane, kind, label = mapped
            self.event(now_ms, lane, kind, label(dict(n.fields)))

    def event(self, now_ms: int, lane: str, kind: str, label: str = "") -> None:
        t_ms = self._t(now_ms)
        if self._room():
            self.events.append({"lane": lane, "kind": kind, "t_ms": t_ms, "label": label[:60]})

    def span(self, from_now_ms: int, to_now_ms: int, lane: str, kind: str, label: str = "") -> None:
        from_ms, to_ms = self._t(from_now_ms), self._t(to_now_ms)
        if self._room():
            self.spans.append({"lane": lane, "kind": kind, "from_ms": from_ms, "to_ms": max(from_ms, to_ms),
                               "label": label[:60]})

    def run(self, from_now_ms: int, to_now_ms: int, lane: str, kind: str) -> None:
        """Frames of one kind: joined to the latest span of that kind when they follow it closely."""
        from_ms, to_ms = self._t(from_now_ms), self._t(to_now_ms)
        last = self._runs.get((lane, kind))
        if last is not None and from_ms - last["to_ms"] <= RUN_GAP_MS:
            last["to_ms"] = max(last["to_ms"], to_ms)
            return
        if self._room():
            last = {"lane": lane, "kind": kind, "from_ms": from_ms, "to_ms": max(from_ms, to_ms), "label": ""}
            self.spans.append(last)
            self._runs[(lane, kind)] = last

    def turn_ended(self, speech_end_now_ms: int) -> None:
        """A caller turn that asks for an answer: its latency figures follow."""
        if len(self.latencies) < MAX_ITEMS // 10:
            self.latencies.append({"eou_ms": self._t(speech_end_now_ms)})

    def response_requested(self, now_ms: int) -> None:
        if self.latencies and "create_ms" not in self.latencies[-1]:
            self.latencies[-1]["create_ms"] = self._t(now_ms)

    def answer_heard(self, now_ms: int) -> None:
        if self.latencies and "first_audio_ms" not in self.latencies[-1]:
            self.latencies[-1]["first_audio_ms"] = self._t(now_ms)

    def _response_created(self, now_ms: int, response_id: str) -> None:
        t_ms = self._t(now_ms)
        if self._room():
            span = {"lane": "model", "kind": "response", "from_ms": t_ms, "to_ms": t_ms, "label": ""}
            self.spans.append(span)
            self._responses[response_id] = span

    def _response_done(self, now_ms: int, response_id: str, status: str) -> None:
        span = self._responses.pop(response_id, None)
        if span is not None:
            span["to_ms"], span["label"] = self._t(now_ms), str(status)

    # --- the record -------------------------------------------------------------------------

    def to_dict(self, end_now_ms: int | None = None) -> dict:
        """The stored record; responses still open at the end run to the end of the call."""
        duration_ms = self._t(end_now_ms) if end_now_ms is not None and self._origin_ms is not None else self._last_ms
        for span in self._responses.values():
            span["to_ms"], span["label"] = duration_ms, "open at the end"
        return {"v": 1, "duration_ms": duration_ms, "lanes": list(LANES), "spans": list(self.spans),
                "events": list(self.events), "latencies": [dict(x) for x in self.latencies], "dropped": self.dropped}
