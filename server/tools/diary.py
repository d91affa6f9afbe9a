"""The business's diary as the booking tools see it: its hours, its rules, its CalDAV calendar.

Shared by ``find_free_slots`` and ``book_visit`` (not a tool itself: it exposes no ``TOOL``).
A slot's id is opaque to the model but carries its start (``v1-20261209T0800Z``): the booking
tool needs no memory of what was offered, and checks the time again against the hours and the
calendar when it books. A visit is written as one VEVENT whose resource name is the slot
(``visit-<business>-<start>.ics``: one visit per slot, the server's ``If-None-Match`` decides
between two calls) and whose UID comes from the call and the slot (a retry of the same booking
finds its own event and is ``booked``, never twice).
"""
from __future__ import annotations

import hashlib
import os
import re
from datetime import date, datetime, timedelta, timezone

from icalendar import Calendar, Event

from server.adapters.caldav_calendar import CalDavCalendar
from server.business.hours import OpeningHours
from server.business.slots import SlotRules, free_slots, says
from server.tools import CallFacts

UTC = timezone.utc
_SLOT = re.compile(r"v1-(\d{8}T\d{4})Z")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAYS_SPOKEN = {"today": 0, "tomorrow": 1, "day_after_tomorrow": 2}


def slot_id(start: datetime) -> str:
    return f"v1-{start.astimezone(UTC):%Y%m%dT%H%M}Z"


def slot_start(text: str) -> datetime | None:
    match = _SLOT.fullmatch(str(text or "").strip())
    if match is None:
        return None
    try:
        return datetime.strptime(match[1], "%Y%m%dT%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def wanted_day(text: str | None, today: date) -> date | None | str:
    """The day the caller asked for: None (any), a date, or ``"?"`` when it cannot be read."""
    if not text:
        return None
    text = str(text).strip().lower()
    if text in DAYS_SPOKEN:
        return today + timedelta(days=DAYS_SPOKEN[text])
    if text in WEEKDAYS:
        return today + timedelta(days=(WEEKDAYS.index(text) - today.weekday()) % 7)
    try:
        return date.fromisoformat(text)
    except ValueError:
        return "?"


class Diary:
    def __init__(self, profile, call: CallFacts) -> None:
        self.profile = profile
        self.call = call
        self.hours: OpeningHours = profile.opening_hours()
        self.rules = SlotRules(profile.visit_minutes, profile.visit_buffer_minutes, profile.booking_notice_minutes,
                               profile.booking_days_ahead)
        self.timeout_ms = profile.calendar_timeout_ms
        self.calendar = CalDavCalendar(
            profile.calendar_url, os.environ.get(profile.calendar_username_env or "") or None,
            os.environ.get(profile.calendar_password_env or "") or None,
            timeout_s=profile.calendar_timeout_ms / 1000)

    # --- impure: what ``run_io`` does ------------------------------------------------------------

    def begin_io(self) -> datetime:
        """The start of one tool's I/O: its calendar work gets the tool's time budget in all; now."""
        self.calendar.start(self.timeout_ms / 1000 * 0.9)    # a little under the call's deadline: ours ends first
        return self.now()

    def now(self) -> datetime:
        return self.call.business_time.astimezone(UTC) if self.call.business_time else datetime.now(UTC)

    def busy_ahead(self, now: datetime) -> list[tuple[datetime, datetime]]:
        end = now + timedelta(days=self.rules.days_ahead + 2)
        return [(s, e) for s, e, _ in self.calendar.busy(now - timedelta(days=1), end, self.hours.zone)]

    # --- pure -------------------------------------------------------------------------------------

    def offer(self, now: datetime, busy, day: date | None = None, part: str | None = None) -> list[dict]:
        language = self.profile.language
        return [{"id": slot_id(start), "start": start.astimezone(self.hours.zone).isoformat(),
                 "says": says(start, now, self.hours, language)}
                for start in free_slots(self.hours, busy, now, self.rules, day, part)]

    def bookable(self, start: datetime, now: datetime, busy) -> bool:
        """The slot is still one we would offer: on the grid, in the hours, ahead enough, free."""
        local_day = start.astimezone(self.hours.zone).date()
        return start in free_slots(self.hours, busy, now, self.rules, local_day, None, limit=10_000)

    def resource(self, start: datetime) -> str:
        business = re.sub(r"\D", "", self.profile.number) or "default"
        return f"visit-{business}-{start.astimezone(UTC):%Y%m%dT%H%M}Z.ics"

    def uid(self, start: datetime) -> str:
        digest = hashlib.sha256(f"{self.call.call_sid}|{slot_id(start)}".encode()).hexdigest()[:24]
        return f"{digest}@prosaas"

    def vevent(self, start: datetime, now: datetime, summary: str, description: str) -> str:
        calendar = Calendar()
        calendar.add("prodid", "-//ProSaaS//phone agent//HE")
        calendar.add("version", "2.0")
        event = Event()
        event.add("uid", self.uid(start))
        event.add("dtstamp", now.astimezone(UTC))
        event.add("dtstart", start.astimezone(UTC))
        event.add("dtend", (start + timedelta(minutes=self.rules.visit_minutes)).astimezone(UTC))
        event.add("summary", summary)
        event.add("description", description)
        if self.call.call_sid:
            event.add("x-prosaas-call", self.call.call_sid)       # one short line: never folded
        calendar.add_component(event)
        return calendar.to_ical().decode("utf-8")
