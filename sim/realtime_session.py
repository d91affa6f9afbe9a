"""One simulated OpenAI Realtime (GA) session: the protocol behaviour, independent of sockets.

Faithful to what the real service does (see ``shared/reference/protocols.md``): ``session.created``
with the real defaults (server VAD on, pcm 24 kHz), strict GA validation of ``session.update``
(``missing_required_parameter``, ``unknown_parameter``), commits under 100 ms refused
(``input_audio_buffer_commit_empty``), one response at a time
(``conversation_already_has_active_response``), the full response event sequence with audio
deltas faster than real time after ``first_audio_delay_ms``, ``response.cancel`` (or
``response_cancel_not_active``), truncation checked against the audio actually sent
(``invalid_value``), and input transcription of committed audio.

Scripted function calls follow 1.6(d): ``response.output_item.added`` (a ``function_call`` item),
``conversation.item.added``, one or more ``response.function_call_arguments.delta``, its
``.done``, ``response.output_item.done``, ``conversation.item.done``, ``response.done``. A
``function_call_output`` must name the ``call_id`` of a ``function_call`` item in the conversation
(the SDK docstring says the server checks this). Without ``call_id`` the error is
``missing_required_parameter`` (observed, beta era); for an unknown one the code ``invalid_value``
is UNVERIFIED, and the message is the one observed for the same check on ``response.create`` input.
"""
from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from sim import audio as sim_audio
from sim.ga_validation import CLIENT_EVENT_TYPES, validate_client_event
from sim.scenario import ToolReply

VAD_SPEECH_RMS = 500.0      # about -36 dBFS: the simulated server VAD's speech level
_BYTES_PER_MS = {"audio/pcmu": 8, "audio/pcma": 8, "audio/pcm": 48}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True)
class Reply:
    """One response: a spoken clip, or (with ``tool``, and no clip) a function call."""
    clip: str | None
    transcript: str
    tool: ToolReply | None = None


def _reply(item: str | ToolReply) -> Reply:
    if isinstance(item, ToolReply):
        return Reply(None, "", tool=item)
    return Reply(item, sim_audio.clip(item).text)


@dataclass
class ReplyScript:
    """Which reply the model gives: the next one in order, then ``fallback`` forever."""
    replies: list[Reply]
    fallback: Reply | None = None
    _next: int = 0

    @classmethod
    def from_scenario_replies(cls, items: list[str | ToolReply],
                              fallback: str | None = "ai_fallback") -> "ReplyScript":
        """``Scenario.replies``: clip names and ``ToolReply`` function calls."""
        return cls([_reply(i) for i in items], _reply(fallback) if fallback else None)

    @classmethod
    def from_clips(cls, names: list[str], fallback: str | None = "ai_fallback") -> "ReplyScript":
        return cls.from_scenario_replies(names, fallback)

    def fork(self) -> "ReplyScript":
        """The script for one new session, from its start: calls at once each get their own
        conversation (one cursor shared by all sessions made concurrent calls take each other's replies)."""
        return ReplyScript(self.replies, self.fallback)

    def skip(self) -> None:
        """A reply this conversation already had (replayed into a new session after a reconnect)."""
        self._next = min(self._next + 1, len(self.replies))

    def next_reply(self) -> Reply | None:
        if self._next < len(self.replies):
            self._next += 1
            return self.replies[self._next - 1]
        return self.fallback


@dataclass
class SimCounters:
    """What a test reads after a call."""
    sessions: int = 0
    client_events: Counter = field(default_factory=Counter)
    invalid_client_events: list = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    responses_created: int = 0
    responses_completed: int = 0
    responses_cancelled: int = 0
    commits: int = 0
    appended_ms: int = 0
    committed_ms: int = 0
    transcripts: list = field(default_factory=list)
    committed_audio: list = field(default_factory=list)   # µ-law bytes of every commit
    usage_by_session: dict = field(default_factory=dict)   # session id -> Counter of its tokens, by kind
    replies: list = field(default_factory=list)   # (clip or None, transcript, status) per response
    tool_calls: list = field(default_factory=list)      # (name, call_id, arguments_json) of each finished call
    tool_outputs: list = field(default_factory=list)    # (call_id, output) of each accepted function_call_output
    out_of_band: list = field(default_factory=list)     # (instructions, metadata, text) of each conversation-"none" text response
    log: list = field(default_factory=list)       # (monotonic_s, direction, type) of every event

    @property
    def usage(self) -> Counter:
        """Tokens billed in every response.done of every session, by kind."""
        total: Counter = Counter()
        for billed in list(self.usage_by_session.values()):
            total.update(billed)
        return total


def default_session(session_id: str) -> dict:
    return {"type": "realtime", "object": "realtime.session", "id": session_id, "model": "gpt-realtime",
            "output_modalities": ["audio"], "instructions": "", "tools": [], "tool_choice": "auto",
            "max_output_tokens": "inf", "tracing": None, "truncation": "auto", "prompt": None,
            "expires_at": int(time.time()) + 3600, "include": None,
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                                "noise_reduction": None,
                                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                                   "silence_duration_ms": 200, "idle_timeout_ms": None,
                                                   "create_response": True, "interrupt_response": True}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0}}}


def _merge(into: dict, update: dict) -> None:
    """Apply a session.update: present fields change, nested objects merge, except tagged objects
    (with a ``type``, e.g. ``format``), which are replaced whole."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict) and value and "type" not in value:
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _text_chars(item: dict) -> int:
    """The text an item adds to the prompt: its words (or a tool's output), plus a few tokens of
    message framing (the service's counts include such special tokens)."""
    words = [part.get("text") or part.get("transcript") or "" for part in item.get("content") or []]
    return sum(len(w) for w in words) + len(str(item.get("output", ""))) + 16


def _shared_tokens(prompt: list[tuple], earlier: list[tuple]) -> int:
    """Tokens of the longest run of identical leading segments of two prompts."""
    shared = 0
    for (key, text, audio), (other, _, _) in zip(prompt, earlier):
        if key != other:
            break
        shared += text + audio
    return shared


def _split_prefix(prompt: list[tuple], tokens: int) -> tuple[int, int]:
    """The first ``tokens`` of a prompt, as (text, audio) tokens."""
    text_n = audio_n = 0
    for _, text, audio in prompt:
        if tokens <= 0:
            break
        take_text = min(text, tokens)
        take_audio = min(audio, tokens - take_text)
        text_n, audio_n, tokens = text_n + take_text, audio_n + take_audio, tokens - take_text - take_audio
    return text_n, audio_n


class RealtimeSession:
    """Drive with ``on_client_text``; events go out through ``send(dict)``."""

    def __init__(self, send: Callable[[dict], None], script: ReplyScript, counters: SimCounters,
                 first_audio_delay_ms: int = 0, delta_ms: int = 200, speedup: float = 8.0,
                 fail_codes: dict[int, str] | None = None, fail_every: str | None = None) -> None:
        """``fail_codes``: response number in this session -> error code (that response fails);
        ``fail_every``: every response fails with that code (a model that is rate-limited)."""
        self._send_raw = send
        self.script = script
        self.counters = counters
        self.first_audio_delay_ms = first_audio_delay_ms
        self.delta_ms = delta_ms
        self.speedup = speedup
        self.session = default_session(_new_id("sess"))
        self.buffer = bytearray()
        self._vad = {"audio_ms": 0, "speaking": False, "run_ms": 0, "quiet_ms": 0, "item_id": None}
        self.items: dict[str, dict] = {}          # item_id -> {"role", "audio_ms"}, plus "call_id" for function calls
        self.heard: list[str] = []                # this session's caller transcripts, in order
        self.last_item_id: str | None = None
        self.last_tool_output = ""           # a scripted call's arguments may read it, as a model does
        self._prompts: list[list[tuple]] = []    # every earlier response's input, as segments: the prompt cache
        self.active: dict | None = None           # {"id", "cancel": Event}
        self.closed = threading.Event()
        self.fail_codes = dict(fail_codes or {})     # response number in this session -> error code
        self.fail_every = fail_every
        self.updated = threading.Event()          # a session.updated was sent
        self._responses_started = 0
        self._lock = threading.RLock()
        self._seq = itertools.count(1)

    # --- output -----------------------------------------------------------------------------

    def send(self, event: dict) -> None:
        event = {"type": event["type"], "event_id": f"event_{next(self._seq):06d}", **{k: v for k, v in event.items() if k != "type"}}
        with self._lock:
            self.counters.log.append((time.monotonic(), "server", event["type"]))
            if not self.closed.is_set():
                self._send_raw(event)

    def error(self, code: str | None, message: str, param: str | None = None, client_event_id: str | None = None,
              error_type: str = "invalid_request_error") -> None:
        self.counters.errors[code or "none"] += 1
        self.send({"type": "error", "error": {"type": error_type, "code": code, "message": message,
                                              "param": param, "event_id": client_event_id}})

    def start(self) -> None:
        self.counters.sessions += 1
        self.send({"type": "session.created", "session": copy.deepcopy(self.session)})

    # --- input ------------------------------------------------------------------------------

    def on_client_text(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            self.counters.invalid_client_events.append(("<not json>", ["invalid JSON"]))
            self.error("invalid_json", "We could not parse the JSON body of your request.")
            return
        if not isinstance(event, dict):          # valid JSON, but not an event object
            self.counters.invalid_client_events.append((None, ["not a JSON object"]))
            self.error("invalid_value", "Invalid value: expected a JSON object.", None)
            return
        etype = event.get("type")
        counted = str(etype)
        if etype == "response.create" and isinstance(event.get("response"), dict) \
                and event["response"].get("conversation") == "none":
            counted = "response.create (out of band)"   # counted apart: it is no turn of the conversation
        with self._lock:
            self.counters.client_events[counted] += 1
            self.counters.log.append((time.monotonic(), "client", counted))
        problems = validate_client_event(event)
        if problems:
            self.counters.invalid_client_events.append((etype, problems))
        handler = getattr(self, "_on_" + str(etype).replace(".", "_"), None)
        if etype not in CLIENT_EVENT_TYPES or handler is None:
            self.error("invalid_value", f"Invalid value: '{etype}'. Supported values are: "
                       + ", ".join(f"'{t}'" for t in sorted(CLIENT_EVENT_TYPES)) + ".", "type", event.get("event_id"))
            return
        handler(event)

    def _on_session_update(self, event: dict) -> None:
        session = event.get("session")
        if not isinstance(session, dict) or "type" not in session:
            self.error("missing_required_parameter", "Missing required parameter: 'session.type'.",
                       "session.type", event.get("event_id"))
            return
        problems = validate_client_event(event)
        if problems:
            first = problems[0]
            if first.startswith("unknown key "):
                param = first[len("unknown key "):]
                self.error("unknown_parameter", f"Unknown parameter: '{param}'.", param, event.get("event_id"))
            else:
                self.error("invalid_value", f"Invalid value in session.update: {first}", None, event.get("event_id"))
            return
        with self._lock:
            _merge(self.session, session)
        self.send({"type": "session.updated", "session": copy.deepcopy(self.session)})
        self.updated.set()

    def _bytes_per_ms(self) -> int:
        return _BYTES_PER_MS.get(self.session["audio"]["input"]["format"]["type"], 8)

    def _on_input_audio_buffer_append(self, event: dict) -> None:
        try:
            chunk = base64.b64decode(event.get("audio", ""), validate=True)
        except ValueError:
            self.error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio", event.get("event_id"))
            return
        with self._lock:
            self.buffer.extend(chunk)
            self.counters.appended_ms += len(chunk) // self._bytes_per_ms()
        self._server_vad(chunk)

    def _server_vad(self, chunk: bytes) -> None:
        """The session's own turn detection (``server_vad``, on by default; our server turns it off).
        An energy decision per 20 ms stands in for the real model's: speech after 60 ms above
        ``VAD_SPEECH_RMS`` (``input_audio_buffer.speech_started``; with ``interrupt_response`` an
        active response is cancelled), its end after ``silence_duration_ms`` below it
        (``speech_stopped``; the buffer from ``prefix_padding_ms`` before the speech is committed
        and, with ``create_response``, a response starts). µ-law input only."""
        detection = self.session["audio"]["input"].get("turn_detection")
        if not detection or detection.get("type") not in ("server_vad", "semantic_vad") or self._bytes_per_ms() != 8:
            return
        vad = self._vad
        for start in range(0, len(chunk) - 159, 160):
            vad["audio_ms"] += 20
            loud = sim_audio.envelope(chunk[start:start + 160])[0] > VAD_SPEECH_RMS
            if not vad["speaking"]:
                vad["run_ms"] = vad["run_ms"] + 20 if loud else 0
                if vad["run_ms"] >= 60:
                    self._speech_started(detection, vad["audio_ms"] - vad["run_ms"])
            else:
                vad["quiet_ms"] = 0 if loud else vad["quiet_ms"] + 20
                if vad["quiet_ms"] >= detection.get("silence_duration_ms", 500):
                    self._speech_stopped(detection, vad["audio_ms"])

    def _speech_started(self, detection: dict, onset_ms: int) -> None:
        vad = self._vad
        vad.update(speaking=True, quiet_ms=0, item_id=_new_id("item"))
        keep = (vad["audio_ms"] - onset_ms + detection.get("prefix_padding_ms", 300)) * 8
        with self._lock:
            del self.buffer[:max(0, len(self.buffer) - keep)]       # what came before is never committed
            active = self.active
        self.send({"type": "input_audio_buffer.speech_started", "item_id": vad["item_id"],
                   "audio_start_ms": max(0, onset_ms - detection.get("prefix_padding_ms", 300))})
        if active is not None and detection.get("interrupt_response", True):
            active["cancel"].set()

    def _speech_stopped(self, detection: dict, end_ms: int) -> None:
        vad = self._vad
        vad.update(speaking=False, run_ms=0)
        self.send({"type": "input_audio_buffer.speech_stopped", "item_id": vad["item_id"], "audio_end_ms": end_ms})
        self._on_input_audio_buffer_commit({})
        if detection.get("create_response", True):
            with self._lock:
                busy = self.active is not None
            if not busy:
                self._on_response_create({})

    def _on_input_audio_buffer_clear(self, event: dict) -> None:
        with self._lock:
            self.buffer.clear()
        self.send({"type": "input_audio_buffer.cleared"})

    def _on_input_audio_buffer_commit(self, event: dict) -> None:
        with self._lock:
            have_ms = len(self.buffer) / self._bytes_per_ms()
            if have_ms < 100:
                self.error("input_audio_buffer_commit_empty",
                           "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                           f"audio, but buffer only has {have_ms:.2f}ms of audio.", None, event.get("event_id"))
                return
            audio, self.buffer = bytes(self.buffer), bytearray()
            item_id, previous = _new_id("item"), self.last_item_id
            self.items[item_id] = {"role": "user", "audio_ms": int(have_ms)}
            self.last_item_id = item_id
            self.counters.commits += 1
            self.counters.committed_audio.append(audio)
            self.counters.committed_ms += int(have_ms)
        item = {"id": item_id, "type": "message", "object": "realtime.item", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous})
        self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if self.session["audio"]["input"].get("transcription"):
            threading.Thread(target=self._transcribe, args=(item_id, audio), daemon=True).start()

    def _transcribe(self, item_id: str, audio: bytes) -> None:
        time.sleep(0.3)   # the real transcription arrives asynchronously, often mid-response
        callers = [c for name, c in sim_audio.library().items() if name.startswith("caller_")]
        found, _score = sim_audio.match_clip(audio, callers) if self._bytes_per_ms() == 8 else (None, 0.0)
        transcript = found.text if found else ""
        self.counters.transcripts.append(transcript)
        self.heard.append(transcript)
        self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                   "content_index": 0, "transcript": transcript,
                   "usage": {"type": "duration", "seconds": round(len(audio) / 8000, 2)}})

    def _has_function_call(self, call_id: str) -> bool:
        with self._lock:
            return any(i["role"] == "function_call" and i.get("call_id") == call_id for i in self.items.values())

    def _on_conversation_item_create(self, event: dict) -> None:
        item = dict(event.get("item") or {})
        if item.get("type") == "function_call_output":
            call_id = item.get("call_id")
            if not call_id:
                self.error("missing_required_parameter", "Missing required parameter: 'item.call_id'.",
                           "item.call_id", event.get("event_id"))
                return
            if not self._has_function_call(call_id):   # code and message UNVERIFIED, see the module docstring
                self.error("invalid_value", f"Tool call ID '{call_id}' not found in conversation.",
                           "item.call_id", event.get("event_id"))
                return
            with self._lock:
                self.counters.tool_outputs.append((call_id, str(item.get("output", ""))))
                self.last_tool_output = str(item.get("output", ""))
        elif item.get("type") == "message" and item.get("role") in ("assistant", "system") \
                and not self._responses_started:
            self.script.skip()        # history replayed into a new session: an answer (or tool answer) already given
        after = event.get("previous_item_id")
        if after is not None and after != "root" and after not in self.items:
            self.error("invalid_value", f"Item with previous_item_id not found: {after}", "previous_item_id",
                       event.get("event_id"))
            return
        item.setdefault("id", _new_id("item"))
        item.setdefault("object", "realtime.item")
        item.setdefault("status", "completed")
        with self._lock:
            entry = {"role": item.get("role", item.get("type")), "audio_ms": 0, "call_id": item.get("call_id"),
                     "chars": _text_chars(item)}
            if after is None:                     # appended: the conversation's newest item
                previous = self.last_item_id
                self.items[item["id"]] = entry
                self.last_item_id = item["id"]
            else:                                 # inserted after ``after`` (or first, for "root")
                order = list(self.items.items())
                at = 0 if after == "root" else [k for k, _ in order].index(after) + 1
                previous = None if after == "root" else after
                order.insert(at, (item["id"], entry))
                self.items = dict(order)
                self.last_item_id = order[-1][0]
        self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    def _on_conversation_item_truncate(self, event: dict) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        item = self.items.get(item_id)
        if item is None:
            self.error("item_truncate_invalid_item_id", f"Item with item_id not found: {item_id}", "item_id",
                       event.get("event_id"))
        elif item["role"] != "assistant":
            self.error("invalid_value", "Only model output audio messages can be truncated", "item_id",
                       event.get("event_id"))
        elif not isinstance(end_ms, int) or end_ms > item["audio_ms"]:
            self.error("invalid_value", f"Audio content of {item['audio_ms']}ms is already shorter than {end_ms}ms",
                       "audio_end_ms", event.get("event_id"))
        else:
            item["audio_ms"] = end_ms
            self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
                       "audio_end_ms": end_ms})

    def _on_conversation_item_delete(self, event: dict) -> None:
        with self._lock:
            gone = self.items.pop(event.get("item_id"), None)
            if gone is not None and self.last_item_id == event.get("item_id"):
                self.last_item_id = next(reversed(self.items), None)
        if gone is None:
            self.error("item_delete_invalid_item_id", f"Item with item_id not found: {event.get('item_id')}",
                       "item_id", event.get("event_id"))
        else:
            self.send({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    def _on_conversation_item_retrieve(self, event: dict) -> None:
        self.error("item_retrieve_invalid_item_id", "Item retrieval is not simulated", "item_id", event.get("event_id"))

    def _on_output_audio_buffer_clear(self, event: dict) -> None:
        self.error("invalid_value", "Invalid value: 'output_audio_buffer.clear' is only supported for WebRTC and SIP.",
                   "type", event.get("event_id"))

    def _on_response_create(self, event: dict) -> None:
        params = event.get("response") or {}
        if params.get("conversation") == "none":
            threading.Thread(target=self._run_out_of_band, args=(params,), daemon=True).start()
            return
        with self._lock:
            if self.active is not None:
                self.error("conversation_already_has_active_response",
                           f"Conversation already has an active response in progress: {self.active['id']}. "
                           "Wait until the response is finished before creating a new one.", None,
                           event.get("event_id"))
                return
            self.active = {"id": _new_id("resp"), "cancel": threading.Event(),
                           "instructions": params.get("instructions")}
            self.counters.responses_created += 1
            active = self.active
            # In order, like the real service: response.created precedes any reply to later events.
            self.send({"type": "response.created", "response": self._response_obj(active["id"], "in_progress", [])})
        threading.Thread(target=self._run_response, args=(active,), daemon=True).start()

    def _on_response_cancel(self, event: dict) -> None:
        with self._lock:
            active = self.active
            wanted = event.get("response_id")
            if active is None or (wanted and wanted != active["id"]):
                self.error("response_cancel_not_active", "Cancellation failed: no active response found", None,
                           event.get("event_id"))
                return
            active["cancel"].set()

    # --- responses --------------------------------------------------------------------------

    def _response_obj(self, resp_id: str, status: str, output: list, reason: str | None = None) -> dict:
        details = None if status == "in_progress" else {"type": status, "reason": reason}
        fmt = copy.deepcopy(self.session["audio"]["output"]["format"])
        return {"object": "realtime.response", "id": resp_id, "status": status, "status_details": details,
                "output": output, "conversation_id": "conv_sim", "output_modalities": ["audio"],
                "max_output_tokens": "inf", "audio": {"output": {"format": fmt,
                                                                 "voice": self.session["audio"]["output"]["voice"]}},
                "usage": None if status == "in_progress" else
                {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}, "metadata": None}

    def _run_out_of_band(self, params: dict) -> None:
        """A response outside the default conversation (``conversation: "none"``): it may run beside
        the conversation's own response, adds no item to the conversation and uses no reply of the
        script. Text only here: a deterministic digest of what the caller said in this session."""
        resp_id, item_id = _new_id("resp"), _new_id("item")
        metadata = params.get("metadata")
        text = "סיכום השיחה: " + ("; ".join(t for t in self.heard if t) or "המתקשר לא אמר דבר")
        created = self._response_obj(resp_id, "in_progress", [])
        created.update(conversation_id=None, output_modalities=["text"], metadata=metadata)
        self.send({"type": "response.created", "response": created})
        time.sleep(0.05)
        base = {"response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        self.send({"type": "response.output_text.delta", **base, "delta": text})
        self.send({"type": "response.output_text.done", **base, "text": text})
        item = {"id": item_id, "type": "message", "object": "realtime.item", "status": "completed",
                "role": "assistant", "content": [{"type": "output_text", "text": text}]}
        done = self._response_obj(resp_id, "completed", [item])
        done.update(conversation_id=None, output_modalities=["text"], metadata=metadata)
        with self._lock:
            self.counters.out_of_band.append((str(params.get("instructions", "")), metadata, text))
            # It reads the conversation under its own instructions, and is billed like any response.
            done["usage"] = self._usage(resp_id, 0, len(text), instructions=params.get("instructions"),
                                        items=params.get("input") is None)
        self.send({"type": "response.done", "response": done})

    def _fail_response(self, resp_id: str, code: str) -> None:
        """A response that fails before any output, as rate limits and server errors do."""
        error_type = "server_error" if code == "server_error" else "invalid_request_error"
        message = {"rate_limit_exceeded": "Rate limit reached for requests. Please try again in 1.2s.",
                   "server_error": "The server had an error while processing your request."}.get(code, code)
        resp = self._response_obj(resp_id, "failed", [])
        resp["status_details"] = {"type": "failed", "reason": None,
                                  "error": {"type": error_type, "code": code, "message": message}}
        with self._lock:
            self.counters.errors[f"response_failed_{code}"] += 1
            self.counters.replies.append((None, "", "failed"))
            self.active = None
        self.send({"type": "response.done", "response": resp})

    def _run_response(self, active: dict) -> None:
        resp_id, cancel = active["id"], active["cancel"]
        self._responses_started += 1
        if self._responses_started in self.fail_codes or self.fail_every:
            self._fail_response(resp_id, self.fail_codes.get(self._responses_started) or self.fail_every)
            return
        reply = self.script.next_reply()
        cancel.wait(self.first_audio_delay_ms / 1000.0)   # think time before the first output
        if reply is not None and reply.tool is not None:
            self._run_tool_call(resp_id, cancel, reply.tool)
        else:
            self._run_audio(resp_id, cancel, reply)

    def _finish(self, resp_id: str, cancelled: bool, output: list, record: tuple,
                made: tuple[int, int] = (0, 0)) -> None:
        """``made``: what the response produced (audio ms, text characters), billed as its output
        even when its item was deleted meanwhile."""
        with self._lock:
            if cancelled:
                self.counters.responses_cancelled += 1
            else:
                self.counters.responses_completed += 1
            self.counters.replies.append(record)
            instructions = self.active.get("instructions") if self.active and self.active["id"] == resp_id else None
            self.active = None
            usage = self._usage(resp_id, *made, instructions=instructions)
        done = self._response_obj(resp_id, "cancelled" if cancelled else "completed", output,
                                  "client_cancelled" if cancelled else None)
        done["usage"] = usage
        self.send({"type": "response.done", "response": done})

    def _usage(self, resp_id: str, made_audio_ms: int, made_chars: int,
               instructions: str | None = None, items: bool = True) -> dict:
        """What the service bills a response (under the lock). Its input is the prompt read again:
        the instructions (the response's own, else the session's) and tools first, then every item of
        the conversation before it, in order (caller audio 1 token per 100 ms, the AI's audio 1 per
        50 ms, text about 4 characters a token). The prompt cache works as the service documents it:
        the longest exact prefix this prompt shares with an earlier response's prompt in the session
        is cached, once the prompt is 1024 tokens or more, in steps of 128 tokens; a segment that
        changed (other instructions, an item truncated or deleted) ends the shared prefix. The
        output is what this response made, even when its item was deleted meanwhile."""
        prompt = self._prompt(resp_id, instructions, items)
        in_text = sum(text for _, text, _ in prompt)
        in_audio = sum(audio for _, _, audio in prompt)
        shared = max((_shared_tokens(prompt, earlier) for earlier in self._prompts), default=0)
        cacheable = shared // 128 * 128 if in_text + in_audio >= 1024 and shared >= 1024 else 0
        cached_text, cached_audio = _split_prefix(prompt, cacheable)
        self._prompts.append(prompt)
        out_text, out_audio = made_chars // 4, made_audio_ms // 50
        usage = {"total_tokens": in_text + in_audio + out_text + out_audio, "input_tokens": in_text + in_audio,
                 "output_tokens": out_text + out_audio,
                 "input_token_details": {"text_tokens": in_text, "audio_tokens": in_audio, "image_tokens": 0,
                                         "cached_tokens": cached_text + cached_audio,
                                         "cached_tokens_details": {"text_tokens": cached_text,
                                                                   "audio_tokens": cached_audio, "image_tokens": 0}},
                 "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio}}
        mine = self.counters.usage_by_session.setdefault(self.session["id"], Counter())
        for kind, count in (("input_text", in_text - cached_text), ("input_audio", in_audio - cached_audio),
                            ("input_cached_text", cached_text), ("input_cached_audio", cached_audio),
                            ("output_text", out_text), ("output_audio", out_audio)):
            mine[kind] += count
        return usage

    def largest_prompt_tokens(self) -> int:
        """The most input any response of this session read, in tokens."""
        with self._lock:
            return max((sum(text + audio for _, text, audio in prompt) for prompt in self._prompts), default=0)

    def _prompt(self, resp_id: str, instructions: str | None, items: bool) -> list[tuple]:
        """The prompt a response reads, as (key, text tokens, audio tokens) segments in order."""
        head = (instructions if instructions is not None else self.session.get("instructions") or "") + \
            json.dumps(self.session.get("tools") or [], ensure_ascii=False)
        prompt = [(("head", hash(head)), len(head) // 4, 0)]
        for item_id, item in (self.items.items() if items else ()):
            if item.get("response") == resp_id:
                continue
            audio = item["audio_ms"] // (100 if item["role"] == "user" else 50)
            prompt.append((("item", item_id, item["audio_ms"], item.get("chars", 0)), item.get("chars", 0) // 4, audio))
        return prompt

    def _reading_last_answer(self, arguments: str) -> str:
        """A scripted argument may name a field of the last tool answer, as a model reads what a tool
        said: ``"{{slots.0.id}}"`` is the first offered slot's id (empty when the answer has none)."""
        def field_of(match: re.Match) -> str:
            try:
                value = json.loads(self.last_tool_output or "{}")
                for key in match[1].split("."):
                    value = value[int(key)] if isinstance(value, list) else value[key]
                return str(value)
            except (ValueError, KeyError, IndexError, TypeError):
                return ""
        return re.sub(r"\{\{([\w.]+)\}\}", field_of, arguments)

    def _run_tool_call(self, resp_id: str, cancel: threading.Event, tool: ToolReply) -> None:
        """1.6(d). Cancelled during the think time: no output at all. Cancelled while the arguments
        stream: the item ends ``incomplete`` with what was sent, and no ``function_call_arguments.done``."""
        if cancel.is_set() or self.closed.is_set():
            self._finish(resp_id, True, [], (None, "", "cancelled"))
            return
        item_id, call_id = _new_id("item"), f"call_{uuid.uuid4().hex[:16]}"
        item = {"id": item_id, "type": "function_call", "object": "realtime.item", "status": "in_progress",
                "call_id": call_id, "name": tool.name, "arguments": ""}
        with self._lock:
            previous, self.last_item_id = self.last_item_id, item_id
            self.items[item_id] = {"role": "function_call", "audio_ms": 0, "call_id": call_id,
                                   "chars": len(tool.arguments_json), "response": resp_id}
        base = {"response_id": resp_id, "item_id": item_id, "output_index": 0, "call_id": call_id}
        self.send({"type": "response.output_item.added", "response_id": resp_id, "output_index": 0, "item": item})
        self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        args, sent = self._reading_last_answer(tool.arguments_json), 0
        chunk_chars = 12          # a few tokens' worth; the live split varies, clients must concatenate
        while sent < len(args) and not (cancel.is_set() or self.closed.is_set()):
            self.send({"type": "response.function_call_arguments.delta", **base,
                       "delta": args[sent:sent + chunk_chars]})
            sent += chunk_chars
            # Text streams faster than audio plays: a quarter of one audio delta's pacing (6 ms by default).
            cancel.wait(self.delta_ms / 1000.0 / self.speedup / 4)
        cancelled = sent < len(args) or cancel.is_set()
        done_item = {**item, "status": "incomplete" if cancelled else "completed", "arguments": args[:sent]}
        if not cancelled:
            with self._lock:
                self.counters.tool_calls.append((tool.name, call_id, args))
            self.send({"type": "response.function_call_arguments.done", **base, "name": tool.name, "arguments": args})
        self.send({"type": "response.output_item.done", "response_id": resp_id, "output_index": 0, "item": done_item})
        self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": done_item})
        self._finish(resp_id, cancelled, [done_item], (None, "", "cancelled" if cancelled else "completed"),
                     (0, sent))

    def _run_audio(self, resp_id: str, cancel: threading.Event, reply: Reply | None) -> None:
        item_id = _new_id("item")
        item = {"id": item_id, "type": "message", "object": "realtime.item", "status": "in_progress",
                "role": "assistant", "content": []}
        with self._lock:
            previous, self.last_item_id = self.last_item_id, item_id
            self.items[item_id] = {"role": "assistant", "audio_ms": 0, "response": resp_id}
        base = {"response_id": resp_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        self.send({"type": "response.output_item.added", "response_id": resp_id, "output_index": 0, "item": item})
        self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        self.send({"type": "response.content_part.added", **base, "part": {"type": "audio", "transcript": ""}})
        audio = sim_audio.clip(reply.clip).audio if reply and reply.clip else b""
        transcript = reply.transcript if reply else ""
        words = transcript.split(" ")
        chunk_bytes = self.delta_ms * 8
        sent_words, made_ms = 0, 0
        for offset in range(0, len(audio), chunk_bytes):
            if cancel.is_set() or self.closed.is_set():
                break
            chunk = audio[offset:offset + chunk_bytes]
            want_words = min(len(words), round(len(words) * (offset + len(chunk)) / len(audio)))
            if want_words > sent_words:
                self.send({"type": "response.output_audio_transcript.delta", **base,
                           "delta": " ".join(words[sent_words:want_words]) + " "})
                sent_words = want_words
            self.send({"type": "response.output_audio.delta", **base, "delta": base64.b64encode(chunk).decode()})
            made_ms += len(chunk) // 8
            with self._lock:
                if item_id in self.items:
                    self.items[item_id]["audio_ms"] += len(chunk) // 8
            time.sleep(len(chunk) / 8 / 1000.0 / self.speedup)
        cancelled = cancel.is_set()
        said = " ".join(words[:sent_words]) if cancelled else transcript
        with self._lock:
            if item_id in self.items:                  # the client may have deleted it meanwhile
                self.items[item_id]["chars"] = len(said)
        status = "cancelled" if cancelled else "completed"
        content = [{"type": "output_audio", "transcript": said}]
        done_item = {**item, "status": "incomplete" if cancelled else "completed", "content": content}
        self.send({"type": "response.output_audio.done", **base})
        self.send({"type": "response.output_audio_transcript.done", **base, "transcript": said})
        self.send({"type": "response.content_part.done", **base, "part": {"type": "audio", "transcript": said}})
        self.send({"type": "response.output_item.done", "response_id": resp_id, "output_index": 0, "item": done_item})
        self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": done_item})
        self._finish(resp_id, cancelled, [done_item], (reply.clip if reply else None, said, status),
                     (made_ms, len(said)))
