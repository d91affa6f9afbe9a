"""Booking a visit: free times (pure, fake time: DST and Israel's holidays), the tools' answers on a
real CalDAV server (Radicale on loopback), two calls booking one time at once, a calendar that is
down or slow."""
import json
import threading
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from server import green
from server.business import holidays_il
from server.business.hours import OpeningHours
from server.business.profiles import BusinessProfile, parse_profiles
from server.business.slots import SlotRules, free_slots, says
from server.call.registry import CallRegistry
from server.core.events import RunToolIo, ToolIoDone
from server.core.tool_desk import ToolContext
from server.leads.capture import LeadCapture
from server.media_ws_ai import MediaCall
from server.settings import Settings
from server.tools import CallFacts, LeadUpdated, registry
from server.tools.book_visit import BookVisit
from server.tools.diary import Diary, slot_id
from server.tools.find_free_slots import FindFreeSlots
from sim.calendar_server import PASSWORD_ENV, USER_ENV, CalendarServer, vevent

TZ = ZoneInfo("Asia/Jerusalem")
UTC = timezone.utc
WEEK = {"sun": "08:00-18:00", "mon": "08:00-18:00", "tue": "08:00-18:00", "wed": "08:00-18:00",
        "thu": "08:00-18:00", "fri": "08:00-13:00", "sat": "closed"}
HOURS, _ = OpeningHours.parse(WEEK)
RULES = SlotRules(visit_minutes=60, buffer_minutes=0, notice_minutes=120, days_ahead=14)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def walls(starts) -> list[str]:
    return [s.astimezone(TZ).strftime("%a %d %H:%M") for s in starts]


# --- free times (pure) -------------------------------------------------------------------------------

def test_the_first_three_free_times_keep_the_notice_and_sit_on_the_grid():
    now = local("2026-12-08T08:30")                       # a Tuesday
    assert walls(free_slots(HOURS, [], now, RULES)) == ["Tue 08 11:00", "Tue 08 12:00", "Tue 08 13:00"]


def test_busy_events_and_the_buffer_take_their_times():
    now = local("2026-12-08T08:30")
    owner = [(local("2026-12-08T11:30"), local("2026-12-08T12:15"))]
    assert walls(free_slots(HOURS, owner, now, RULES)) == ["Tue 08 13:00", "Tue 08 14:00", "Tue 08 15:00"]
    buffered = SlotRules(visit_minutes=60, buffer_minutes=30, notice_minutes=0, days_ahead=14)
    assert walls(free_slots(HOURS, [], local("2026-12-08T07:00"), buffered)) == [
        "Tue 08 08:00", "Tue 08 09:30", "Tue 08 11:00"]


def test_the_day_and_part_of_day_the_caller_asked_for():
    now = local("2026-12-08T08:30")
    assert walls(free_slots(HOURS, [], now, RULES, date(2026, 12, 9), "morning")) == [
        "Wed 09 08:00", "Wed 09 09:00", "Wed 09 10:00"]
    assert walls(free_slots(HOURS, [], now, RULES, date(2026, 12, 9), "afternoon")) == [
        "Wed 09 12:00", "Wed 09 13:00", "Wed 09 14:00"]
    assert free_slots(HOURS, [], now, RULES, date(2026, 12, 12)) == []           # a Saturday
    assert free_slots(HOURS, [], now, RULES, date(2027, 1, 30)) == []            # past days_ahead


def test_a_friday_and_a_visit_that_would_run_past_closing():
    now = local("2026-12-10T12:00")                       # Thursday noon
    starts = free_slots(HOURS, [], now, SlotRules(120, 0, 0, 14), date(2026, 12, 11))
    assert walls(starts) == ["Fri 11 08:00", "Fri 11 10:00"]        # 12:00 would end after 13:00


@pytest.mark.parametrize("now, expected", [
    # erev Rosh Hashanah is a Friday anyway; the holiday's two days (Saturday, Sunday); Monday opens
    ("2026-09-11T06:00", ["Fri 11 08:00", "Fri 11 09:00", "Fri 11 10:00", "Fri 11 11:00", "Fri 11 12:00",
                          "Mon 14 08:00"]),
    # erev Yom Kippur (a Sunday) is a short day; Yom Kippur (Monday) is closed
    ("2026-09-20T06:00", ["Sun 20 08:00", "Sun 20 09:00", "Sun 20 10:00", "Sun 20 11:00", "Sun 20 12:00",
                          "Tue 22 08:00"]),
    # erev Pesach 2027 (Wednesday) short, Pesach (Thursday) closed, Friday open as a Friday
    ("2027-04-21T06:00", ["Wed 21 08:00", "Wed 21 09:00", "Wed 21 10:00", "Wed 21 11:00", "Wed 21 12:00",
                          "Fri 23 08:00"]),
])
def test_holidays_close_the_business_and_their_eves_are_short(now, expected):
    starts = free_slots(HOURS, [], local(now), SlotRules(60, 0, 0, 14), limit=6)
    assert walls(starts) == expected


def test_chol_hamoed_follows_the_business():
    sukkot_sunday = date(2026, 9, 27)                     # Chol HaMoed Sukkot
    open_, _ = OpeningHours.parse(WEEK)
    short, _ = OpeningHours.parse(WEEK, chol_hamoed="short")
    closed, _ = OpeningHours.parse(WEEK, chol_hamoed="closed")
    none, _ = OpeningHours.parse(WEEK, holidays="none")
    assert [str(s) for s in open_.spans_on(sukkot_sunday)] == ["08:00-18:00"]
    assert [str(s) for s in short.spans_on(sukkot_sunday)] == ["08:00-13:00"]
    assert closed.spans_on(sukkot_sunday) == ()
    assert [str(s) for s in none.spans_on(date(2026, 9, 21))] == ["08:00-18:00"]       # Yom Kippur, kept open
    assert holidays_il.kind_of(date(2026, 9, 21)) == (holidays_il.HOLIDAY, "Yom Kippur")
    assert not open_.is_open(local("2026-09-21T10:00")) and open_.is_open(local("2026-09-20T10:00"))
    assert not open_.is_open(local("2026-09-20T14:00"))                              # the eve closes at 13:00


@pytest.mark.parametrize("before, after", [
    ("2026-03-26", "2026-03-29"),        # clocks forward on Friday 2026-03-27 (02:00 -> 03:00)
    ("2026-10-22", "2026-10-25"),        # clocks back on Sunday 2026-10-25 (02:00 -> 01:00)
])
def test_eight_in_the_morning_stays_eight_across_both_daylight_saving_changes(before, after):
    now = local(f"{before}T06:00")
    first = free_slots(HOURS, [], now, SlotRules(60, 0, 0, 14), date.fromisoformat(before), limit=1)[0]
    later = free_slots(HOURS, [], now, SlotRules(60, 0, 0, 14), date.fromisoformat(after), limit=1)[0]
    assert first.astimezone(TZ).hour == later.astimezone(TZ).hour == 8
    assert first.astimezone(UTC).hour != later.astimezone(UTC).hour        # the offset changed, not the wall time


def test_times_are_said_as_a_person_says_them():
    now = local("2026-12-08T08:30")
    assert says(local("2026-12-09T10:00"), now, HOURS) == "מחר, יום רביעי, בעשר בבוקר"
    assert says(local("2026-12-08T16:30"), now, HOURS) == "היום, יום שלישי, בארבע וחצי אחר הצהריים"
    assert says(local("2026-12-13T12:00"), now, HOURS) == "ביום ראשון, 13 בדצמבר, בשתים עשרה בצהריים"
    assert says(local("2026-12-09T10:00"), now, HOURS, "en") == "tomorrow, Wednesday, at 10 AM"


# --- the tools on a real CalDAV server ----------------------------------------------------------------

NOW = local("2026-12-08T08:30")


def profile_for(url: str, **extra) -> BusinessProfile:
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {
        "calendar_url": url, "calendar_username_env": USER_ENV, "calendar_password_env": PASSWORD_ENV,
        "calendar_timeout_ms": 1500, **extra}.items())
    hours = "\n".join(f'{d} = "{r}"' for d, r in WEEK.items())
    text = (f'[[business]]\nnumber = "+97235550100"\nname = "מנעולן"\nservices = ["פריצת דלת"]\n{lines}\n'
            f'[business.hours]\n{hours}\n')
    return parse_profiles(text, "b.toml").businesses["+97235550100"]


@pytest.fixture(scope="module")
def calendar():
    with CalendarServer() as server:
        yield server


@pytest.fixture()
def env(calendar, monkeypatch):
    for key, value in calendar.env.items():
        monkeypatch.setenv(key, value)


def tools(url: str, call_sid: str = "CA1", **extra):
    profile = profile_for(url, **extra)
    facts = CallFacts(call_sid, "+972501234567", NOW)
    return FindFreeSlots(Diary(profile, facts)), BookVisit(Diary(profile, facts))


def ctx() -> ToolContext:
    return ToolContext(LeadCapture(["פריצת דלת"], [], caller_phone="+972501234567"), False)


def run(tool, arguments: str, context: ToolContext):
    """A tool's whole answer: call, then its I/O run here (as the shell does), then answer_io."""
    reply = tool.call(arguments, context)
    if reply.io is None:
        return reply
    try:
        result, error = tool.run_io(reply.io), None
    except Exception as exc:   # noqa: BLE001 - what the shell reports as the error
        result, error = None, f"{type(exc).__name__}: {exc}"
    return tool.answer_io(reply.io, result, error, context)


def test_the_booking_tools_are_offered_to_a_business_with_a_calendar(calendar):
    names = [t.name for t in registry.tools_for(profile_for(calendar.url))[0]]
    assert names == ["save_lead", "find_free_slots", "book_visit"]
    assert "find_free_slots" not in [t.name for t in registry.tools_for(BusinessProfile("+97235550101", "x"))[0]]


def test_free_slots_come_from_the_calendar_and_a_booking_is_read_back(calendar, env):
    lookup, book = tools(calendar.url, "CA_read_back")
    calendar.put_event("owner-1.ics", vevent("owner-1", "20261209T060000Z", "20261209T070000Z"))   # 08:00 local
    answer = json.loads(run(lookup, '{"day": "tomorrow", "part_of_day": "morning"}', ctx()).output)
    assert answer["status"] == "ok"
    assert [s["says"] for s in answer["slots"]] == ["מחר, יום רביעי, בתשע בבוקר", "מחר, יום רביעי, בעשר בבוקר",
                                                    "מחר, יום רביעי, באחת עשרה בבוקר"]
    assert answer["slots"][0]["start"] == "2026-12-09T09:00:00+02:00"
    context = ctx()
    reply = run(book, json.dumps({"slot_id": answer["slots"][0]["id"], "name": "דני", "city": "רמת גן",
                                  "service": "פריצת דלת", "note": "דלת טרוקה"}), context)
    booked = json.loads(reply.output)
    assert booked["status"] == "booked" and booked["visit"]["says"] == "מחר, יום רביעי, בתשע בבוקר"
    assert isinstance(reply.effects[0], LeadUpdated) and reply.effects[0].became_complete
    lead = context.lead.snapshot()
    assert (lead.status, lead.name, lead.city, lead.phone) == ("complete", "דני", "רמת גן", "+972501234567")
    assert lead.visit["status"] == "booked" and lead.visit["start"] == "2026-12-09T09:00:00+02:00"
    [event] = [e for e in calendar.events() if "CA_read_back" in e]
    assert "DTSTART:20261209T070000Z" in event and "DTEND:20261209T080000Z" in event
    assert "פריצת דלת – רמת גן" in event and "+972501234567" in event and "דני" in event


def test_a_retry_of_the_same_booking_books_once(calendar, env):
    _, book = tools(calendar.url, "CA_retry")
    args = json.dumps({"slot_id": slot_id(local("2026-12-10T15:00")), "name": "רותי", "city": "חולון"})
    assert json.loads(run(book, args, ctx()).output)["status"] == "booked"
    assert json.loads(run(book, args, ctx()).output)["status"] == "booked"
    assert sum("CA_retry" in e for e in calendar.events()) == 1


def test_two_calls_booking_one_time_at_once_one_gets_it_the_other_is_offered_others(calendar, env):
    start = local("2026-12-10T10:00")
    answers = {}

    def book(call_sid: str) -> None:
        _, tool = tools(calendar.url, call_sid)
        answers[call_sid] = json.loads(run(tool, json.dumps({"slot_id": slot_id(start), "name": call_sid,
                                                             "city": "רמת גן"}), ctx()).output)
    threads = [threading.Thread(target=book, args=(sid,)) for sid in ("CA_race_a", "CA_race_b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(a["status"] for a in answers.values()) == ["booked", "taken"]
    [taken] = [a for a in answers.values() if a["status"] == "taken"]
    assert taken["slots"] and slot_id(start) not in [s["id"] for s in taken["slots"]]
    assert sum("DTSTART:20261210T080000Z" in e for e in calendar.events()) == 1


def test_a_time_the_owner_took_meanwhile_is_taken(calendar, env):
    start = local("2026-12-14T11:00")
    calendar.put_event("owner-2.ics", vevent("owner-2", "20261214T091500Z", "20261214T093000Z"))   # 11:15 local
    _, book = tools(calendar.url, "CA_owner")
    answer = json.loads(run(book, json.dumps({"slot_id": slot_id(start), "name": "x", "city": "רמת גן"}),
                            ctx()).output)
    assert answer["status"] == "taken" and answer["slots"]
    assert not any("CA_owner" in e for e in calendar.events())


def test_bad_booking_arguments_are_errors_the_model_can_recover_from(calendar, env):
    _, book = tools(calendar.url)
    assert json.loads(book.call('{"slot_id": "tomorrow"}', ctx()).output)["status"] == "error"
    missing = json.loads(book.call(json.dumps({"slot_id": slot_id(NOW)}), ctx()).output)
    assert missing["missing"] == ["name", "city"]


def test_a_calendar_that_is_down_keeps_the_lead_and_promises_a_call_back(calendar, env):
    proxy = calendar.proxied()
    try:
        lookup, book = tools(calendar.url, "CA_down")
        proxy.cut()
        assert json.loads(run(lookup, "{}", ctx()).output)["status"] == "unavailable"
        context = ctx()
        reply = run(book, json.dumps({"slot_id": slot_id(local("2026-12-10T12:00")), "name": "דני",
                                      "city": "רמת גן", "service": "פריצת דלת"}), context)
        assert json.loads(reply.output)["status"] == "unavailable"
        lead = context.lead.snapshot()
        assert lead.status == "complete" and lead.visit["status"] == "unavailable"      # kept, marked so
    finally:
        proxy.close()
        calendar.proxy = None


def test_a_slow_calendar_costs_the_call_its_timeout_not_silence(calendar, env):
    """The shell runs the I/O under the tool's deadline: a calendar that never answers is a
    timeout, reported as the tool's error (its answer: unavailable). In the server (the eventlet
    worker patches sockets) the deadline interrupts the read at ``calendar_timeout_ms`` (the whole
    call on loopback shows it); this test process does not patch sockets, so the HTTP client's own
    backstop ends each of the library's reads instead, a second later."""
    proxy = calendar.proxied()
    try:
        lookup, _ = tools(calendar.url, "CA_slow")
        proxy.blackhole(True)
        reply = lookup.call("{}", ctx())
        media = MediaCall(None, Settings.from_env({"OPENAI_API_KEY": "sk-test", "TWILIO_SIGNATURE_VALIDATION": "off"}),
                          CallRegistry("token"))
        facts = []
        media.core = type("Core", (), {"handle": lambda self, f: facts.append(f) or [],
                                       "next_deadline_ms": lambda self: None})()
        started = green.monotonic_ms()
        green.spawn(media._verbs[RunToolIo], RunToolIo(1, lookup.name, reply.io, reply.io_timeout_ms,
                                                       lambda: lookup.run_io(reply.io)))
        while not facts and green.monotonic_ms() - started < 5000:
            green.sleep(0.02)
        [done] = facts
        assert isinstance(done, ToolIoDone) and (done.error == "timeout" or "timed out" in done.error)
        assert green.monotonic_ms() - started < 4 * (reply.io_timeout_ms + 1000)
        answer = json.loads(lookup.answer_io(reply.io, None, done.error, ctx()).output)
        assert answer["status"] == "unavailable"
    finally:
        proxy.blackhole(False)
        proxy.close()
        calendar.proxy = None


def test_the_booking_keys_are_checked_at_start():
    with pytest.raises(Exception) as problems:
        parse_profiles('[[business]]\nnumber = "+97235550100"\nname = "x"\ncalendar_url = "caldav.example.com"\n'
                       'calendar_password_env = "hunter2 secret"\nbooking_days_ahead = 0\n', "b.toml")
    text = str(problems.value)
    assert "'calendar_url' must start with http:// or https://" in text
    assert "'calendar_password_env' must name an environment variable" in text
    assert "'booking_days_ahead' must be an integer in [1, 90]" in text
