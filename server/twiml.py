"""TwiML for the incoming-call webhook, built with the ``twilio`` library."""
from __future__ import annotations

from twilio.twiml.voice_response import Connect, VoiceResponse

MEDIA_WS_PATH = "/ws/twilio-media"
STREAM_ENDED_PATH = "/webhook/stream_ended"


def ws_base(public_base_url: str) -> str:
    """``https://host`` -> ``wss://host``, ``http://`` -> ``ws://`` (Twilio accepts only wss in production)."""
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if public_base_url.startswith(http):
            return (ws + public_base_url[len(http):]).rstrip("/")
    raise ValueError(f"public base URL must be http(s): {public_base_url!r}")


def stream_url(public_base_url: str) -> str:
    return ws_base(public_base_url) + MEDIA_WS_PATH


def connect_stream(public_base_url: str, parameters: dict[str, str]) -> str:
    """``<Connect><Stream>``, then a redirect that Twilio follows when the stream ends: only then
    do we know whether the call ended normally (hang up) or failed (apologise first)."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url(public_base_url))
    for name, value in parameters.items():
        if value:
            stream.parameter(name=name, value=value[:200])   # Twilio: name+value under 500 chars
    response.append(connect)
    response.redirect(public_base_url.rstrip("/") + STREAM_ENDED_PATH, method="POST")
    return str(response)


def after_stream(apology: str | None, language: str = "he-IL") -> str:
    """What the caller hears once the stream is closed: an apology when the call failed, then hang up."""
    response = VoiceResponse()
    if apology:
        response.say(apology, language=language)
    response.hangup()
    return str(response)


def refuse(message: str, language: str = "he-IL") -> str:
    """A number no business answers (``UNKNOWN_NUMBER_POLICY=refuse``): a short message, then hang up."""
    return after_stream(message, language)
