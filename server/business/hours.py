"""Opening hours: is the business open at this instant, and when does it open next (pure).

Theory of operation. A business keeps a weekly table of wall-clock ranges in its own time zone
(``Asia/Jerusalem`` unless its profile says otherwise) plus a list of local dates it is closed::

    timezone = "Asia/Jerusalem"
    [business.hours]
    sun = "08:00-18:00"                 # one range, start inclusive, end exclusive
    fri = "08:00-13:00"
    mon = "08:00-12:00,16:00-19:00"     # several ranges
    tue = "closed"                      # said outright; a day left out is closed as well
    closed_dates = ["2026-12-25"]       # local dates (TOML dates or ISO strings)

Every question starts from a UTC instant the caller passes in (no clock is read here): the instant
is turned into the business's wall time with ``zoneinfo`` and compared with that weekday's ranges
in seconds since local midnight. Wall time is what the business means by "08:00", so daylight
saving needs no special case in ``is_open``: on the night the clocks go forward (Jerusalem,
Friday 2026-03-27 02:00 -> 03:00) the missing hour is never seen, on the night they go back
(Sunday 2026-10-25 02:00 -> 01:00) the repeated hour is seen twice. ``next_opening`` turns a
range's wall start back into an instant: a start inside the missing hour opens at the first
instant that exists after it (the jump itself), a start inside the repeated hour opens twice.

A table that lists no day (or no table at all) means open around the clock; closed dates still
apply. A business with a table keeps Israel's holidays (``server.business.holidays_il``) unless
its profile says ``holidays = "none"``: closed on a holiday, open ``eve_hours`` (``08:00-13:00``)
on its eve (never longer than the day's own hours), and on Chol HaMoed as ``chol_hamoed`` says
(``open``: the usual hours; ``short``: the eve's; ``closed``). ``spans_on(day)`` is the one answer
to "when is it open on this local day" that ``is_open``, ``next_opening`` and the booking slots use.

A range never runs past midnight: ``"22:00-24:00"`` on one day and ``"00:00-02:00"`` on the next
say the same thing without ambiguity. ``parse`` reports every problem at once, naming the
key (``'hours.mon' '25:00-26:00': 25:00 is not a time of day ...``); the profile prefixes the file
and the entry. Loading a zone reads the system's tz database (or the ``tzdata`` package), the only
thing here that touches the disk, once per zone.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as _timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.business import holidays_il
from server.business.holidays_il import CHOL_HAMOED_CHOICES

DEFAULT_TIMEZONE = "Asia/Jerusalem"
ISRAEL = "israel"
HOLIDAY_CHOICES = (ISRAEL, "none")
DEFAULT_EVE_HOURS = "08:00-13:00"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Indexed by ``date.weekday()``."""
WEEK_ORDER = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""The order days are written and listed in (the Israeli week starts on Sunday)."""
CLOSED = "closed"
UTC = _timezone.utc
_DAY_S = 24 * 3600
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class Span:
    """One opening range of a day, in seconds since local midnight: ``start_s <= t < end_s``."""
    start_s: int
    end_s: int

    def __str__(self) -> str:
        return f"{_clock(self.start_s)}-{_clock(self.end_s)}"


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@dataclass(frozen=True)
class OpeningHours:
    timezone: str = DEFAULT_TIMEZONE
    week: tuple[tuple[Span, ...], ...] | None = None
    """Seven days by ``date.weekday()``; None: open around the clock (no day was listed)."""
    closed_dates: frozenset[date] = frozenset()
    holidays: str = ISRAEL
    """``israel`` (the holidays close the business, their eves are short) or ``none``."""
    eve_hours: tuple[Span, ...] = (Span(8 * 3600, 13 * 3600),)
    chol_hamoed: str = "open"
    """``open`` (the usual hours), ``short`` (the eve's hours) or ``closed``."""

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def parse(cls, table: Mapping[str, object] | None, timezone: object = DEFAULT_TIMEZONE,
              closed_dates: object = None, holidays: object = ISRAEL, eve_hours: object = DEFAULT_EVE_HOURS,
              chol_hamoed: object = "open") -> tuple[OpeningHours | None, list[str]]:
        """``(hours, [])`` or ``(None, problems)``. ``table`` is the ``hours`` table (day -> ranges,
        optionally with ``closed_dates``); ``closed_dates`` may instead be given beside it;
        ``holidays``, ``eve_hours`` and ``chol_hamoed`` say how the business keeps the holidays."""
        problems: list[str] = []
        if holidays not in HOLIDAY_CHOICES:
            problems.append(f"'holidays' {holidays!r} must be one of {', '.join(HOLIDAY_CHOICES)}")
            holidays = ISRAEL
        if chol_hamoed not in CHOL_HAMOED_CHOICES:
            problems.append(f"'chol_hamoed' {chol_hamoed!r} must be one of {', '.join(CHOL_HAMOED_CHOICES)}")
            chol_hamoed = "open"
        eve = _day("holiday_eve_hours", eve_hours, problems)
        zone = _zone_name(timezone, problems)
        table = {} if table is None else table
        if not isinstance(table, Mapping):
            return None, [*problems, "'hours' must be a table of days (sun = \"08:00-18:00\", ...)"]
        if "closed_dates" in table:
            if closed_dates is not None:
                problems.append("'closed_dates' is given twice (in 'hours' and beside it): keep one")
            closed_dates = table["closed_dates"]
        days = {key: value for key, value in table.items() if key != "closed_dates"}
        week: list[tuple[Span, ...]] = [() for _ in DAYS]
        for key in days:
            if key not in DAYS:
                problems.append(f"'hours.{key}': unknown day (days: {', '.join(WEEK_ORDER)})")
        for key in WEEK_ORDER:
            if key in days:
                week[DAYS.index(key)] = _day(f"hours.{key}", days[key], problems)
        dates = _dates(closed_dates, problems)
        if problems:
            return None, problems
        return cls(zone, tuple(week) if days else None, dates, holidays, eve, chol_hamoed), []

    def table(self) -> dict[str, str]:
        """The week as a JSON-friendly table, every day Sunday first (``"closed"`` for a day without
        ranges); ``{}`` when always open. ``parse(table())`` gives the same hours back."""
        if self.week is None:
            return {}
        return {day: ",".join(map(str, self.week[DAYS.index(day)])) or CLOSED for day in WEEK_ORDER}

    # --- questions --------------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def spans_on(self, day: date) -> tuple[Span, ...]:
        """When the business is open on this local day: its week, its closed dates, the holidays."""
        if day in self.closed_dates:
            return ()
        if self.week is None:
            return (Span(0, _DAY_S),)
        usual = self.week[day.weekday()]
        kind = holidays_il.kind_of(day) if self.holidays == ISRAEL else None
        if kind is None or (kind[0] == holidays_il.CHOL_HAMOED and self.chol_hamoed == "open"):
            return usual
        if kind[0] == holidays_il.HOLIDAY or (kind[0] == holidays_il.CHOL_HAMOED and self.chol_hamoed == "closed"):
            return ()
        return _intersect(usual, self.eve_hours)       # an eve, or a short Chol HaMoed day

    def is_open(self, now_utc: datetime) -> bool:
        local = _aware(now_utc).astimezone(self.zone)
        second = local.hour * 3600 + local.minute * 60 + local.second
        return any(span.start_s <= second < span.end_s for span in self.spans_on(local.date()))

    def next_opening(self, now_utc: datetime) -> datetime | None:
        """The instant (UTC) the business is next open: ``now_utc`` itself when open now, None when
        it never opens (every day closed). ``.astimezone(hours.zone)`` gives the time to say."""
        now_utc = _aware(now_utc).astimezone(UTC)
        if self.is_open(now_utc):
            return now_utc
        if self.week is not None and not any(self.week):
            return None
        zone = self.zone
        today = now_utc.astimezone(zone).date()
        # Each closed date (or holiday) can push the answer back one day at most; a week more covers the rest.
        for offset in range(len(self.closed_dates) + 8 + 8):
            day = today + timedelta(days=offset)
            spans = self.spans_on(day)
            starts = sorted(instant for span in spans for instant in instants_of(day, span.start_s, zone))
            for instant in starts:
                if instant > now_utc and self.is_open(instant):
                    return instant
        return None


# --- parsing helpers ------------------------------------------------------------------------------

def _zone_name(value: object, problems: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.append("'timezone' must be a time zone name such as Asia/Jerusalem")
        return DEFAULT_TIMEZONE
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        problems.append(f"'timezone' {value!r} is not a known time zone (an IANA name such as Asia/Jerusalem)")
    return value.strip()


def _day(key: str, value: object, problems: list[str]) -> tuple[Span, ...]:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"'{key}' must be a string: \"closed\" or ranges such as \"08:00-12:00,16:00-19:00\"")
        return ()
    if value.strip().lower() == CLOSED:
        return ()
    spans = []
    for part in value.split(","):
        span = _span(part.strip(), problems, f"'{key}' {value!r}")
        if span is None:
            return ()
        spans.append(span)
    spans.sort(key=lambda s: s.start_s)
    for before, after in zip(spans, spans[1:]):
        if after.start_s < before.end_s:
            problems.append(f"'{key}' {value!r}: ranges {before} and {after} overlap")
            return ()
    return tuple(spans)


def _span(text: str, problems: list[str], where: str) -> Span | None:
    start_text, dash, end_text = text.partition("-")
    if not dash:
        problems.append(f"{where}: {text!r} is not a range (HH:MM-HH:MM)")
        return None
    start, end = _seconds(start_text.strip()), _seconds(end_text.strip())
    for raw, seconds in ((start_text.strip(), start), (end_text.strip(), end)):
        if seconds is None:
            problems.append(f"{where}: {raw!r} is not a time of day (HH:MM from 00:00 to 24:00)")
            return None
    if end <= start:
        problems.append(f"{where}: {text} ends before it starts (a range past midnight is written as two: "
                        "\"22:00-24:00\" and next day \"00:00-02:00\")")
        return None
    return Span(start, end)


def _seconds(text: str) -> int | None:
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        return None
    return hours * 3600 + minutes * 60


def _dates(value: object, problems: list[str]) -> frozenset[date]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        problems.append("'closed_dates' must be a list of dates (YYYY-MM-DD)")
        return frozenset()
    dates = set()
    for item in value:
        day = _date(item)
        if day is None:
            problems.append(f"'closed_dates' {item!r} is not a date (YYYY-MM-DD)")
        else:
            dates.add(day)
    return frozenset(dates)


def _date(item: object) -> date | None:
    if type(item) is date:          # a TOML date; a TOML datetime (also a date) is not a day
        return item
    if isinstance(item, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", item.strip()):
        try:
            return date.fromisoformat(item.strip())
        except ValueError:          # 2026-02-30
            return None
    return None


def _intersect(spans: tuple[Span, ...], limits: tuple[Span, ...]) -> tuple[Span, ...]:
    out = [Span(max(a.start_s, b.start_s), min(a.end_s, b.end_s)) for a in spans for b in limits]
    return tuple(sorted((span for span in out if span.start_s < span.end_s), key=lambda span: span.start_s))


# --- time helpers ---------------------------------------------------------------------------------

def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("opening hours need an aware instant (UTC), got a naive datetime")
    return instant


def instants_of(day: date, second: int, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants whose wall time in ``zone`` is ``second`` into ``day``: one as a rule, two
    in the hour the clocks go back, and in the hour they skip, the first instant after the jump."""
    if second >= _DAY_S:
        return []
    wall = datetime.combine(day, time(second // 3600, second % 3600 // 60), tzinfo=zone)
    found = {w.astimezone(UTC) for w in (wall.replace(fold=0), wall.replace(fold=1))
             if w.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None)}
    if found:
        return sorted(found)
    # Skipped wall time: fold=1 lands before the jump, fold=0 after it; the jump is in between.
    low_s = int(wall.replace(fold=1).astimezone(UTC).timestamp())
    high_s = int(wall.replace(fold=0).astimezone(UTC).timestamp())
    target = wall.replace(tzinfo=None)
    while high_s - low_s > 1:           # invariant: wall(low_s) < target <= wall(high_s)
        middle_s = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle_s, zone).replace(tzinfo=None) >= target:
            high_s = middle_s
        else:
            low_s = middle_s
    return [datetime.fromtimestamp(high_s, UTC)]
