"""TwiML for the incoming-call webhook, built with the ``twilio`` library."""
from __future__ import annotations

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

MEDIA_WS_PATH = "/ws/twilio-media"
STREAM_ENDED_PATH = "/webhook/stream_ended"
TRANSFER_DONE_PATH = "/webhook/transfer_done"
DEFAULT_VOICEMAIL_PROMPT = "אין מי שיענה כרגע. השאירו הודעה אחרי הצליל ונחזור אליכם בהקדם."


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


def dial_person(base_url: str, number: str, caller_id: str | None, timeout_s: int) -> str:
    """Hand the call to a person: ``<Dial>`` the business, ringing ``timeout_s``; Twilio then asks
    ``TRANSFER_DONE_PATH`` what next (``DialCallStatus``: completed, no-answer, busy, failed)."""
    response = VoiceResponse()
    dial = Dial(action=base_url.rstrip("/") + TRANSFER_DONE_PATH, method="POST", timeout=timeout_s,
                caller_id=caller_id or None)
    dial.number(number)
    response.append(dial)
    return str(response)


def voicemail(prompt: str = DEFAULT_VOICEMAIL_PROMPT, language: str = "he-IL", max_length_s: int = 120) -> str:
    """No one answered: a short message, then the caller's voicemail (``<Record>``), then hang up."""
    response = VoiceResponse()
    response.say(prompt, language=language)
    response.record(max_length=max_length_s, play_beep=True, timeout=5)
    response.hangup()
    return str(response)


def transfer_to_person(base_url: str, profile, called_number: str, caller_number: str) -> str:
    """The ``<Dial>`` of a business profile's ``transfer_number``, with its caller ID policy
    (``business``: the number the caller dialled; ``caller``: the caller's own) and ring timeout."""
    caller_id = caller_number if profile.transfer_caller_id == "caller" else called_number
    return dial_person(base_url, profile.transfer_number, caller_id or None, profile.transfer_ring_timeout_s)
