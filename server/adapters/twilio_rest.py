"""The server's side of Twilio's REST API: end a call, give it new TwiML, send an SMS.

Built on the ``twilio`` library's ``Client`` (not hand-written HTTP). Every method returns a
``RestResult`` and never raises into a call: an error answer becomes Twilio's code (20003 bad
credentials, 20404 unknown call, 21220 call no longer in progress, 21211 invalid ``To``), a timeout
or a refused connection becomes ``failure="timeout"`` / ``"unreachable"`` without a code. Each is
logged once, without secrets, phone numbers masked.

Pointing the library elsewhere (``TWILIO_API_BASE_URL``): twilio-python 9.x builds every Api URL
from its domain's ``base_url`` (``twilio.base.domain.Domain.absolute_url``; ``ApiBase`` sets
``https://api.twilio.com``), so the client sets ``client.api.base_url``. The client gets a fixed
environment mapping instead of ``os.environ``, so a ``TWILIO_EDGE`` or ``TWILIO_REGION`` in the
process environment cannot rewrite the host (``ClientBase.get_hostname``) behind our back.

Blocking: a request blocks its caller for at most ``timeout_s``. Under gunicorn's eventlet worker
``requests`` is monkey-patched, so that is one green thread, not the worker. The library's own
per-request INFO lines (headers, URL) go to a logger held at WARNING.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from server.logs import mask_phone
from server.settings import DEFAULT_TWILIO_API_BASE_URL, Secret, Settings

log = logging.getLogger(__name__)
_http_log = logging.getLogger(__name__ + ".http")
_http_log.setLevel(logging.WARNING)

TIMEOUT_S = 3.0
AUTHENTICATE = 20003
NOT_FOUND = 20404
CALL_NOT_IN_PROGRESS = 21220
INVALID_TO = 21211
_BARE_NUMBER = re.compile(r"(?<![\w+*])\d{7,15}(?!\w)")   # a number not in E.164 (Twilio's 21211 repeats it)


def mask_numbers(text: str) -> str:
    """``mask_phone`` for E.164 numbers, and bare digit runs (``0501234567`` -> ``******4567``)."""
    return _BARE_NUMBER.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], mask_phone(text))


@dataclass(frozen=True)
class RestResult:
    ok: bool
    sid: str = ""                 # the call's, or the new message's
    status: str = ""              # the resource's status as Twilio answered (completed, in-progress, queued)
    code: int | None = None       # Twilio's error code; None on success or when no answer came
    http_status: int | None = None
    failure: str = ""             # "", "twilio" (an error answer), "timeout", "unreachable", "error"
    message: str = ""             # what went wrong, phone numbers masked

    @property
    def call_already_over(self) -> bool:
        """The call had ended before the request (Twilio's 21220): for a hangup, nothing left to do."""
        return self.code == CALL_NOT_IN_PROGRESS


class TwilioRest:
    def __init__(self, account_sid: str, auth_token: Secret, base_url: str = DEFAULT_TWILIO_API_BASE_URL,
                 timeout_s: float = TIMEOUT_S) -> None:
        self._token = auth_token
        http = TwilioHttpClient(pool_connections=True, timeout=timeout_s, logger=_http_log)
        self._client = Client(account_sid, auth_token.reveal(), http_client=http,
                              environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""})
        self._client.api.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> "TwilioRest | None":
        """None when ``TWILIO_ACCOUNT_SID`` is not set (settings ensure the token is, when it is)."""
        if not settings.twilio_account_sid:
            return None
        return cls(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_api_base_url)

    def complete(self, call_sid: str) -> RestResult:
        """End an in-progress call (``Status=completed``): Twilio stops its media stream and does not
        run the TwiML after ``<Connect>``. ``call_already_over`` when it had ended already."""
        return self._call("complete", call_sid, lambda: self._client.calls(call_sid).update(status="completed"))

    def redirect(self, call_sid: str, twiml: str) -> RestResult:
        """Replace what the call is doing with this TwiML (e.g. ``<Dial>`` a person)."""
        return self._call("redirect", call_sid, lambda: self._client.calls(call_sid).update(twiml=twiml))

    def send_sms(self, to: str, from_: str, body: str) -> RestResult:
        what = f"sms to {to}"
        try:
            message = self._client.messages.create(to=to, from_=from_, body=body)
        except Exception as exc:        # noqa: BLE001 - nothing may raise into a call
            return self._failed(what, exc)
        log.info("☎️ [TWILIO REST] %s: %s %s", mask_numbers(what), message.sid, message.status)
        return RestResult(True, sid=message.sid or "", status=message.status or "")

    def _call(self, what: str, call_sid: str, request) -> RestResult:
        try:
            call = request()
        except Exception as exc:        # noqa: BLE001 - nothing may raise into a call
            return self._failed(f"{what} call {call_sid}", exc, sid=call_sid)
        log.info("☎️ [TWILIO REST] %s call %s: %s", what, call_sid, call.status)
        return RestResult(True, sid=call_sid, status=call.status or "")

    def _failed(self, what: str, exc: Exception, sid: str = "") -> RestResult:
        code, http_status = None, None
        if isinstance(exc, TwilioException):
            code, http_status = getattr(exc, "code", None), getattr(exc, "status", None)
            failure, text = "twilio", str(getattr(exc, "msg", "") or exc)
        elif isinstance(exc, requests.Timeout):
            failure, text = "timeout", type(exc).__name__
        elif isinstance(exc, requests.ConnectionError):
            failure, text = "unreachable", type(exc).__name__
        else:
            failure, text = "error", f"{type(exc).__name__}: {exc}"
        text = mask_numbers(self._scrub(text))
        log.warning("☎️ [TWILIO REST] %s failed: %s code=%s http=%s %s", mask_numbers(what), failure, code,
                    http_status, text)
        return RestResult(False, sid=sid, code=code if isinstance(code, int) else None, http_status=http_status,
                          failure=failure, message=text)

    def _scrub(self, text: str) -> str:
        token = self._token.reveal()
        return text.replace(token, "***") if token else text
