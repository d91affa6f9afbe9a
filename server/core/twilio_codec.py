"""Twilio Media Streams messages <-> typed values (sans-I/O, both directions).

Wire quirks kept here and nowhere else: ``sequenceNumber``, ``media.chunk`` and
``media.timestamp`` are *strings*; ``sampleRate``/``channels`` are numbers; the payload is
base64 µ-law that we pass through without decoding unless someone needs the samples.
Parsing never raises: anything we cannot read becomes ``MalformedTwilioMessage`` and an event
name we do not know becomes ``UnknownTwilioEvent``.

A keypress arrives as ``dtmf`` (bidirectional streams only) and becomes ``Dtmf``: one key, ``0``-``9``,
``*`` or ``#``; anything else in ``dtmf.digit`` (missing, empty, several keys, another character) is
``MalformedTwilioMessage``, so the shell never acts on a key nobody can press.

What Twilio sends is built by the simulator's own ``sim.twilio_wire`` (an independent witness), not
here. ``media_message``/``mark_message``/``clear_message`` are what our server sends.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate_hz: int
    channels: int
    custom_parameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    stream_sid: str
    track: str
    chunk: int
    timestamp_ms: int
    payload_b64: str

    def audio(self) -> bytes:
        return base64.b64decode(self.payload_b64)


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True)
class Clear:
    stream_sid: str


@dataclass(frozen=True)
class Dtmf:
    """The caller pressed one key. ``sequence_number`` is the message's place in the stream (0 when
    Twilio left it out)."""
    stream_sid: str
    digit: str
    sequence_number: int = 0


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    call_sid: str


@dataclass(frozen=True)
class UnknownTwilioEvent:
    event: str


@dataclass(frozen=True)
class MalformedTwilioMessage:
    reason: str


TwilioEvent = (Connected | Start | Media | Mark | Clear | Dtmf | Stop
               | UnknownTwilioEvent | MalformedTwilioMessage)


def _int_field(value, name: str) -> int:
    # Twilio sends these as strings; accept ints too rather than fail a call on it.
    if isinstance(value, bool):
        raise ValueError(f"{name} is not an integer")
    return int(value)


def parse(text: str | bytes) -> TwilioEvent:
    """One WebSocket text frame from either side -> one typed event. Never raises."""
    if isinstance(text, (bytes, bytearray)):
        return MalformedTwilioMessage("binary frame")
    try:
        msg = json.loads(text)
    except (ValueError, TypeError) as exc:
        return MalformedTwilioMessage(f"invalid JSON: {exc.__class__.__name__}")
    if not isinstance(msg, dict):
        return MalformedTwilioMessage("message is not a JSON object")
    event = msg.get("event")
    if not isinstance(event, str):
        return MalformedTwilioMessage("missing 'event'")
    try:
        return _PARSERS[event](msg) if event in _PARSERS else UnknownTwilioEvent(event)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:   # Overflow: int(Infinity)
        return MalformedTwilioMessage(f"bad '{event}' message: {exc.__class__.__name__}: {exc}")


def _parse_start(msg: dict) -> Start:
    start = msg["start"]
    fmt = start.get("mediaFormat") or {}
    params = start.get("customParameters") or {}
    if not isinstance(params, dict):
        raise ValueError("customParameters is not an object")
    return Start(stream_sid=str(start.get("streamSid") or msg["streamSid"]),
                 call_sid=str(start["callSid"]), account_sid=str(start.get("accountSid", "")),
                 tracks=tuple(start.get("tracks") or ()),
                 encoding=str(fmt.get("encoding", "audio/x-mulaw")),
                 sample_rate_hz=int(fmt.get("sampleRate", 8000)),
                 channels=int(fmt.get("channels", 1)),
                 custom_parameters={str(k): str(v) for k, v in params.items()})


def _parse_media(msg: dict) -> Media:
    media = msg["media"]
    payload = media["payload"]
    if not isinstance(payload, str):
        raise ValueError("payload is not a string")
    try:
        base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"payload is not base64 ({exc})") from None
    return Media(stream_sid=str(msg.get("streamSid", "")), track=str(media.get("track", "inbound")),
                 chunk=_int_field(media.get("chunk", 0), "chunk"),
                 timestamp_ms=_int_field(media.get("timestamp", 0), "timestamp"),
                 payload_b64=payload)


def _parse_mark(msg: dict) -> Mark:
    name = msg["mark"]["name"]
    if not isinstance(name, str):
        raise ValueError("mark.name is not a string")
    return Mark(stream_sid=str(msg.get("streamSid", "")), name=name)


# Twilio, "Media Streams - WebSocket Messages", DTMF message
# (https://www.twilio.com/docs/voice/media-streams/websocket-messages#dtmf-message): "The dtmf message
# is currently only supported in bidirectional Streams"; dtmf.track "is always inbound_track",
# dtmf.digit is "the number-key tone detected". The documented example:
#   {"event": "dtmf", "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "sequenceNumber": "5",
#    "dtmf": {"track": "inbound_track", "digit": "1"}}
DTMF_KEYS = frozenset("0123456789*#")


def _parse_dtmf(msg: dict) -> Dtmf:
    dtmf = msg["dtmf"]
    if not isinstance(dtmf, dict):
        raise ValueError("dtmf is not an object")
    digit = dtmf.get("digit")
    if not isinstance(digit, str) or len(digit) != 1 or digit not in DTMF_KEYS:
        raise ValueError(f"dtmf.digit is not one key of 0-9, * or #: {str(digit)[:8]!r}")
    return Dtmf(stream_sid=str(msg.get("streamSid", "")), digit=digit,
                sequence_number=_int_field(msg.get("sequenceNumber", 0), "sequenceNumber"))


_PARSERS = {
    "connected": lambda m: Connected(str(m.get("protocol", "")), str(m.get("version", ""))),
    "start": _parse_start,
    "media": _parse_media,
    "mark": _parse_mark,
    "clear": lambda m: Clear(str(m["streamSid"])),
    "dtmf": _parse_dtmf,
    "stop": lambda m: Stop(str(m.get("streamSid", "")), str((m.get("stop") or {}).get("callSid", ""))),
}


def _dump(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --- what our server sends to Twilio -------------------------------------------------------

def media_message(stream_sid: str, audio: bytes) -> str:
    return _dump({"event": "media", "streamSid": stream_sid,
                  "media": {"payload": base64.b64encode(audio).decode("ascii")}})


def media_encoder(stream_sid: str):
    """``media_message`` for one stream, 50 times a second: the JSON around the payload is built
    once (the stream id JSON-escaped), the payload is base64 (no character needs escaping)."""
    head = '{"event":"media","streamSid":' + json.dumps(stream_sid, ensure_ascii=False) + ',"media":{"payload":"'

    def encode(audio: bytes) -> str:
        return head + base64.b64encode(audio).decode("ascii") + '"}}'
    return encode


def mark_message(stream_sid: str, name: str) -> str:
    return _dump({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return _dump({"event": "clear", "streamSid": stream_sid})
