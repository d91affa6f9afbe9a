"""How a call leaves our hands on Twilio's side, once its stream is over.

* A transfer: the call's new TwiML (``<Dial>`` the business's person) goes through Twilio's REST
  API; without the API (or when it fails) the stream simply closes and the after-stream TwiML,
  which reads the transfer from the call's record, dials instead.
* A normal ending the agent decided (the goodbye played, the silence limit, a draining server):
  the call is completed through the REST API, so it never depends on which instance answers the
  after-stream request.
* A failure keeps the stream path, whose TwiML says the apology.
The call's record notes the transfer (reason, masked destination) before the redirect. Then our
side of the media socket is closed (``close_media_socket``).

``twilio_step`` is that decision as a pure function of the core's ``Ending``; ``TwilioEnding``
carries it out.
"""
from __future__ import annotations

import logging
import socket

from simple_websocket import ConnectionClosed

from server.adapters.twilio_rest import TwilioRest
from server.adapters.twiml import transfer_to_person
from server.business.profiles import BusinessProfile
from server.call.records import CallRecords
from server.core.ending import EndKind, Ending
from server.logs import mask_phone


def twilio_step(end: Ending) -> str | None:
    """``transfer``, ``complete``, or None: the stream closes and the after-stream TwiML answers
    (the apology after a failure; nothing to do for a caller who left)."""
    if end.kind is EndKind.TRANSFERRED:
        return "transfer"
    if end.kind is EndKind.COMPLETED:
        return "complete"
    return None


class TwilioEnding:
    def __init__(self, rest: TwilioRest | None, records: CallRecords | None, base_url: str,
                 log: logging.LoggerAdapter | logging.Logger) -> None:
        self.rest, self.records, self.base_url, self.log = rest, records, base_url, log

    def carry_out(self, end: Ending, call_sid: str, profile: BusinessProfile | None,
                  numbers: tuple[str, str]) -> None:
        step = twilio_step(end)
        if step == "transfer":
            self.transfer(call_sid, end.transfer_reason or "caller asked", profile, numbers)
        elif step == "complete":
            self.complete(call_sid)

    def transfer(self, call_sid: str, reason: str, profile: BusinessProfile | None, numbers: tuple[str, str]) -> None:
        if profile is None or not profile.transfer_number:
            return
        if self.records is not None:
            self.records.transfer(call_sid, reason=reason, to=mask_phone(profile.transfer_number), status="dialling")
        if self.rest is None or not self.base_url:
            return
        called, caller = numbers
        result = self.rest.redirect(call_sid, transfer_to_person(self.base_url, profile, called or profile.number,
                                                                 caller))
        if not result.ok:
            self.log.warning("[TWILIO REST] transfer through the API failed (%s) - the after-stream TwiML dials",
                             result.failure)

    def complete(self, call_sid: str) -> None:
        if self.rest is None or not call_sid:
            return
        result = self.rest.complete(call_sid)
        if not result.ok and not result.call_already_over:
            self.log.warning("[TWILIO REST] hangup through the API failed (%s) - the after-stream TwiML hangs up",
                             result.failure)


def close_media_socket(ws, message: str) -> None:
    """Close the media socket ourselves and let simple-websocket's reader end on the close echo.

    Returning with the reader still blocked in recv() lets the server close the socket under it,
    and eventlet then raises EOFError there, which simple-websocket does not catch. A peer that
    never answers the close gets its socket shut down, which ends the reader cleanly.
    """
    if not getattr(ws, "connected", False):
        return
    try:
        ws.close(reason=1000, message=message)
    except ConnectionClosed:
        return
    reader = getattr(ws, "thread", None)
    if reader is None:
        return
    reader.join(1.0)
    if reader.is_alive():
        try:
            ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        reader.join(0.5)
