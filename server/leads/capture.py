"""Lead capture of one call: the lead tool's answers and the lead as it stands (pure).

Theory of operation. The model calls ``save_lead`` when it believes it has the details; every
call is validated and normalised field by field (``server.leads.normalise``): the service against
the business's own list, the city against the gazetteer (and the business's served cities), the
phone to E.164. The caller's own number (``From``) is the callback number unless the model gives
another. The answer goes back to the model as the ``function_call_output`` string:

* ``{"status": "saved", ...}`` when every required field is known and valid: the lead is
  complete, and ``next`` tells the model to confirm and say goodbye (the call then ends);
* ``{"status": "incomplete", "missing": [...], "problems": {...}}`` otherwise, so the model asks
  for exactly what is missing or was not understood.

What the caller said (the input transcription) is kept too: a caller who hangs up before the lead
is complete leaves a *partial* lead, with the fields the tool calls gave and, for the fields they
did not, whatever service and city can be recognised in the caller's own words.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from server.leads.normalise import find_city_in_text, normalise_city, normalise_phone, normalise_service

MAX_TEXT = 500


@dataclass(frozen=True)
class LeadSnapshot:
    """The lead as it stands; ``status`` is ``complete`` or ``partial``."""
    status: str
    service: str | None
    city: str | None
    city_served: bool | None
    name: str | None
    phone: str | None
    notes: str | None
    missing: tuple[str, ...]
    sources: dict = field(default_factory=dict, compare=False)
    """field -> ``tool``, ``caller_id`` or ``transcript``."""
    visit: dict | None = field(default=None, compare=False)
    """The visit booked for the lead (``start``, ``says``, ``status``: booked or unavailable)."""


@dataclass(frozen=True)
class ToolAnswer:
    output: str
    """The ``function_call_output`` string (JSON) for the model."""
    status: str
    """saved, incomplete or error."""
    changed: bool
    became_complete: bool
    missing: tuple[str, ...] = ()


def _dump(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class LeadCapture:
    def __init__(self, services: tuple[str, ...] | list[str], cities_served: tuple[str, ...] | list[str],
                 required: tuple[str, ...] | list[str] = ("service", "city", "phone"),
                 caller_phone: str | None = None) -> None:
        self.services = list(services)
        self.cities_served = list(cities_served)
        self.required = tuple(required)
        self.fields: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self.city_served: bool | None = None
        self.complete = False
        self.visit: dict | None = None
        self.tool_calls = 0
        self.caller_texts: list[str] = []
        if caller_phone:
            phone = normalise_phone(caller_phone)
            if phone.ok:
                self.fields["phone"], self.sources["phone"] = phone.value, "caller_id"

    # --- inputs -------------------------------------------------------------------------------

    def on_caller_text(self, text: str) -> None:
        if text.strip():
            self.caller_texts.append(text.strip())

    def on_tool_call(self, arguments_json: str) -> ToolAnswer:
        """One call of the lead tool (``server.tools.save_lead``): its arguments, as the model gave them."""
        self.tool_calls += 1
        try:
            args = json.loads(arguments_json or "{}")
        except ValueError:
            args = None
        if not isinstance(args, dict):
            return ToolAnswer(_dump({"status": "error", "error": "the arguments were not a JSON object; "
                                                                 "call the tool again"}), "error", False, False)
        before = (dict(self.fields), self.city_served)
        problems = self._apply(args)
        missing = tuple(f for f in self.required if f not in self.fields)
        changed = (dict(self.fields), self.city_served) != before
        if missing or problems:
            asks = [*missing, *(k for k in problems if k not in missing)]
            return ToolAnswer(_dump({"status": "incomplete", "missing": list(missing), "problems": problems,
                                     "known": self._public_fields(),
                                     "next": "Ask the caller, briefly, for: " + ", ".join(asks) + "."}),
                              "incomplete", changed, False, missing)
        became_complete = not self.complete
        self.complete = True
        if self.city_served is False:
            next_step = (f"Tell the caller politely that the business does not usually serve {self.fields['city']}, "
                         "that the request was passed on anyway, thank them and say goodbye. Ask nothing else.")
        else:
            next_step = ("Confirm in one short sentence that a representative will call back, thank the caller "
                         "and say goodbye. Ask nothing else.")
        return ToolAnswer(_dump({"status": "saved", "lead": self._public_fields(), "next": next_step}),
                          "saved", changed or became_complete, became_complete)

    def _apply(self, args: dict) -> dict[str, str]:
        problems: dict[str, str] = {}

        def text(key: str) -> str | None:
            value = args.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                return None
            if not isinstance(value, str):
                problems[key] = f"{key} must be text"
                return None
            return value.strip()[:MAX_TEXT]

        service = text("service")
        if service is not None:
            found = normalise_service(service, self.services)
            if found.ok:
                self.fields["service"], self.sources["service"] = found.value, "tool"
            else:
                problems["service"] = found.problem or "not understood"
        city = text("city")
        if city is not None:
            found = normalise_city(city)
            if found.ok:
                self.fields["city"], self.sources["city"] = found.value, "tool"
                self.city_served = not self.cities_served or found.value in self.cities_served
            else:
                problems["city"] = found.problem or "not understood"
        phone = text("phone")
        if phone is not None:
            found = normalise_phone(phone)
            if found.ok:
                self.fields["phone"], self.sources["phone"] = found.value, "tool"
            else:
                problems["phone"] = f"{found.problem}: ask the caller to repeat the number digit by digit"
        for key in ("name", "notes"):
            value = text(key)
            if value is not None:
                self.fields[key], self.sources[key] = value, "tool"
        return problems

    # --- outputs ------------------------------------------------------------------------------

    def _public_fields(self) -> dict:
        """What the model may repeat back: the phone is shown only as its last digits."""
        shown = {k: v for k, v in self.fields.items() if k != "phone"}
        if "phone" in self.fields:
            shown["phone_ending"] = self.fields["phone"][-4:]
        if self.city_served is not None:
            shown["city_served"] = self.city_served
        return shown

    @property
    def has_content(self) -> bool:
        """Anything worth a partial lead: a field from the tool, or words from the caller."""
        return any(src != "caller_id" for src in self.sources.values()) or bool(self.caller_texts)

    def snapshot(self) -> LeadSnapshot:
        """The lead now; a lead that is not complete is filled from the caller's words where it can be."""
        fields, sources, city_served = dict(self.fields), dict(self.sources), self.city_served
        if not self.complete:
            for text in self.caller_texts:
                if "service" not in fields and self.services:
                    found = normalise_service(text, self.services)
                    if found.ok:
                        fields["service"], sources["service"] = found.value, "transcript"
                if "city" not in fields:
                    city = find_city_in_text(text)
                    if city is not None:
                        fields["city"], sources["city"] = city, "transcript"
                        city_served = not self.cities_served or city in self.cities_served
        notes = fields.get("notes")
        if not self.complete and self.caller_texts:
            said = " | ".join(self.caller_texts)
            notes = f"{notes} — caller said: {said}" if notes else f"caller said: {said}"
        missing = tuple(f for f in self.required if f not in fields)
        return LeadSnapshot("complete" if self.complete else "partial", fields.get("service"), fields.get("city"),
                            city_served, fields.get("name"), fields.get("phone"), notes, missing, sources,
                            dict(self.visit) if self.visit is not None else None)

    def set_visit(self, visit: dict) -> None:
        """The booking tool's word: a visit booked (or the calendar unavailable) for this lead."""
        self.visit = dict(visit)
