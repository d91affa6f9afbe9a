"""Booking end to end on loopback: the real server (gunicorn, eventlet), the simulated caller and
model, and a real CalDAV calendar (Radicale) — booked and read back; or never answering, where
each lookup ends at its deadline, the call goes on and the lead is kept."""
import pytest

from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall
from sim.verdict import judge


def whole_call(tmp_path_factory, name: str) -> tuple:
    sc = scenario_mod.load(name)
    loop = LoopbackCall(sc, tmp_path_factory.mktemp(name) / "server.log", twilio_rest=True)
    with loop:
        record = loop.call(max_duration_s=90)
        health = loop.wait_idle(timeout_s=5)
        records = loop.records()
        counters = loop.realtime.counters
        detail = loop.store().call_detail(record.call_sid) or {}
        page = loop.admin_bytes(f"calls/{record.call_sid}").decode("utf-8")
    log = loop.log_text()
    return sc, record, health, records, counters, detail, page, log


@pytest.fixture(scope="module")
def booked(tmp_path_factory):
    return whole_call(tmp_path_factory, "booking")


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    return whole_call(tmp_path_factory, "booking_calendar_slow")


def failures(call) -> list[str]:
    sc, record, health, records, counters, _, _, log = call
    return [f"{c.name}: {c.detail}" for c in judge(record, health, log, counters, sc.turns, sc.expect, records)
            if not c.passed]


def test_a_visit_is_booked_into_the_calendar_and_read_back(booked):
    assert failures(booked) == []
    _, record, _, records, _, detail, page, log = booked
    [lead] = records["leads"]
    assert lead["visit"]["status"] == "booked" and lead["visit"]["says"] == "מחר, יום רביעי, בשמונה בבוקר"
    [event] = [e for e in records["calendar_events"] if record.call_sid in e]
    assert "DTSTART:20261202T060000Z" in event and "DTEND:20261202T070000Z" in event
    assert "מחר, יום רביעי, בשמונה בבוקר" in page                 # the call's admin page shows the visit
    kinds = [e["kind"] for e in detail["timeline"]["events"] if e["lane"] == "model"]
    assert kinds.count("tool_io") == 4 and "booking" in kinds      # the timeline marks the tool calls
    assert "📅 [BOOKING] visit booked for 2026-12-02T08:00:00+02:00" in log


def test_a_calendar_that_never_answers_costs_the_deadline_and_the_lead_is_kept(slow):
    assert failures(slow) == []
    _, _, _, records, _, _, _, log = slow
    [lead] = records["leads"]
    assert lead["status"] == "complete" and lead["visit"]["status"] == "unavailable"
    assert records["calendar_events"] == []
    assert log.count("I/O #1 done (error: timeout)") == 1 and log.count("I/O #2 done (error: timeout)") == 1
    assert "the calendar cannot be reached (timeout)" in log
