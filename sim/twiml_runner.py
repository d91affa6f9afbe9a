"""How the simulated Twilio runs TwiML on a live call once a media stream is no longer in charge.

Written from Twilio's TwiML for Programmable Voice pages (``<Connect>``, ``<Redirect>``, ``<Dial>``,
``<Hangup>``), independent of the server's TwiML builders.

Theory of operation:

* a document's verbs run in order; running out of verbs ends the call, as does ``<Hangup>``;
* ``<Connect><Stream>`` opens a media stream (``OpenStream``); the verbs after ``<Connect>`` are kept and
  run when the application closes that stream (``resume``); none there: Twilio hangs up;
* ``<Redirect>`` (POST unless ``method`` says GET) replaces the document with the one its URL answers;
* ``<Dial>`` calls a person, who answers or not as the test chose (``dial_outcome``): ``answered``
  (they talk, the person hangs up first: ``DialCallStatus=completed``), ``no-answer`` (after
  ``timeout`` seconds, 30 by default) or ``busy``. With an ``action`` URL Twilio requests it with
  ``DialCallStatus``, ``DialCallSid`` (and ``DialCallDuration`` when answered) and runs the answer:
  the verbs after that ``<Dial>`` are unreachable. Without one the document goes on;
* a REST update waiting (``pending()``) stops the document between verbs (``Interrupted``): new
  TwiML from the API replaces whatever the call was doing.

Nothing waits in real time: a ``<Say>`` is recorded as heard, a dial's timeout is recorded, not
slept. Fetching is injected (the caller signs its requests with ``sim.twilio_wire``); what the caller
would hear goes to ``heard`` as ``(verb, text)``, each dial to ``dials``. At most ``MAX_DOCUMENTS``
documents are fetched per run, a bound against redirect loops.
"""
from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin

DIAL_CALL_STATUS = {"answered": "completed", "no-answer": "no-answer", "busy": "busy"}
DEFAULT_DIAL_TIMEOUT_S = 30
ANSWERED_DIAL_DURATION_S = 30      # how long the simulated person talks (reported, not waited)
MAX_DOCUMENTS = 20

Fetch = Callable[[str, str, dict], str]
"""``fetch(url, method, extra_params) -> TwiML text``; raises ``OSError`` when the request fails."""


@dataclass(frozen=True)
class DialAttempt:
    number: str
    caller_id: str | None
    timeout_s: int
    action: str | None
    outcome: str                 # answered / no-answer / busy: what the simulated person did
    dial_call_status: str        # what Twilio reports to the action URL


@dataclass(frozen=True)
class OpenStream:
    url: str
    parameters: dict


@dataclass(frozen=True)
class CallOver:
    reason: str


@dataclass(frozen=True)
class Interrupted:
    """A REST update is waiting: the caller takes it and gives the runner new TwiML (or ends)."""


Outcome = OpenStream | CallOver | Interrupted


class TwimlRunner:
    def __init__(self, fetch: Fetch, heard: list, dials: list, dial_outcome: str = "answered",
                 pending: Callable[[], bool] = lambda: False,
                 note: Callable[[str, str], None] = lambda kind, detail: None) -> None:
        if dial_outcome not in DIAL_CALL_STATUS:
            raise ValueError(f"dial_outcome must be one of {', '.join(DIAL_CALL_STATUS)}, not {dial_outcome!r}")
        self._fetch, self._heard, self._dials = fetch, heard, dials
        self.dial_outcome = dial_outcome
        self._pending, self._note = pending, note
        self._verbs: list[ET.Element] = []
        self._doc_url = ""
        self._documents = 0

    def keep_after_stream(self, root: ET.Element, doc_url: str) -> None:
        """The webhook's document: remember the verbs after its ``<Connect><Stream>``."""
        verbs = list(root)
        at = next((i for i, v in enumerate(verbs) if v.tag == "Connect" and v.find("Stream") is not None), len(verbs))
        self._verbs, self._doc_url = verbs[at + 1:], doc_url

    def resume(self) -> Outcome:
        """The application closed the stream: the verbs after ``<Connect>`` run."""
        self._documents = 0
        if not self._verbs:
            self._heard.append(("Hangup", "(no TwiML after <Connect>)"))
            return CallOver("no TwiML after <Connect>")
        return self._run()

    def run_twiml(self, text: str) -> Outcome:
        """TwiML given inline (a REST update's ``Twiml``)."""
        self._documents = 0
        if not self._load(text, ""):
            return CallOver("invalid TwiML")
        return self._run()

    def run_url(self, url: str, method: str = "POST") -> Outcome:
        """TwiML fetched from a URL (a REST update's ``Url``)."""
        self._documents = 0
        if not self._fetch_document(url, method, {}):
            return CallOver("TwiML fetch failed")
        return self._run()

    # -- the interpreter ---------------------------------------------------------------------------

    def _run(self) -> Outcome:
        while self._verbs:
            if self._pending():
                return Interrupted()
            verb = self._verbs.pop(0)
            text = (verb.text or "").strip()
            if verb.tag == "Hangup":
                self._heard.append(("Hangup", ""))
                self._verbs = []
                return CallOver("hangup")
            if verb.tag == "Redirect":
                self._note("twiml", f"Redirect {text}")
                if not self._fetch_document(urljoin(self._doc_url, text), verb.get("method", "POST"), {}):
                    return CallOver("TwiML fetch failed")
            elif verb.tag == "Dial":
                action = self._dial(verb, text)
                if action is not None and not self._fetch_document(*action):
                    return CallOver("TwiML fetch failed")
            elif verb.tag == "Connect" and verb.find("Stream") is not None:
                stream = verb.find("Stream")
                parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
                self._note("twiml", f"Connect Stream {stream.get('url')}")
                return OpenStream(stream.get("url") or "", parameters)
            else:                                            # Say, Play, Pause, ...: heard, then on
                self._heard.append((verb.tag, text))
                self._note("twiml", f"{verb.tag} {text}".strip())
        return CallOver("end of TwiML")

    def _dial(self, verb: ET.Element, text: str) -> tuple[str, str, dict] | None:
        """Record the dial; the action request to make, if the ``<Dial>`` has one."""
        noun = next((child for child in verb if child.tag in ("Number", "Client", "Sip")), None)
        number = text or ((noun.text or "").strip() if noun is not None else "")
        try:
            timeout_s = int(verb.get("timeout", DEFAULT_DIAL_TIMEOUT_S))
        except ValueError:
            timeout_s = DEFAULT_DIAL_TIMEOUT_S
        status = DIAL_CALL_STATUS[self.dial_outcome]
        action = verb.get("action")
        self._dials.append(DialAttempt(number, verb.get("callerId"), timeout_s, action, self.dial_outcome, status))
        self._heard.append(("Dial", f"{number} {self.dial_outcome}"))
        self._note("twiml", f"Dial {number}: {self.dial_outcome}")
        if not action:
            return None
        extra = {"DialCallStatus": status, "DialCallSid": "CA" + uuid.uuid4().hex}
        if self.dial_outcome == "answered":
            extra["DialCallDuration"] = str(ANSWERED_DIAL_DURATION_S)
        return urljoin(self._doc_url, action), verb.get("method", "POST"), extra

    def _fetch_document(self, url: str, method: str, extra: dict) -> bool:
        self._documents += 1
        if self._documents > MAX_DOCUMENTS:
            self._heard.append(("Error", f"more than {MAX_DOCUMENTS} TwiML documents in a row"))
            return False
        try:
            text = self._fetch(url, method.upper(), extra)
        except OSError as exc:              # Twilio reports an application error and hangs up
            self._heard.append(("Error", f"{type(exc).__name__}: {exc}"))
            self._note("after_stream", f"error fetching TwiML from {url}")
            return False
        return self._load(text, url)

    def _load(self, text: str, doc_url: str) -> bool:
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            self._heard.append(("Error", f"invalid TwiML: {exc}"))
            return False
        if root.tag != "Response":
            self._heard.append(("Error", f"invalid TwiML: root <{root.tag}>"))
            return False
        self._verbs, self._doc_url = list(root), doc_url
        return True
