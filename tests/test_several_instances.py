"""Two server processes on one PostgreSQL behind a load balancer, on loopback.

The load balancer is ``sim/tcp_proxy.py`` (round robin per connection, a health check on
``/healthz``, which answers 503 while a server drains), so a call's webhook, its media stream and
its after-stream request may each reach a different instance. Both instances share one Twilio
REST simulator (the calls register there), one Realtime simulator each, and one CRM receiver.

Proved here:
* calls spread across both instances, and every lead reaches the CRM exactly once;
* the after-stream request of a call that failed on one instance is answered by the other with the
  apology (from the call's record in the database; that instance never saw the call);
* one instance gets SIGTERM mid-call: its calls finish the turn, say goodbye and are hung up
  (through the REST API), calls placed afterwards go to the other instance;
* a PostgreSQL round trip does not stop the worker (``server/green.py``): green threads keep
  running while a query waits on a slow database.
"""
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sim import scenario as scenario_mod
from sim.crm_receiver import CrmReceiver
from sim.loopback import AUTH_TOKEN, CRM_SECRET, SIM_ACCOUNT_SID, LoopbackCall
from sim.postgres import TempPostgres
from sim.tcp_proxy import TcpProxy
from sim.twilio_caller import TwilioCaller
from sim.twilio_rest import TwilioRestSimulator
from tests.pg_cluster import require_postgres

APOLOGY = "מצטערים"


def wait_until(predicate, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


@pytest.fixture(scope="module")
def two_instances(tmp_path_factory):
    require_postgres()
    work = tmp_path_factory.mktemp("instances")
    scenario = scenario_mod.load("lead_hebrew")
    with TempPostgres() as pg, TwilioRestSimulator(SIM_ACCOUNT_SID, AUTH_TOKEN) as rest, \
            CrmReceiver(CRM_SECRET) as crm, TcpProxy([], health_path="/healthz") as balancer:
        url = pg.url(pg.new_database())
        env = {"DATABASE_URL": url, "PUBLIC_BASE_URL": balancer.url, "TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID,
               "TWILIO_API_BASE_URL": rest.base_url, "OUTBOX_IDLE_POLL_MS": "500"}
        instances = [LoopbackCall(scenario, work / f"{name}.log", env=env, crm=crm, graceful_timeout_s=25)
                     for name in ("a", "b")]
        for loop in instances:
            loop.start(boot_timeout_s=60)
        balancer.set_backends([("127.0.0.1", loop.port) for loop in instances])
        assert wait_until(lambda: balancer.healthy(0) and balancer.healthy(1), 5)
        try:
            yield instances, balancer, rest, crm, url
        finally:
            for loop in instances:
                loop.stop()


def place(balancer: TcpProxy, rest, scenario, records: list, lock: threading.Lock, **kw) -> threading.Thread:
    def run() -> None:
        record = TwilioCaller(balancer.url, scenario, AUTH_TOKEN, rest=rest, **kw).run(90)
        with lock:
            records.append(record)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_two_instances_share_one_database(two_instances):
    (a, b), balancer, rest, crm, url = two_instances
    scenario = a.scenario

    # 1. A call that fails on instance A (its model refuses the session): the balancer sends its
    #    webhook and stream to A; once A closed the stream, A leaves the rotation and the
    #    after-stream request goes to B, which never saw the call.
    a.realtime.reject_status = 401
    balancer.mark_down(1)

    def flip(_t, kind, _detail) -> None:
        if kind == "server_closed":
            balancer.mark_up(1)
            balancer.mark_down(0)

    failed = TwilioCaller(balancer.url, scenario, AUTH_TOKEN, on_event=flip, rest=rest,
                          from_number="+972501110000").run(30)
    a.realtime.reject_status = None
    balancer.mark_up(0)
    assert failed.after_stream[0][0] == "Say" and APOLOGY in failed.after_stream[0][1]
    assert failed.twiml_requests and all(req[0].startswith(balancer.url) for req in failed.twiml_requests)
    assert "stream ended for" in b.log_text() and "stream ended for" not in a.log_text()

    # 2. Four calls through the balancer; once both instances carry calls, A gets SIGTERM.
    records: list = []
    lock = threading.Lock()
    threads = [place(balancer, rest, scenario, records, lock, from_number=f"+97250222000{i}") for i in range(4)]
    assert wait_until(lambda: a.health()["active_calls"] and b.health()["active_calls"], 20)
    a.server.send_signal(signal.SIGTERM)
    assert wait_until(lambda: not balancer.healthy(0), 5)          # the health check saw the 503

    # 3. Calls placed after the SIGTERM all go to B.
    served_by_b = b.health()["calls_total"]
    late = [place(balancer, rest, scenario, records, lock, from_number=f"+97250333000{i}") for i in range(2)]
    for thread in threads + late:
        thread.join(120)
    assert b.health()["calls_total"] == served_by_b + 2
    assert a.server.wait(30) == 0                                    # A drained and exited cleanly
    a_log = a.log_text()
    assert "[SHUTDOWN] server stopping - goodbye after the current turn" in a_log
    assert "📞 [SMART HANGUP] Reason: shutdown" in a_log               # A's calls said goodbye
    assert "Traceback" not in a_log and "Traceback" not in b.log_text()

    # 4. Every call ended; the ones the agent hung up were ended through the REST API, once each.
    assert len(records) == 6 and all(r.hung_up_by == "server" for r in records), \
        [(r.call_sid[-4:], r.hung_up_by, r.ended_by_rest, r.failures, r.events[-2:]) for r in records]
    assert all(r.ended_by_rest for r in records)
    completes = [r for r in rest.requests if r.params == {"Status": "completed"}]
    assert sorted(r.path for r in completes) == sorted({r.path for r in completes}) and len(completes) == 6

    # 5. Every lead reaches the CRM exactly once, whichever instance stored it or delivered it.
    store_calls = b.admin("calls?limit=50")["calls"]
    assert len(store_calls) == 7 and all(c["ended_at"] for c in store_calls)
    assert sum(c["hangup_reason"] == "shutdown" for c in store_calls) >= 1
    assert [c["outcome"] for c in store_calls].count("failed") == 1
    leads = b.admin("leads?limit=50")["leads"]
    with_lead = [c for c in store_calls if c["outcome"] in ("lead_captured", "partial_lead")]
    assert len(leads) == len(with_lead) >= 4
    assert wait_until(lambda: len([r for r in crm.received if r["payload"]["event"] != "lead.summary"])
                      >= len(leads), 20)
    time.sleep(1.0)                                                  # a duplicate would arrive now
    lead_events = [r for r in crm.received if r["payload"]["event"] != "lead.summary"]
    assert sorted(r["payload"]["lead"]["id"] for r in lead_events) == sorted(lead["id"] for lead in leads)
    ids = [r["delivery_id"] for r in crm.received]
    assert len(ids) == len(set(ids))                                 # no delivery accepted twice
    assert all({d["status"] for d in lead["deliveries"]} == {"delivered"} for lead in leads)


def test_a_slow_database_round_trip_does_not_stop_the_worker(tmp_path):
    """Under eventlet, psycopg must wait in green ``select`` (server/green.py), not in C: here a
    green ticker keeps running while queries wait 200 ms on a delaying proxy."""
    require_postgres()
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, time\n"
        "import eventlet; eventlet.monkey_patch()\n"
        "from server import green\n"
        "from sqlalchemy import create_engine, text\n"
        "engine = create_engine(sys.argv[1])\n"
        "ticks = []\n"
        "def ticker():\n"
        "    while True:\n"
        "        eventlet.sleep(0.01); ticks.append(time.monotonic())\n"
        "green.spawn(ticker)\n"
        "eventlet.sleep(0.05)\n"
        "with engine.connect() as c:\n"
        "    start = len(ticks)\n"
        "    for _ in range(3): c.execute(text('select 1'))\n"
        "    print(len(ticks) - start)\n", encoding="utf-8")
    with TempPostgres(tcp=True) as pg, TcpProxy([("127.0.0.1", pg.port)], delay_ms=100) as slow:
        out = subprocess.run([sys.executable, str(script), pg.url(host="127.0.0.1", port=slow.port)],
                             capture_output=True, text=True, timeout=60, cwd=str(tmp_path.parent),
                             env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                                  "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    # three queries of 200 ms each: the ticker (every 10 ms) ran about 60 times meanwhile; in C, 0-1
    assert int(out.stdout.split()[-1]) >= 20
