"""The simulated Twilio's own wire format: Media Streams messages and request signatures.

Written from Twilio's documentation, not from the server's ``twilio_codec`` or its signature
check, so the caller simulator is an independent witness of both (a bug shared by the server and
its test peer would pass unseen). Known-answer vectors in ``tests/test_sim_twilio_wire.py``.

Twilio -> application (Media Streams, "WebSocket messages"): ``connected``; ``start`` with
``sequenceNumber`` (a string), ``start.accountSid/streamSid/callSid/tracks/customParameters`` and
``mediaFormat`` (``audio/x-mulaw``, 8000 Hz, mono); ``media`` with ``media.track/chunk/timestamp``
(strings) and a base64 µ-law ``payload``; ``mark`` echoed when the audio before it has played (or
at once when cleared); ``dtmf`` when the caller presses a key (bidirectional streams only:
``dtmf.track`` always ``inbound_track``, ``dtmf.digit`` the one key, ``sequenceNumber`` a string);
``stop`` with ``stop.accountSid/callSid``.

Application -> Twilio on a bidirectional stream: ``media`` (``streamSid``, ``media.payload``),
``mark`` (``streamSid``, ``mark.name``), ``clear`` (``streamSid``). Anything else is error 31951.

Request signatures ("Webhooks security"): HMAC-SHA1 under the auth token over the full URL
followed by every POST parameter, sorted by name, as name + value; base64 of the digest in
``X-Twilio-Signature``. A WebSocket upgrade is signed over its URL with no parameters.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass


def _dump(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# --- what the simulated Twilio sends ----------------------------------------------------------

def connected() -> str:
    return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start(seq: int, account_sid: str, stream_sid: str, call_sid: str, custom_parameters: dict[str, str]) -> str:
    return _dump({"event": "start", "sequenceNumber": str(seq), "streamSid": stream_sid,
                  "start": {"accountSid": account_sid, "streamSid": stream_sid, "callSid": call_sid,
                            "tracks": ["inbound"], "customParameters": dict(custom_parameters),
                            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def media(seq: int, stream_sid: str, chunk: int, timestamp_ms: int, audio: bytes) -> str:
    return _dump({"event": "media", "sequenceNumber": str(seq), "streamSid": stream_sid,
                  "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(timestamp_ms),
                            "payload": base64.b64encode(audio).decode("ascii")}})


def mark(seq: int, stream_sid: str, name: str) -> str:
    return _dump({"event": "mark", "sequenceNumber": str(seq), "streamSid": stream_sid, "mark": {"name": name}})


# Twilio, "Media Streams - WebSocket Messages", DTMF message
# (https://www.twilio.com/docs/voice/media-streams/websocket-messages#dtmf-message), its example:
#   {"event": "dtmf", "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "sequenceNumber": "5",
#    "dtmf": {"track": "inbound_track", "digit": "1"}}
KEYPAD = "0123456789*#"


def dtmf(seq: int, stream_sid: str, digit: str) -> str:
    """The caller pressed ``digit``, sent as given (a scenario checks its keys when it is loaded)."""
    return _dump({"event": "dtmf", "streamSid": stream_sid, "sequenceNumber": str(seq),
                  "dtmf": {"track": "inbound_track", "digit": digit}})


def stop(seq: int, account_sid: str, stream_sid: str, call_sid: str) -> str:
    return _dump({"event": "stop", "sequenceNumber": str(seq), "streamSid": stream_sid,
                  "stop": {"accountSid": account_sid, "callSid": call_sid}})


# --- what the application sends ---------------------------------------------------------------

@dataclass(frozen=True)
class Outbound:
    kind: str                 # "media", "mark", "clear", or "invalid"
    stream_sid: str = ""
    audio: bytes = b""
    name: str = ""
    problem: str = ""


def parse_outbound(text: str | bytes) -> Outbound:
    """One message from the application, checked as Twilio checks it (``invalid`` with the reason)."""
    if isinstance(text, bytes):
        return Outbound("invalid", problem="binary frame")
    try:
        msg = json.loads(text)
    except ValueError:
        return Outbound("invalid", problem="not JSON")
    if not isinstance(msg, dict):
        return Outbound("invalid", problem="not a JSON object")
    event, stream_sid = msg.get("event"), msg.get("streamSid")
    if not isinstance(stream_sid, str) or not stream_sid:
        return Outbound("invalid", problem="no streamSid")
    if event == "clear":
        return Outbound("clear", stream_sid)
    if event == "mark":
        name = (msg.get("mark") or {}).get("name") if isinstance(msg.get("mark"), dict) else None
        if not isinstance(name, str) or not name:
            return Outbound("invalid", stream_sid, problem="mark without a name")
        return Outbound("mark", stream_sid, name=name)
    if event == "media":
        payload = (msg.get("media") or {}).get("payload") if isinstance(msg.get("media"), dict) else None
        if not isinstance(payload, str):
            return Outbound("invalid", stream_sid, problem="media without a payload")
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return Outbound("invalid", stream_sid, problem="payload is not base64")
        return Outbound("media", stream_sid, audio=audio)
    return Outbound("invalid", stream_sid, problem=f"unknown event {event!r}")


# --- request signatures -------------------------------------------------------------------------

def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature`` of a request to ``url`` with these POST parameters."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")
