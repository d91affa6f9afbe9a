"""``find_free_slots``: up to three free visit times from the business's calendar.

Offered to a business with a ``calendar_url``. The model may pass the day the caller asked for
(``today``, ``tomorrow``, ``day_after_tomorrow``, a weekday in English or a date) and a part of the
day (``morning``, ``noon``, ``afternoon``, ``evening``). The calendar is read off the call's thread
(``run_io``: what is busy from now on), then the free times are computed (``server.business.slots``:
the hours with Israel's holidays, the notice, the days ahead, the visits already there). The answer
is JSON: ``{"status": "ok", "slots": [{"id", "start", "says"}, ...]}`` with ``says`` worded as a
person says a time on the phone; ``none`` with what to offer instead; ``unavailable`` when the
calendar cannot be reached in time (the model then promises a call back to set a time).
"""
from __future__ import annotations

from server.business.slots import PARTS_OF_DAY
from server.core.events import note
from server.tools import CallFacts, ToolBase, ToolContext, ToolDef, ToolReply, arguments_of, reply_json
from server.tools.diary import Diary, wanted_day

NAME = "find_free_slots"
SPEC = {
    "type": "function",
    "name": NAME,
    "description": ("Find free times for a visit in the business's calendar. Call it when the caller wants someone "
                    "to come; pass the day and the part of the day the caller asked for, if any. Offer the caller "
                    "the times of its answer, saying each as its 'says' field does."),
    "parameters": {"type": "object", "properties": {
        "service": {"type": "string", "description": "The service the visit is for."},
        "day": {"type": "string", "description": "today, tomorrow, day_after_tomorrow, a weekday in English "
                                                 "(sunday...saturday) or a date YYYY-MM-DD; empty for any day."},
        "part_of_day": {"type": "string", "enum": sorted(PARTS_OF_DAY)}},
        "required": []},
}
INSTRUCTIONS = (f"If the caller wants someone to come, call {NAME} (with the day and part of the day they asked for) "
                "and offer the times it answers; once the caller picks one, call book_visit with its id and the "
                "caller's details. book_visit also saves the request: do not call save_lead for a booked visit.")
UNAVAILABLE = {"status": "unavailable",
               "next": "The calendar cannot be checked right now. Say in one short sentence that the business will "
                       "call back to set a time, and take the caller's details with save_lead."}


class FindFreeSlots(ToolBase):
    name = NAME
    spec = SPEC

    def __init__(self, diary: Diary) -> None:
        self.diary = diary

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply:
        args = arguments_of(arguments)
        if args is None:
            return ToolReply(reply_json({"status": "error", "error": "the arguments were not a JSON object"}))
        part = args.get("part_of_day") or None
        if part is not None and part not in PARTS_OF_DAY:
            part = None
        return ToolReply(io=(args.get("day") or None, part), io_timeout_ms=self.diary.timeout_ms)

    def run_io(self, request):
        now = self.diary.begin_io()
        return now, self.diary.busy_ahead(now)

    def answer_io(self, request, result, error, ctx: ToolContext) -> ToolReply:
        if error is not None:
            return ToolReply(reply_json(UNAVAILABLE), notes=(note('WARNING', 'calendar_unavailable', tool=NAME,
                                                                  error=error),))
        now, busy = result
        day_text, part = request
        day = wanted_day(day_text, now.astimezone(self.diary.hours.zone).date())
        if day == "?":
            return ToolReply(reply_json({"status": "error", "error": f"day {day_text!r} is not a day I know"}))
        slots = self.diary.offer(now, busy, day, part)
        if not slots and (day is not None or part is not None):
            others = self.diary.offer(now, busy)
            return ToolReply(reply_json({"status": "none", "asked": {"day": day_text, "part_of_day": part},
                                         "slots": others,
                                         "next": "Nothing is free then. Offer these times instead."}))
        if not slots:
            return ToolReply(reply_json({"status": "none", "slots": [],
                                         "next": "No time is free soon. Say the business will call back to set a "
                                                 "time, and take the caller's details with save_lead."}))
        return ToolReply(reply_json({"status": "ok", "slots": slots}),
                         notes=(note('INFO', 'slots_offered', count=len(slots), first=slots[0]["start"]),))


def _make(profile, options, call: CallFacts | None = None):
    return FindFreeSlots(Diary(profile, call or CallFacts()))


TOOL = ToolDef(NAME, make=_make, instructions=INSTRUCTIONS, default=True, order=20,
               offered=lambda profile: bool(getattr(profile, "calendar_url", "")))
