"""A loopback Twilio REST API (version 2010-04-01): the Calls update and Messages create the server uses.

Written from Twilio's documentation (Call resource, Message resource, error pages), never from the
server's client, so a misunderstanding of the API on the server side shows up here.

Theory of operation: a ``ThreadingHTTPServer`` in a daemon thread (as ``sim.crm_receiver``) answers

* ``POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json`` with ``Status`` (``completed``, ``canceled``),
  ``Twiml``, ``Url`` (+ ``Method``) -> 200 and the Call resource;
* ``GET`` of the same path -> the Call resource;
* ``POST /2010-04-01/Accounts/{AC}/Messages.json`` (``To``, ``From``, ``Body``) -> 201 and a Message
  resource (``queued``), kept in ``messages``.

Checks, in Twilio's order: HTTP Basic auth with the account SID and auth token (missing or wrong ->
401, code 20003; an account SID in the path other than the authenticated one -> 20003 too), then the
resource (an unknown call or path -> 404, code 20404), then the parameters. Errors have Twilio's JSON
shape ``{"code", "message", "more_info", "status"}``.

Calls: the simulator keeps a registry of live simulated calls. The caller simulator registers its
call with a ``deliver`` function and obeys what is delivered (``sim.twilio_caller``):

* ``Status=completed`` ends an in-progress call: Twilio sends the media stream's ``stop`` and closes
  it, and does not run the TwiML after ``<Connect>``. The call is ``completed`` at once, so a second
  update answers 400, code 21220 "Call is not in-progress. Cannot redirect." (as does any update of
  a call that has ended: Twilio's "Invalid call state").
* ``Status=canceled`` only hangs up queued or ringing calls (Call resource docs); on an in-progress
  call it changes nothing.
* ``Twiml`` or ``Url`` replaces what the call is doing: the stream is stopped the same way and the
  caller runs the new TwiML (``sim.twiml_runner``), fetching ``Url`` itself, signed. Both given: the
  URL wins (Twilio's warning 32019 "Twiml and Voice URL are both set. Using Voice URL."), noted in
  ``warnings``.

Every request is recorded in order (``requests``), with its form parameters and the status and
error code answered, so tests can assert on exactly what the server sent.

Not modelled (guesses marked as such): an unknown ``Status`` value answers 400 with code 20001 (the
real code is unverified); an update with none of Status/Twiml/Url changes nothing.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

API_VERSION = "2010-04-01"
ERRORS_URL = "https://www.twilio.com/docs/errors/"
AUTHENTICATE = 20003
NOT_FOUND = 20404
CALL_NOT_IN_PROGRESS = 21220
INVALID_URL = 21205
INVALID_TO = 21211
BODY_REQUIRED = 21602
FROM_REQUIRED = 21603
TO_REQUIRED = 21604
TWIML_AND_URL_WARNING = 32019

_CALL = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Calls/([^/]+)\.json$")
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_ACCOUNT = re.compile(r"^/2010-04-01/Accounts/([^/]+)(/|\.json$)")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MAX_BODY_BYTES = 1_000_000
_POLL_INTERVAL_S = 0.05


def twilio_error(status: int, code: int, message: str, detail: str | None = None) -> dict:
    """Twilio's JSON error body."""
    body = {"code": code, "message": message, "more_info": f"{ERRORS_URL}{code}", "status": status}
    if detail is not None:
        body["detail"] = detail
    return body


def rfc2822(epoch_s: float) -> str:
    """Twilio's date format: ``Tue, 31 Aug 2010 20:36:28 +0000``."""
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch_s))


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass(frozen=True)
class CallUpdate:
    """What one accepted POST asks of a live call: end it, or run new TwiML (inline or from a URL)."""
    status: str | None = None
    twiml: str | None = None
    url: str | None = None
    method: str = "POST"


@dataclass(frozen=True)
class RestRequest:
    method: str
    path: str
    params: dict
    status: int                 # HTTP status answered
    code: int | None            # Twilio error code answered; None on success
    account_sid: str = ""       # the Basic auth user, whether it authenticated or not


@dataclass
class SimCall:
    sid: str
    from_number: str
    to_number: str
    status: str = "in-progress"
    direction: str = "inbound"
    deliver: Callable[[CallUpdate], bool] | None = None
    created_s: float = field(default_factory=time.time)
    ended_s: float | None = None
    updates: list = field(default_factory=list)      # CallUpdate, each accepted update in order


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: "TwilioRestSimulator") -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5

    def do_POST(self) -> None:   # noqa: N802 (http.server's naming)
        self._answer("POST")

    def do_GET(self) -> None:    # noqa: N802
        self._answer("GET")

    def _answer(self, method: str) -> None:
        body = b""
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            body = self.rfile.read(length) if 0 <= length <= _MAX_BODY_BYTES else b""
        status, reply = self.server.sim._handle(method, self.path, self.headers.get("Authorization"), body)
        data = json.dumps(reply).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class TwilioRestSimulator:
    def __init__(self, account_sid: str, auth_token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._host, self._port = host, port
        self._cond = threading.Condition()
        self._requests: list[RestRequest] = []
        self._messages: list[dict] = []
        self._calls: dict[str, SimCall] = {}
        self.warnings: list[tuple[int, str]] = []        # (code, call SID) of Twilio warnings (32019)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "TwilioRestSimulator":
        if self._server is None:
            self._server = _Server((self._host, self._port), self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, args=(_POLL_INTERVAL_S,),
                                            name=f"sim-twilio-rest:{self._port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=2)

    def __enter__(self) -> "TwilioRestSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What the server's ``TWILIO_API_BASE_URL`` is set to."""
        return f"http://{self._host}:{self._port}"

    # -- the registry of live calls ------------------------------------------------------------------

    def register_call(self, call_sid: str, from_number: str, to_number: str,
                      deliver: Callable[[CallUpdate], bool] | None = None, status: str = "in-progress") -> None:
        """A call Twilio knows about. ``deliver(update)`` hands an accepted update to whoever plays
        the call and returns False if that call is already over (then the update answers 21220)."""
        with self._cond:
            self._calls[call_sid] = SimCall(call_sid, from_number, to_number, status=status, deliver=deliver)
            self._cond.notify_all()

    def call_ended(self, call_sid: str) -> None:
        """The call is over (the caller hung up, or its TwiML ended): later updates answer 21220."""
        with self._cond:
            call = self._calls.get(call_sid)
            if call is not None and call.status == "in-progress":
                call.status, call.ended_s = "completed", time.time()
            self._cond.notify_all()

    def call(self, call_sid: str) -> SimCall | None:
        with self._cond:
            return self._calls.get(call_sid)

    @property
    def calls(self) -> list[SimCall]:
        """Every call registered, in order."""
        with self._cond:
            return list(self._calls.values())

    # -- what a test reads -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RestRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def messages(self) -> list[dict]:
        """Every Message resource created, in order."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Callable[["TwilioRestSimulator"], bool], timeout_s: float) -> bool:
        """True once ``predicate(self)`` holds (checked on every request and registry change)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- one request ---------------------------------------------------------------------------------

    def _handle(self, method: str, raw_path: str, authorization: str | None, body: bytes) -> tuple[int, dict]:
        path = urllib.parse.urlsplit(raw_path).path
        try:
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            params = {}
        user, status, reply = self._route(method, path, authorization, params)
        with self._cond:
            self._requests.append(RestRequest(method, path, params, status, reply.get("code") if status >= 400 else None,
                                              user))
            self._cond.notify_all()
        return status, reply

    def _route(self, method: str, path: str, authorization: str | None, params: dict) -> tuple[str, int, dict]:
        user, password = _basic_auth(authorization)
        if user is None:
            return "", 401, twilio_error(401, AUTHENTICATE, "Authentication Error - No credentials provided",
                                         "Your AccountSid or AuthToken was incorrect.")
        if not (hmac.compare_digest(user, self.account_sid) and hmac.compare_digest(password, self.auth_token)):
            return user, 401, twilio_error(401, AUTHENTICATE, "Authenticate", "Your AccountSid or AuthToken was incorrect.")
        account = _ACCOUNT.match(path)
        if account is not None and account.group(1) != self.account_sid:
            return user, 401, twilio_error(401, AUTHENTICATE, "Authenticate", "Your AccountSid or AuthToken was incorrect.")
        call = _CALL.match(path)
        if call is not None and method in ("POST", "GET"):
            return (user,) + self._call_request(method, path, call.group(2), params)
        if _MESSAGES.match(path) and method == "POST":
            return (user,) + self._create_message(path, params)
        return user, 404, twilio_error(404, NOT_FOUND, f"The requested resource {path} was not found")

    def _call_request(self, method: str, path: str, call_sid: str, params: dict) -> tuple[int, dict]:
        with self._cond:
            call = self._calls.get(call_sid)
            if call is None:
                return 404, twilio_error(404, NOT_FOUND, f"The requested resource {path} was not found")
            if method == "GET":
                return 200, self._call_resource(call)
            update, problem = _parse_update(params)
            if problem is not None:
                return 400, problem
            if update is None or (update.status == "canceled" and call.status == "in-progress"):
                return 200, self._call_resource(call)           # nothing to do (canceled: queued/ringing only)
            if call.status != "in-progress" or (call.deliver is not None and not call.deliver(update)):
                call.status = "completed" if call.status == "in-progress" else call.status
                return 400, twilio_error(400, CALL_NOT_IN_PROGRESS, "Call is not in-progress. Cannot redirect.")
            if params.get("Url") and params.get("Twiml"):
                self.warnings.append((TWIML_AND_URL_WARNING, call_sid))
            call.updates.append(update)
            if update.status == "completed":
                call.status, call.ended_s = "completed", time.time()
            return 200, self._call_resource(call)

    def _call_resource(self, call: SimCall) -> dict:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call.sid}"
        ended = call.ended_s is not None
        return {
            "sid": call.sid, "account_sid": self.account_sid, "parent_call_sid": None,
            "date_created": rfc2822(call.created_s), "date_updated": rfc2822(call.ended_s or call.created_s),
            "to": call.to_number, "to_formatted": call.to_number, "from": call.from_number,
            "from_formatted": call.from_number, "phone_number_sid": None, "status": call.status,
            "start_time": rfc2822(call.created_s), "end_time": rfc2822(call.ended_s) if ended else None,
            "duration": str(int(call.ended_s - call.created_s)) if ended else None,
            "price": None, "price_unit": "USD", "direction": call.direction, "answered_by": None,
            "api_version": API_VERSION, "forwarded_from": None, "group_sid": None, "caller_name": None,
            "queue_time": "0", "trunk_sid": None, "uri": f"{uri}.json",
            "subresource_uris": {name: f"{uri}/{name.title().replace('_', '')}.json"
                                 for name in ("notifications", "recordings", "payments", "events", "siprec",
                                              "streams", "user_defined_message_subscriptions",
                                              "user_defined_messages")},
        }

    def _create_message(self, path: str, params: dict) -> tuple[int, dict]:
        to, sender, body = params.get("To", ""), params.get("From", ""), params.get("Body", "")
        if not to:
            return 400, twilio_error(400, TO_REQUIRED, "A 'To' phone number is required.")
        if not sender and not params.get("MessagingServiceSid"):
            return 400, twilio_error(400, FROM_REQUIRED, "A 'From' phone number is required.")
        if not body and not params.get("MediaUrl"):
            return 400, twilio_error(400, BODY_REQUIRED, "Message body is required.")
        if not _E164.match(to):
            return 400, twilio_error(400, INVALID_TO, f"The 'To' number {to} is not a valid phone number.")
        sid, now = new_sid("SM"), time.time()
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        message = {
            "sid": sid, "account_sid": self.account_sid, "to": to, "from": sender or None, "body": body,
            "status": "queued", "direction": "outbound-api", "num_segments": "1",
            "num_media": "0", "api_version": API_VERSION, "date_created": rfc2822(now),
            "date_updated": rfc2822(now), "date_sent": None, "price": None, "price_unit": "USD",
            "error_code": None, "error_message": None,
            "messaging_service_sid": params.get("MessagingServiceSid"), "uri": f"{uri}.json",
            "subresource_uris": {"media": f"{uri}/Media.json"},
        }
        with self._cond:
            self._messages.append(message)
        return 201, message


def _basic_auth(header: str | None) -> tuple[str | None, str]:
    if not header or not header.startswith("Basic "):
        return None, ""
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None, ""
    return user, password


def _parse_update(params: dict) -> tuple[CallUpdate | None, dict | None]:
    """(the update, None) or (None, an error body); (None, None) when nothing is asked."""
    status = params.get("Status") or None
    if status is not None and status not in ("completed", "canceled"):
        return None, twilio_error(400, 20001, f"Status must be one of canceled, completed, not {status!r}")
    url = params.get("Url") or None
    if url is not None and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return None, twilio_error(400, INVALID_URL, f"Url is not a valid URL: {url}")
    method = (params.get("Method") or "POST").upper()
    twiml = None if url else (params.get("Twiml") or None)
    if status is None and url is None and twiml is None:
        return None, None
    return CallUpdate(status=status, twiml=twiml, url=url, method=method), None
