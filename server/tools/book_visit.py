"""``book_visit``: the chosen time written into the business's calendar, once, never double-booked.

Offered with ``find_free_slots``. It takes the slot's id and the caller's details (name, a
callback number when not the one calling, city, address, a short note of the job). Off the call's
thread (``run_io``) it reads the calendar again, writes one VEVENT under the slot's own resource
name with ``If-None-Match: *`` (two calls booking one time: the server lets one create it), and
reads the calendar once more (an owner's event written meanwhile: the visit is withdrawn). The
answer (``answer_io``) is JSON with ``status``:

* ``booked``: the visit is in the calendar; the lead gets the details and the visit, is stored and
  delivered (with the visit) once complete, and the call ends after the model confirms the time;
* ``taken``: someone else got that time meanwhile, with fresh ``slots`` to offer;
* ``unavailable``: the calendar cannot be reached in time; the lead is kept with the visit marked
  ``unavailable``, and the model tells the caller the business will call back to set a time.
"""
from __future__ import annotations

import json
from datetime import timedelta

from server.business.slots import says
from server.core.events import note
from server.leads.normalise import normalise_phone
from server.tools import CallFacts, LeadUpdated, ToolBase, ToolContext, ToolDef, ToolReply, arguments_of, reply_json
from server.tools.diary import Diary, slot_start
from server.tools.find_free_slots import NAME as LOOKUP

NAME = "book_visit"
SPEC = {
    "type": "function",
    "name": NAME,
    "description": (f"Book the time the caller chose (a slot id from {LOOKUP}) in the business's calendar, with the "
                    "caller's details. The answer says 'booked', 'taken' (with other times to offer) or "
                    "'unavailable'."),
    "parameters": {"type": "object", "properties": {
        "slot_id": {"type": "string", "description": f"The id of the chosen time, as {LOOKUP} gave it."},
        "service": {"type": "string", "description": "The service the visit is for, in the caller's words."},
        "name": {"type": "string", "description": "The caller's name."},
        "phone": {"type": "string", "description": "A callback number, only if different from the number the "
                                                   "caller is calling from."},
        "city": {"type": "string", "description": "The city or town of the visit."},
        "address": {"type": "string", "description": "The street address, if the caller gave it."},
        "note": {"type": "string", "description": "A short note of the job."}},
        "required": ["slot_id", "name", "city"]},
}
MAX_TEXT = 200


class BookVisit(ToolBase):
    name = NAME
    spec = SPEC

    def __init__(self, diary: Diary) -> None:
        self.diary = diary

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply:
        args = arguments_of(arguments)
        if args is None:
            return _error("the arguments were not a JSON object; call book_visit again")
        start = slot_start(args.get("slot_id"))
        if start is None:
            return _error(f"slot_id {args.get('slot_id')!r} is not an id {LOOKUP} gave; call {LOOKUP} first")
        details = {k: str(args[k]).strip()[:MAX_TEXT] for k in ("service", "name", "phone", "city", "address", "note")
                   if isinstance(args.get(k), (str, int)) and str(args[k]).strip()}
        missing = [k for k in ("name", "city") if k not in details]
        if missing:
            return _error("ask the caller for: " + ", ".join(missing), missing=missing)
        if "service" not in details and ctx.lead is not None and ctx.lead.fields.get("service"):
            details["service"] = ctx.lead.fields["service"]
        return ToolReply(io=(start, details, self._callback(details, ctx)), io_timeout_ms=self.diary.timeout_ms)

    def _callback(self, details: dict, ctx: ToolContext) -> str:
        phone = normalise_phone(details["phone"]) if "phone" in details else None
        if phone is not None and phone.ok:
            return phone.value
        return (ctx.lead.fields.get("phone", "") if ctx.lead is not None else "") or self.diary.call.caller

    # --- off the call's thread -------------------------------------------------------------------

    def run_io(self, request):
        start, details, callback = request
        diary, calendar = self.diary, self.diary.calendar
        now = diary.begin_io()
        mine = diary.uid(start)
        others = [(s, e) for s, e, uid in calendar.busy(now - timedelta(days=1), now + timedelta(
            days=diary.rules.days_ahead + 2), diary.hours.zone) if uid != mine]
        if not diary.bookable(start, now, others):
            return "taken", now, others
        summary = " – ".join(x for x in (details.get("service"), details.get("city")) if x) or "visit"
        description = "\n".join(f"{label}: {value}" for label, value in (
            ("name", details.get("name")), ("callback", callback), ("address", details.get("address")),
            ("note", details.get("note")), ("call", diary.call.call_sid)) if value)
        name = diary.resource(start)
        if calendar.create(name, diary.vevent(start, now, summary, description)) == "exists":
            text = calendar.read(name) or ""
            if mine in text:
                return "booked", now, others          # this call's own booking, asked again
            return "taken", now, others + [(start, start + timedelta(minutes=diary.rules.visit_minutes))]
        end = start + timedelta(minutes=diary.rules.visit_minutes)
        if any(uid != mine and s < end and start < e for s, e, uid in calendar.busy(start, end, diary.hours.zone)):
            calendar.delete(name)                     # the owner wrote something there meanwhile
            return "taken", now, others + [(start, end)]
        return "booked", now, others

    # --- the answer ----------------------------------------------------------------------------------

    def answer_io(self, request, result, error, ctx: ToolContext) -> ToolReply:
        start, details, callback = request
        zone = self.diary.hours.zone
        if error is not None:
            visit = {"start": start.astimezone(zone).isoformat(), "status": "unavailable"}
            return ToolReply(reply_json({"status": "unavailable", "next": (
                "The calendar cannot be reached right now. Say in one short sentence that the business will call "
                "back to set a time, thank the caller and say goodbye.")}),
                effects=self._lead(details, callback, visit, ctx),
                notes=(note('WARNING', 'calendar_unavailable', tool=NAME, error=error),))
        status, now, busy = result
        if status == "taken":
            return ToolReply(reply_json({"status": "taken", "slots": self.diary.offer(now, busy),
                                         "next": "Someone took that time a moment ago. Apologise briefly and offer "
                                                 "these times instead."}),
                             notes=(note('INFO', 'visit_taken', start=start.isoformat()),))
        spoken = says(start, now, self.diary.hours, self.diary.profile.language)
        visit = {"start": start.astimezone(zone).isoformat(), "says": spoken, "status": "booked",
                 "uid": self.diary.uid(start), "minutes": self.diary.rules.visit_minutes}
        return ToolReply(reply_json({"status": "booked", "visit": {"start": visit["start"], "says": spoken},
                                     "next": "Confirm the time in one short sentence, thank the caller and say "
                                             "goodbye. Ask nothing else."}),
                         effects=self._lead(details, callback, visit, ctx),
                         notes=(note('INFO', 'visit_booked', start=visit["start"]),))

    @staticmethod
    def _lead(details: dict, callback: str, visit: dict, ctx: ToolContext) -> tuple:
        lead = ctx.lead
        if lead is None:
            return ()
        fields = {k: details[k] for k in ("service", "city", "name") if k in details}
        if callback:
            fields["phone"] = callback
        notes = "; ".join(x for x in (details.get("address"), details.get("note")) if x)
        if notes:
            fields["notes"] = notes
        answer = lead.on_tool_call(json.dumps(fields, ensure_ascii=False))
        lead.set_visit(visit)
        return (LeadUpdated(answer.status, True, answer.became_complete, answer.missing),)


def _error(text: str, missing: list | None = None) -> ToolReply:
    return ToolReply(reply_json({"status": "error", "error": text, **({"missing": missing} if missing else {})}))


def _make(profile, options, call: CallFacts | None = None):
    return BookVisit(Diary(profile, call or CallFacts()))


TOOL = ToolDef(NAME, make=_make, default=True, order=21,
               offered=lambda profile: bool(getattr(profile, "calendar_url", "")))
