"""Opening hours on fixed instants: the Israeli week, Friday afternoon, Saturday, closed dates, midnight,
both daylight-saving changes of 2026 in Asia/Jerusalem, and invalid tables reported by key.

Instants are written in UTC with the Jerusalem wall time beside them, so a test does not lean on the code
under test (or on zoneinfo) to build its own inputs. 2026: summer time starts Friday 27 March at 02:00
(UTC+2 -> UTC+3, 00:00 UTC), ends Sunday 25 October at 02:00 (UTC+3 -> UTC+2, 23:00 UTC the day before)."""
import ast
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from server.business.hours import OpeningHours

ROOT = Path(__file__).resolve().parent.parent
ISRAELI_WEEK = {"sun": "08:00-18:00", "mon": "08:00-18:00", "tue": "08:00-18:00", "wed": "08:00-18:00",
                "thu": "08:00-18:00", "fri": "08:00-13:00"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def hours_of(table: dict | None, **kwargs) -> OpeningHours:
    hours, problems = OpeningHours.parse(table, **kwargs)
    assert problems == []
    return hours


def problems_of(table, **kwargs) -> list[str]:
    hours, problems = OpeningHours.parse(table, **kwargs)
    assert hours is None
    return problems


WEEK = hours_of(ISRAELI_WEEK)


def test_the_2026_calendar_the_tests_rely_on():
    assert date(2026, 3, 27).strftime("%a") == "Fri" and date(2026, 10, 25).strftime("%a") == "Sun"
    assert date(2026, 6, 7).strftime("%a") == "Sun" and date(2026, 12, 24).strftime("%a") == "Thu"


# --- an ordinary week (summer time, UTC+3) ------------------------------------------------------------------

@pytest.mark.parametrize("instant, is_open", [
    (utc(2026, 6, 7, 4, 59, 59), False),     # Sunday 07:59:59
    (utc(2026, 6, 7, 5, 0), True),           # Sunday 08:00: the start is inside
    (utc(2026, 6, 7, 14, 59, 59), True),     # Sunday 17:59:59
    (utc(2026, 6, 7, 15, 0), False),         # Sunday 18:00: the end is outside
    (utc(2026, 6, 10, 9, 30), True),         # Wednesday 12:30
    (utc(2026, 6, 12, 9, 59, 59), True),     # Friday 12:59:59
    (utc(2026, 6, 12, 10, 0), False),        # Friday 13:00
    (utc(2026, 6, 12, 13, 0), False),        # Friday 16:00: Friday afternoon is closed
    (utc(2026, 6, 13, 9, 0), False),         # Saturday 12:00: not listed, closed
], ids=["sun-before", "sun-start", "sun-last-second", "sun-end", "wed-noon", "fri-last-second", "fri-end",
        "fri-afternoon", "saturday"])
def test_the_israeli_week(instant, is_open):
    assert WEEK.is_open(instant) is is_open


def test_next_opening_after_friday_afternoon_and_on_saturday_is_sunday_morning():
    sunday_0800 = utc(2026, 6, 14, 5, 0)
    assert WEEK.next_opening(utc(2026, 6, 12, 10, 0)) == sunday_0800       # Friday 13:00
    assert WEEK.next_opening(utc(2026, 6, 13, 9, 0)) == sunday_0800        # Saturday noon
    assert WEEK.next_opening(utc(2026, 6, 13, 20, 59, 59)) == sunday_0800  # Saturday 23:59:59
    assert WEEK.next_opening(sunday_0800 - timedelta(seconds=1)) == sunday_0800
    assert WEEK.next_opening(utc(2026, 6, 12, 10, 0)).astimezone(WEEK.zone).strftime("%a %H:%M") == "Sun 08:00"


def test_next_opening_the_same_day_the_next_day_and_when_open():
    assert WEEK.next_opening(utc(2026, 6, 8, 3, 0)) == utc(2026, 6, 8, 5, 0)     # Monday 06:00 -> 08:00
    assert WEEK.next_opening(utc(2026, 6, 8, 15, 0)) == utc(2026, 6, 9, 5, 0)    # Monday 18:00 -> Tuesday 08:00
    assert WEEK.next_opening(utc(2026, 6, 8, 9, 0)) == utc(2026, 6, 8, 9, 0)     # open: now
    assert WEEK.next_opening(utc(2026, 6, 8, 9, 0).astimezone(WEEK.zone)) == utc(2026, 6, 8, 9, 0)


def test_several_ranges_a_day():
    split = hours_of({"mon": "08:00-12:00, 16:00-19:00"})
    assert split.table()["mon"] == "08:00-12:00,16:00-19:00"
    assert split.is_open(utc(2026, 6, 8, 8, 59)) and not split.is_open(utc(2026, 6, 8, 9, 0))   # 11:59 / 12:00
    assert split.next_opening(utc(2026, 6, 8, 10, 0)) == utc(2026, 6, 8, 13, 0)                # 13:00 -> 16:00
    assert split.is_open(utc(2026, 6, 8, 15, 59)) and not split.is_open(utc(2026, 6, 8, 16, 0))  # 18:59 / 19:00


# --- closed dates ------------------------------------------------------------------------------------------

def test_a_closed_date_is_a_local_date():
    hours = hours_of(ISRAELI_WEEK | {"closed_dates": ["2026-12-24"]})
    # Winter time (UTC+2): Thursday 24 December local runs from 22:00 UTC on the 23rd.
    assert hours.is_open(utc(2026, 12, 23, 15, 59))            # Wednesday 17:59
    assert not hours.is_open(utc(2026, 12, 24, 8, 0))          # Thursday 10:00, closed date
    assert hours.next_opening(utc(2026, 12, 23, 16, 0)) == utc(2026, 12, 25, 6, 0)   # -> Friday 08:00
    assert hours.is_open(utc(2026, 12, 25, 6, 0))


def test_closed_dates_as_toml_dates_or_beside_the_table():
    inside = hours_of(ISRAELI_WEEK | {"closed_dates": [date(2026, 12, 24)]})
    beside = hours_of(ISRAELI_WEEK, closed_dates=["2026-12-24"])
    assert inside == beside and inside.closed_dates == frozenset({date(2026, 12, 24)})


def test_a_run_of_closed_dates_is_skipped():
    holidays = [f"2026-09-{day:02d}" for day in range(13, 27)]      # two weeks closed
    hours = hours_of(ISRAELI_WEEK, closed_dates=holidays)
    assert hours.next_opening(utc(2026, 9, 12, 9, 0)) == utc(2026, 9, 27, 5, 0)   # Sunday 27th 08:00


# --- midnight -------------------------------------------------------------------------------------------------

def test_a_range_to_24_00_and_one_from_00_00_meet_at_midnight():
    night = hours_of({"fri": "22:00-24:00", "sat": "00:00-02:00"})
    assert not night.is_open(utc(2026, 6, 12, 18, 59, 59))     # Friday 21:59:59
    assert night.is_open(utc(2026, 6, 12, 19, 0))              # Friday 22:00
    assert night.is_open(utc(2026, 6, 12, 20, 59, 59))         # Friday 23:59:59
    assert night.is_open(utc(2026, 6, 12, 21, 0))              # Saturday 00:00
    assert night.is_open(utc(2026, 6, 12, 22, 59, 59))         # Saturday 01:59:59
    assert not night.is_open(utc(2026, 6, 12, 23, 0))          # Saturday 02:00
    assert night.next_opening(utc(2026, 6, 12, 23, 0)) == utc(2026, 6, 19, 19, 0)   # next Friday 22:00


def test_a_whole_day():
    sunday = hours_of({"sun": "00:00-24:00"})
    assert not sunday.is_open(utc(2026, 6, 6, 20, 59, 59))     # Saturday 23:59:59
    assert sunday.is_open(utc(2026, 6, 6, 21, 0))              # Sunday 00:00
    assert sunday.is_open(utc(2026, 6, 7, 20, 59, 59))         # Sunday 23:59:59
    assert not sunday.is_open(utc(2026, 6, 7, 21, 0))          # Monday 00:00
    assert sunday.next_opening(utc(2026, 6, 7, 21, 0)) == utc(2026, 6, 13, 21, 0)


# --- daylight saving ------------------------------------------------------------------------------------------

def test_summer_time_starts_friday_27_march():
    # Thursday in winter time (UTC+2): 08:00 is 06:00 UTC.
    assert not WEEK.is_open(utc(2026, 3, 26, 5, 59, 59)) and WEEK.is_open(utc(2026, 3, 26, 6, 0))
    # Friday after the jump (UTC+3): 08:00 is 05:00 UTC, 13:00 is 10:00 UTC.
    assert not WEEK.is_open(utc(2026, 3, 27, 4, 59, 59)) and WEEK.is_open(utc(2026, 3, 27, 5, 0))
    assert WEEK.is_open(utc(2026, 3, 27, 9, 59, 59)) and not WEEK.is_open(utc(2026, 3, 27, 10, 0))
    assert WEEK.next_opening(utc(2026, 3, 26, 16, 0)) == utc(2026, 3, 27, 5, 0)     # Thu 18:00 -> Fri 08:00
    assert WEEK.next_opening(utc(2026, 3, 27, 10, 0)) == utc(2026, 3, 29, 5, 0)     # Fri 13:00 -> Sun 08:00


def test_a_range_starting_in_the_skipped_hour_opens_at_the_jump():
    early = hours_of({"fri": "02:30-04:00"})
    assert not early.is_open(utc(2026, 3, 26, 23, 59, 59))     # 01:59:59 winter time
    assert early.is_open(utc(2026, 3, 27, 0, 0))               # 03:00 summer time: 02:30 never happened
    assert early.next_opening(utc(2026, 3, 26, 22, 0)) == utc(2026, 3, 27, 0, 0)
    assert not early.is_open(utc(2026, 3, 27, 1, 0))           # 04:00


def test_a_range_wholly_in_the_skipped_hour_does_not_happen_that_day():
    skipped = hours_of({"fri": "02:00-02:30"})
    assert skipped.next_opening(utc(2026, 3, 26, 22, 0)) == utc(2026, 4, 2, 23, 0)   # next Friday 02:00 (UTC+3)
    assert skipped.next_opening(utc(2026, 3, 19, 22, 0)) == utc(2026, 3, 20, 0, 0)   # the Friday before (UTC+2)


def test_summer_time_ends_sunday_25_october():
    # Thursday in summer time (UTC+3): 08:00 is 05:00 UTC; Sunday in winter time (UTC+2): 08:00 is 06:00 UTC.
    assert WEEK.is_open(utc(2026, 10, 22, 5, 0)) and not WEEK.is_open(utc(2026, 10, 22, 4, 59, 59))
    assert WEEK.next_opening(utc(2026, 10, 23, 12, 0)) == utc(2026, 10, 25, 6, 0)   # Friday 15:00 -> Sunday 08:00
    assert not WEEK.is_open(utc(2026, 10, 25, 5, 59, 59)) and WEEK.is_open(utc(2026, 10, 25, 6, 0))
    assert WEEK.is_open(utc(2026, 10, 25, 15, 59, 59)) and not WEEK.is_open(utc(2026, 10, 25, 16, 0))


def test_a_range_in_the_repeated_hour_opens_twice():
    # 01:00-02:00 on Sunday 25 October happens twice: 22:00-23:00 UTC (summer) and 23:00-24:00 UTC (winter).
    repeated = hours_of({"sun": "01:00-01:30"})
    assert repeated.is_open(utc(2026, 10, 24, 22, 0)) and repeated.is_open(utc(2026, 10, 24, 22, 29, 59))
    assert not repeated.is_open(utc(2026, 10, 24, 22, 30))
    assert repeated.is_open(utc(2026, 10, 24, 23, 0)) and not repeated.is_open(utc(2026, 10, 24, 23, 30))
    assert repeated.next_opening(utc(2026, 10, 24, 21, 0)) == utc(2026, 10, 24, 22, 0)
    assert repeated.next_opening(utc(2026, 10, 24, 22, 45)) == utc(2026, 10, 24, 23, 0)
    assert repeated.next_opening(utc(2026, 10, 24, 23, 45)) == utc(2026, 10, 31, 23, 0)   # next Sunday (UTC+2)


# --- other zones, always open, never open --------------------------------------------------------------------

def test_another_time_zone():
    london = hours_of({"mon": "09:00-17:00"}, timezone="Europe/London")
    assert london.is_open(utc(2026, 1, 5, 9, 0)) and not london.is_open(utc(2026, 1, 5, 8, 59))   # GMT
    assert london.is_open(utc(2026, 6, 8, 8, 0)) and not london.is_open(utc(2026, 6, 8, 7, 59))   # BST


def test_no_table_is_always_open_except_on_closed_dates():
    always = hours_of(None)
    assert always.week is None and always.table() == {}
    assert always.is_open(utc(2026, 6, 13, 3, 0)) and always.next_opening(utc(2026, 6, 13, 3, 0)) == utc(2026, 6, 13, 3, 0)
    assert hours_of({}) == always
    holiday = hours_of(None, closed_dates=["2026-06-13"])
    assert not holiday.is_open(utc(2026, 6, 13, 3, 0))
    assert holiday.next_opening(utc(2026, 6, 13, 3, 0)) == utc(2026, 6, 13, 21, 0)      # local midnight


def test_every_day_closed_never_opens():
    shut = hours_of({"sun": "closed", "mon": "Closed"})
    assert shut.table() == {day: "closed" for day in ("sun", "mon", "tue", "wed", "thu", "fri", "sat")}
    assert not shut.is_open(utc(2026, 6, 7, 9, 0))
    assert shut.next_opening(utc(2026, 6, 7, 9, 0)) is None


def test_the_table_is_written_back_in_a_normal_form():
    assert hours_of({"fri": "8:00-13:00", "sun": " 16:00-19:00,08:00-12:00 "}).table() == {
        "sun": "08:00-12:00,16:00-19:00", "mon": "closed", "tue": "closed", "wed": "closed", "thu": "closed",
        "fri": "08:00-13:00", "sat": "closed"}
    again = hours_of(WEEK.table())
    assert again == WEEK


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="aware"):
        WEEK.is_open(datetime(2026, 6, 7, 9, 0))
    with pytest.raises(ValueError, match="aware"):
        WEEK.next_opening(datetime(2026, 6, 7, 9, 0))


# --- invalid tables --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table, kwargs, problem", [
    ({"monday": "08:00-18:00"}, {}, "'hours.monday': unknown day (days: sun, mon, tue, wed, thu, fri, sat)"),
    ({"mon": "08:00-25:00"}, {}, "'hours.mon' '08:00-25:00': '25:00' is not a time of day (HH:MM from 00:00 to 24:00)"),
    ({"mon": "24:30-24:45"}, {}, "'hours.mon' '24:30-24:45': '24:30' is not a time of day (HH:MM from 00:00 to 24:00)"),
    ({"mon": "08:60-09:00"}, {}, "'hours.mon' '08:60-09:00': '08:60' is not a time of day (HH:MM from 00:00 to 24:00)"),
    ({"tue": "18:00-08:00"}, {}, "'hours.tue' '18:00-08:00': 18:00-08:00 ends before it starts (a range past "
                                 "midnight is written as two: \"22:00-24:00\" and next day \"00:00-02:00\")"),
    ({"tue": "08:00-08:00"}, {}, "'hours.tue' '08:00-08:00': 08:00-08:00 ends before it starts (a range past "
                                 "midnight is written as two: \"22:00-24:00\" and next day \"00:00-02:00\")"),
    ({"wed": "08:00"}, {}, "'hours.wed' '08:00': '08:00' is not a range (HH:MM-HH:MM)"),
    ({"thu": "08:00-12:00,11:00-13:00"}, {}, "'hours.thu' '08:00-12:00,11:00-13:00': ranges 08:00-12:00 and "
                                             "11:00-13:00 overlap"),
    ({"fri": 8}, {}, "'hours.fri' must be a string: \"closed\" or ranges such as \"08:00-12:00,16:00-19:00\""),
    ({}, {"timezone": "Asia/Jerusalam"},
     "'timezone' 'Asia/Jerusalam' is not a known time zone (an IANA name such as Asia/Jerusalem)"),
    ({}, {"timezone": "../etc/passwd"},
     "'timezone' '../etc/passwd' is not a known time zone (an IANA name such as Asia/Jerusalem)"),
    ({}, {"timezone": 3}, "'timezone' must be a time zone name such as Asia/Jerusalem"),
    ({}, {"closed_dates": ["2026-02-30"]}, "'closed_dates' '2026-02-30' is not a date (YYYY-MM-DD)"),
    ({}, {"closed_dates": ["25/12/2026"]}, "'closed_dates' '25/12/2026' is not a date (YYYY-MM-DD)"),
    ({}, {"closed_dates": "2026-12-25"}, "'closed_dates' must be a list of dates (YYYY-MM-DD)"),
    ({"closed_dates": []}, {"closed_dates": []},
     "'closed_dates' is given twice (in 'hours' and beside it): keep one"),
    ("08:00-18:00", {}, "'hours' must be a table of days (sun = \"08:00-18:00\", ...)"),
], ids=["bad-day", "25:00", "24:30", "minute-60", "end-before-start", "empty-range", "not-a-range", "overlap",
        "not-a-string", "unknown-zone", "zone-path", "zone-not-a-string", "no-such-date", "date-format",
        "dates-not-a-list", "dates-twice", "not-a-table"])
def test_an_invalid_table_names_the_key(table, kwargs, problem):
    assert problems_of(table, **kwargs) == [problem]


def test_every_problem_at_once():
    problems = problems_of({"monday": "x", "sun": "25:00-26:00", "fri": "13:00-08:00"},
                           timezone="Mars/Olympus", closed_dates=["someday"])
    assert problems == [
        "'timezone' 'Mars/Olympus' is not a known time zone (an IANA name such as Asia/Jerusalem)",
        "'hours.monday': unknown day (days: sun, mon, tue, wed, thu, fri, sat)",
        "'hours.sun' '25:00-26:00': '25:00' is not a time of day (HH:MM from 00:00 to 24:00)",
        "'hours.fri' '13:00-08:00': 13:00-08:00 ends before it starts (a range past midnight is written as two: "
        "\"22:00-24:00\" and next day \"00:00-02:00\")",
        "'closed_dates' 'someday' is not a date (YYYY-MM-DD)"]


# --- purity ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["hours.py", "holidays_il.py", "slots.py"])
def test_the_module_reads_no_clock(module):
    """The instant is always passed in: no now()/today()/utcnow(), no time, os or I/O modules."""
    tree = ast.parse((ROOT / "server" / "business" / module).read_text(encoding="utf-8"))
    calls = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert not calls & {"now", "utcnow", "today", "time_ns", "monotonic"}
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "re", "collections", "dataclasses", "datetime", "zoneinfo", "functools",
                        "holidays", "server"}, imported
    assert {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module and
            node.module.startswith("server")} <= {"server.business", "server.business.hours",
                                                   "server.business.holidays_il"}
