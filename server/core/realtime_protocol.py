"""OpenAI Realtime (GA) wire codec: server JSON -> typed events, typed intents -> client JSON.

We *send* only GA shapes. We *read* GA names and, as tolerance only, the retired beta names
(``response.audio.delta`` ...), mapped onto the same typed events. Unknown server events become
``UnknownServerEvent``; parsing never raises.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

# Beta -> GA server event names (tolerance only; the beta interface is retired).
_BETA_TO_GA = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}


@dataclass(frozen=True)
class SessionCreated:
    session_id: str


@dataclass(frozen=True)
class SessionUpdated:
    session_id: str


@dataclass(frozen=True)
class InputCommitted:
    item_id: str


@dataclass(frozen=True)
class ItemAdded:
    item_id: str
    role: str
    item_type: str


@dataclass(frozen=True)
class InputTranscription:
    item_id: str
    transcript: str
    seconds: float = 0.0
    """The transcription's billed duration (``usage.type == "duration"``); 0 when not said."""
    tokens: int = 0
    """Or its billed tokens (``usage.type == "tokens"``: input plus output)."""


TOKEN_KINDS = ("input_text", "input_audio", "input_cached_text", "input_cached_audio", "output_text",
               "output_audio")
"""A response's usage by kind; the ``input_*`` kinds other than the cached ones count uncached tokens."""


@dataclass(frozen=True)
class Usage:
    """``response.done``'s ``usage``, split by kind (uncached input, cached input, output)."""
    input_text: int = 0
    input_audio: int = 0
    input_cached_text: int = 0
    input_cached_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    def as_dict(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in TOKEN_KINDS}


@dataclass(frozen=True)
class ResponseCreated:
    response_id: str
    purpose: str = ""
    """``response.metadata.purpose`` of an out-of-band response we asked for (``owner_summary``)."""


@dataclass(frozen=True)
class AudioDelta:
    response_id: str
    item_id: str
    audio_b64: str


@dataclass(frozen=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True)
class TextDone:
    """``response.output_text.done``: the whole text of a text response (only out-of-band ones here)."""
    response_id: str
    text: str


@dataclass(frozen=True)
class TranscriptDone:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True)
class ResponseDone:
    response_id: str
    status: str
    reason: str | None
    error_code: str | None = None
    """For ``failed`` responses: ``rate_limit_exceeded``, ``server_error``, ``insufficient_quota``..."""
    item_ids: tuple[str, ...] = ()
    """Ids of the response's output items (``response.output[].id``)."""
    usage: Usage | None = None
    """What the response was billed (None: the server sent no usage)."""


@dataclass(frozen=True)
class FunctionCallDone:
    """``response.function_call_arguments.done``: the one event we act on for a tool call
    (``response.output_item.done`` describes the same call and is ignored, or it would run twice)."""
    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ItemTruncated:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class RealtimeError:
    code: str | None
    message: str
    error_type: str
    param: str | None = None
    client_event_id: str | None = None


@dataclass(frozen=True)
class Ignored:
    """A known event the bridge does not act on (deltas of text, rate limits, ...)."""
    event_type: str


@dataclass(frozen=True)
class UnknownServerEvent:
    event_type: str


@dataclass(frozen=True)
class MalformedServerEvent:
    reason: str


ServerEvent = (SessionCreated | SessionUpdated | InputCommitted | ItemAdded | InputTranscription
               | ResponseCreated | AudioDelta | AudioDone | TranscriptDone | TextDone | ResponseDone
               | FunctionCallDone | ItemTruncated | RealtimeError | Ignored | UnknownServerEvent | MalformedServerEvent)

_IGNORED = frozenset({
    "conversation.created", "conversation.item.done", "conversation.item.deleted",
    "conversation.item.retrieved", "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.segment", "input_audio_buffer.cleared",
    "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
    "response.output_item.added", "response.output_item.done", "response.content_part.added",
    "response.content_part.done", "response.output_audio_transcript.delta",
    "response.output_text.delta", "rate_limits.updated",
    "response.function_call_arguments.delta",
})


def _item(msg: dict) -> ItemAdded:
    item = msg["item"]
    return ItemAdded(str(item["id"]), str(item.get("role", "")), str(item.get("type", "")))


def _purpose(response: dict) -> str:
    metadata = response.get("metadata")
    return str(metadata.get("purpose") or "") if isinstance(metadata, dict) else ""


def _response_done(msg: dict) -> ResponseDone:
    resp = msg["response"]
    details = resp.get("status_details") or {}
    error = details.get("error") or {}
    items = tuple(str(o["id"]) for o in resp.get("output") or () if isinstance(o, dict) and o.get("id"))
    return ResponseDone(str(resp["id"]), str(resp.get("status", "")), details.get("reason"),
                        error.get("code") if isinstance(error, dict) else None, items, _usage(resp.get("usage")))


def _count(table: object, key: str) -> int:
    value = table.get(key) if isinstance(table, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(raw: object) -> Usage | None:
    """GA ``usage``: ``input_tokens`` include the cached ones (``input_token_details.cached_tokens``,
    split in ``cached_tokens_details``); the uncached kinds are what is left of each."""
    if not isinstance(raw, dict):
        return None
    inp, out = raw.get("input_token_details") or {}, raw.get("output_token_details") or {}
    cached = inp.get("cached_tokens_details") if isinstance(inp, dict) else None
    cached_text, cached_audio = _count(cached, "text_tokens"), _count(cached, "audio_tokens")
    return Usage(max(0, _count(inp, "text_tokens") - cached_text), max(0, _count(inp, "audio_tokens") - cached_audio),
                 cached_text, cached_audio, _count(out, "text_tokens"), _count(out, "audio_tokens"))


def _transcription_usage(raw: object) -> tuple[float, int]:
    if not isinstance(raw, dict):
        return 0.0, 0
    if raw.get("type") == "duration":
        seconds = raw.get("seconds")
        return (float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else 0.0), 0
    return 0.0, _count(raw, "total_tokens")


def _error(msg: dict) -> RealtimeError:
    err = msg.get("error") or {}
    return RealtimeError(code=err.get("code"), message=str(err.get("message", "")),
                         error_type=str(err.get("type", "")), param=err.get("param"),
                         client_event_id=err.get("event_id"))


_PARSERS = {
    "session.created": lambda m: SessionCreated(str(m["session"].get("id", ""))),
    "session.updated": lambda m: SessionUpdated(str(m["session"].get("id", ""))),
    "input_audio_buffer.committed": lambda m: InputCommitted(str(m["item_id"])),
    "conversation.item.added": _item,
    "conversation.item.input_audio_transcription.completed":
        lambda m: InputTranscription(str(m["item_id"]), str(m.get("transcript") or ""),
                                     *_transcription_usage(m.get("usage"))),
    "response.created": lambda m: ResponseCreated(str(m["response"]["id"]), _purpose(m["response"])),
    "response.output_text.done": lambda m: TextDone(str(m["response_id"]), str(m.get("text") or "")),
    "response.output_audio.delta":
        lambda m: AudioDelta(str(m["response_id"]), str(m["item_id"]), str(m["delta"])),
    "response.output_audio.done": lambda m: AudioDone(str(m["response_id"]), str(m["item_id"])),
    "response.output_audio_transcript.done":
        lambda m: TranscriptDone(str(m["response_id"]), str(m["item_id"]), str(m.get("transcript") or "")),
    "response.done": _response_done,
    "response.function_call_arguments.done":
        lambda m: FunctionCallDone(str(m["response_id"]), str(m["item_id"]), str(m["call_id"]),
                                   str(m.get("name") or ""), str(m.get("arguments") or "")),
    "conversation.item.truncated": lambda m: ItemTruncated(str(m["item_id"]), int(m["audio_end_ms"])),
    "error": _error,
}


def parse_server_event(text: str | bytes) -> ServerEvent:
    try:
        msg = json.loads(text)
    except (ValueError, TypeError) as exc:
        return MalformedServerEvent(f"invalid JSON: {exc.__class__.__name__}")
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        return MalformedServerEvent("no 'type'")
    event_type = _BETA_TO_GA.get(msg["type"], msg["type"])
    if event_type in _IGNORED:
        return Ignored(event_type)
    parser = _PARSERS.get(event_type)
    if parser is None:
        return UnknownServerEvent(event_type)
    try:
        return parser(msg)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:   # Overflow: int(Infinity)
        return MalformedServerEvent(f"bad '{event_type}': {exc.__class__.__name__}: {exc}")


# --- client events (GA shapes only) ----------------------------------------------------------

def _dump(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def session_update(instructions: str, voice: str, transcription_model: str | None,
                   tools: list[dict] | None = None, language: str | None = None) -> str:
    """Our VAD decides turns (``turn_detection: null``); µ-law both ways; optional function tools
    (flat GA shape) and the caller's language as a transcription hint (ISO-639-1)."""
    audio_input: dict = {"format": {"type": "audio/pcmu"}, "turn_detection": None}
    if transcription_model:
        audio_input["transcription"] = {"model": transcription_model, **({"language": language} if language else {})}
    session: dict = {"type": "realtime", "output_modalities": ["audio"], "instructions": instructions,
                     "audio": {"input": audio_input, "output": {"format": {"type": "audio/pcmu"}, "voice": voice}}}
    if tools:
        session["tools"], session["tool_choice"] = tools, "auto"
    return _dump({"type": "session.update", "session": session})


def input_audio_append(audio_b64: str) -> str:
    return _dump({"type": "input_audio_buffer.append", "audio": audio_b64})


def input_audio_commit() -> str:
    return _dump({"type": "input_audio_buffer.commit"})


def input_audio_clear() -> str:
    return _dump({"type": "input_audio_buffer.clear"})


def response_create(instructions: str | None = None) -> str:
    if instructions is None:
        return _dump({"type": "response.create"})
    return _dump({"type": "response.create", "response": {"instructions": instructions}})


def out_of_band_text(instructions: str, purpose: str) -> str:
    """A text-only response outside the conversation (``conversation: "none"``): it reads the
    conversation so far and adds nothing to it; ``metadata.purpose`` tells its events apart."""
    return _dump({"type": "response.create", "response": {
        "conversation": "none", "output_modalities": ["text"], "instructions": instructions,
        "metadata": {"purpose": purpose}}})


def response_cancel(response_id: str | None = None) -> str:
    if response_id is None:
        return _dump({"type": "response.cancel"})
    return _dump({"type": "response.cancel", "response_id": response_id})


def conversation_text_item(role: str, text: str) -> str:
    """A text message replayed into a new session (assistant audio cannot be re-created, its
    transcript can)."""
    kind = "output_text" if role == "assistant" else "input_text"
    return _dump({"type": "conversation.item.create",
                  "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}})


def function_call_output(call_id: str, output: str) -> str:
    """The answer to a tool call, matched by ``call_id``; a ``response.create`` must follow for the
    model to speak about it (sent separately, through the guarded trigger)."""
    return _dump({"type": "conversation.item.create",
                  "item": {"type": "function_call_output", "call_id": call_id, "output": output}})


def item_truncate(item_id: str, audio_end_ms: int) -> str:
    return _dump({"type": "conversation.item.truncate", "item_id": item_id,
                  "content_index": 0, "audio_end_ms": int(audio_end_ms)})


def assistant_text_after(item_id: str, text: str) -> str:
    """An assistant text message inserted right after ``item_id`` (``previous_item_id``)."""
    return _dump({"type": "conversation.item.create", "previous_item_id": item_id,
                  "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}})


def item_delete(item_id: str) -> str:
    return _dump({"type": "conversation.item.delete", "item_id": item_id})
