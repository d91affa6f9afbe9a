"""A PostgreSQL that fails over, goes away or stops answering while calls go on, end to end on
loopback (the real server, the simulators, PostgreSQL behind ``sim/tcp_proxy.py``):

* down for 20 s, and for 60 s, from mid-call (the lead is captured while it is down, the call
  ends before it is back): the lead, the call's record and the CRM delivery all arrive once it is
  back, each once;
* down for the call's first 8 s: the caller still gets the business's own profile, and its lead
  is stored and delivered;
* blackholed for 20 s mid-call (connections open, nothing answers): the call's turns are answered
  as fast as ever.
"""
import threading
import time

import pytest

from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall
from sim.postgres import TempPostgres
from sim.tcp_proxy import TcpProxy
from tests.pg_cluster import require_postgres

OUTAGE_AT_S = 4.0                   # after the greeting began, before the lead (about 15 s in)


def wait_until(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_postgres()
    work = tmp_path_factory.mktemp("outage")
    with TempPostgres(tcp=True) as pg, TcpProxy([("127.0.0.1", pg.port)]) as link:
        url = pg.url(pg.new_database(), host="127.0.0.1", port=link.port)
        env = {"DATABASE_URL": url, "OUTBOX_IDLE_POLL_MS": "500", "RECORDS_RETRY_MAX_MS": "2000",
               "DATABASE_CONNECT_TIMEOUT_MS": "1000", "DATABASE_STATEMENT_TIMEOUT_MS": "2000"}
        loop = LoopbackCall(scenario_mod.load("lead_hebrew"), work / "server.log", env=env)
        loop.start(boot_timeout_s=60)
        try:
            yield loop, link, url
        finally:
            loop.stop()


def later(delay_s: float, action) -> threading.Timer:
    timer = threading.Timer(delay_s, action)
    timer.start()
    return timer


def leads_delivered(loop, call_sid: str) -> list[dict]:
    return [r for r in loop.crm.received if r["payload"]["call"]["call_sid"] == call_sid
            and r["payload"]["event"] == "lead.complete"]


def stored_call(url: str, call_sid: str) -> dict | None:
    from server.storage.db import Store
    store = Store(url)
    try:
        detail = store.call_detail(call_sid)
    finally:
        store.close()
    return detail


def assert_everything_arrived(loop, url, call_sid: str, within_s: float) -> dict:
    assert wait_until(lambda: len(leads_delivered(loop, call_sid)) >= 1 and not loop.health()["records_pending"],
                      within_s), loop.health()
    time.sleep(1.0)                             # a second delivery would come within the outbox's poll
    assert len(leads_delivered(loop, call_sid)) == 1
    detail = stored_call(url, call_sid)
    assert detail is not None and detail["call"]["outcome"] == "lead_captured", detail and detail["call"]
    assert detail["call"]["business"] == "מנעולן השרון"
    lead = detail["lead"]
    assert (lead["status"], lead["service"], lead["city"]) == ("complete", "התקנת מנעול חכם", "תל אביב-יפו")
    return detail


@pytest.mark.parametrize("outage_s", [20, 60])
def test_a_lead_captured_while_the_database_is_down_is_stored_and_delivered_once_it_is_back(server, outage_s):
    loop, link, url = server
    timers = [later(OUTAGE_AT_S, link.cut), later(OUTAGE_AT_S + outage_s, link.restore)]
    try:
        record = loop.call(max_duration_s=90)
        assert "Lead captured: True" in loop.log_text()
        assert loop.health()["records_pending"] > 0 or outage_s == 20   # the call ended before the database came back
        assert_everything_arrived(loop, url, record.call_sid, within_s=outage_s + 30)
    finally:
        for t in timers:
            t.cancel()
        link.restore()
    log = loop.log_text()
    assert "could not be stored" in log and "the database takes writes again" in log
    metrics = loop.metrics()
    assert "prosaas_record_write_failures_total" in metrics and "prosaas_records_pending 0.0" in metrics


def test_a_call_that_starts_while_the_database_is_down_keeps_its_business_and_its_lead(server):
    loop, link, url = server
    link.cut()
    timer = later(8.0, link.restore)
    try:
        record = loop.call(max_duration_s=90)
        assert_everything_arrived(loop, url, record.call_sid, within_s=30)
    finally:
        timer.cancel()
        link.restore()
    log = loop.log_text()
    answered = [ln for ln in log.splitlines() if record.call_sid in ln and "[BUSINESS]" in ln]
    assert answered and "מנעולן השרון answers" in answered[0] and "default profile" not in answered[0]


def test_a_blackholed_database_costs_the_call_no_reply_latency(server):
    loop, link, url = server
    timers = [later(OUTAGE_AT_S, lambda: link.blackhole(True)), later(OUTAGE_AT_S + 20, lambda: link.blackhole(False))]
    try:
        record = loop.call(max_duration_s=90)
        latencies = [v for v in record.response_latencies_ms() if v is not None]
        assert len(latencies) == 3 and max(latencies) < 1500, latencies     # 0.94 s normally; 9.1 s before
        assert_everything_arrived(loop, url, record.call_sid, within_s=40)
    finally:
        for t in timers:
            t.cancel()
        link.blackhole(False)
