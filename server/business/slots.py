"""Free visit times and how to say them on the phone (pure: the caller passes every instant in).

Theory of operation. A visit lasts ``visit_minutes``; a business may want ``buffer_minutes``
between visits. Each opening range of a day (``OpeningHours.spans_on``: the week, closed dates,
Israel's holidays and their eves) is cut into a grid from its opening: a visit every
``visit_minutes + buffer_minutes``, the whole visit inside the range. A grid time is free when it
is at least ``notice_minutes`` after now, at most ``days_ahead`` days ahead, and no busy interval
of the calendar (each widened by the buffer) overlaps the visit. Every visit we book sits on the
grid, so two of ours never overlap; the owner's own events can sit anywhere and simply take the
grid times they touch.

Wall times are the business's (``08:00`` is what it means), turned into instants the way the
hours are: on the night the clocks go forward a wall time that does not exist opens at the jump;
on the night they go back the first of the two instants is used.

``says`` words a time as a person says it on the phone, so that the model reads it naturally:
``מחר, יום רביעי, בעשר בבוקר``; a date further away is named (``ביום ראשון, 13 בדצמבר, ...``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from server.business.hours import UTC, OpeningHours, instants_of

PARTS_OF_DAY = {"morning": (0, 12 * 3600), "noon": (11 * 3600, 14 * 3600), "afternoon": (12 * 3600, 17 * 3600),
                "evening": (17 * 3600, 24 * 3600)}
"""Where a part of the day the caller asked for may start (seconds since local midnight)."""
MAX_OFFERED = 3


@dataclass(frozen=True)
class SlotRules:
    visit_minutes: int = 60
    buffer_minutes: int = 0
    notice_minutes: int = 120
    days_ahead: int = 14


def free_slots(hours: OpeningHours, busy: list[tuple[datetime, datetime]], now_utc: datetime, rules: SlotRules,
               day: date | None = None, part: str | None = None, limit: int = MAX_OFFERED) -> list[datetime]:
    """The first ``limit`` free visit starts (UTC), in time order; ``day`` (local) and ``part`` (a
    key of ``PARTS_OF_DAY``) narrow them to what the caller asked for."""
    zone = hours.zone
    today = now_utc.astimezone(zone).date()
    earliest = now_utc + timedelta(minutes=rules.notice_minutes)
    visit, gap = timedelta(minutes=rules.visit_minutes), timedelta(minutes=rules.buffer_minutes)
    widened = [(start - gap, end + gap) for start, end in busy]
    low_s, high_s = PARTS_OF_DAY[part] if part else (0, 24 * 3600)
    days = [day] if day is not None else [today + timedelta(days=n) for n in range(rules.days_ahead + 1)]
    found: list[datetime] = []
    for d in days:
        if not today <= d <= today + timedelta(days=rules.days_ahead):
            continue
        for span in hours.spans_on(d):
            step_s = (rules.visit_minutes + rules.buffer_minutes) * 60
            for second in range(span.start_s, span.end_s - rules.visit_minutes * 60 + 1, step_s):
                if not low_s <= second < high_s:
                    continue
                starts = instants_of(d, second, zone)
                if not starts:
                    continue
                start = starts[0]
                if start < earliest or any(b_start < start + visit and start < b_end for b_start, b_end in widened):
                    continue
                found.append(start)
                if len(found) >= limit:
                    return found
    return found


# --- saying a time ---------------------------------------------------------------------------------

_HE_WEEKDAYS = ("שני", "שלישי", "רביעי", "חמישי", "שישי", "שבת", "ראשון")       # by date.weekday()
_HE_MONTHS = ("ינואר", "פברואר", "מרץ", "אפריל", "מאי", "יוני", "יולי", "אוגוסט", "ספטמבר", "אוקטובר",
              "נובמבר", "דצמבר")
_HE_HOURS = ("שתים עשרה", "אחת", "שתיים", "שלוש", "ארבע", "חמש", "שש", "שבע", "שמונה", "תשע", "עשר",
             "אחת עשרה")
_HE_MINUTES = {0: "", 15: " ורבע", 30: " וחצי", 10: " ועשרה", 20: " ועשרים", 40: " וארבעים", 45: " ארבעים וחמש",
               50: " וחמישים", 5: " וחמישה"}
_EN_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _he_part(hour: int) -> str:
    if 5 <= hour < 12:
        return "בבוקר"
    if 12 <= hour < 15:
        return "בצהריים"
    if 15 <= hour < 18:
        return "אחר הצהריים"
    if 18 <= hour < 23:
        return "בערב"
    return "בלילה"


def says(start_utc: datetime, now_utc: datetime, hours: OpeningHours, language: str = "he") -> str:
    """How to say a visit time on the phone, relative to today, in the business's time zone."""
    zone = hours.zone
    local, today = start_utc.astimezone(zone), now_utc.astimezone(zone).date()
    days = (local.date() - today).days
    if language != "he":
        when = {0: "today", 1: "tomorrow"}.get(days, f"on {local:%B} {local.day}")
        return f"{when}, {_EN_WEEKDAYS[local.weekday()]}, at {local:%-I:%M %p}".replace(":00 ", " ")
    weekday = f"יום {_HE_WEEKDAYS[local.weekday()]}"
    if days == 0:
        day_words = f"היום, {weekday},"
    elif days == 1:
        day_words = f"מחר, {weekday},"
    elif days == 2:
        day_words = f"מחרתיים, {weekday},"
    else:
        day_words = f"ב{weekday}, {local.day} ב{_HE_MONTHS[local.month - 1]},"
    minutes = _HE_MINUTES.get(local.minute, f" ו-{local.minute} דקות")
    return f"{day_words} ב{_HE_HOURS[local.hour % 12]}{minutes} {_he_part(local.hour)}"


def to_utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)
