"""The store (businesses, calls, leads, the outbox and its leases), ``python -m server.storage init``,
the /admin listings behind ADMIN_TOKEN, and the webhook's unknown-number policy."""
import json
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select

from server.app import create_app
from server.business.profiles import Profiles
from server.leads.capture import LeadSnapshot
from server.settings import DEFAULT_REFUSAL_MESSAGE, Settings
from server.storage.db import OutboxJob, Store
from server.storage.models import Business, Call, Lead, OutboxMessage
from tests.store_helpers import profiles, store  # noqa: F401 - shared fixtures

ROOT = Path(__file__).resolve().parents[1]
LOCKSMITH = "+97235550100"
CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32
CRM = ("https://crm.example.com/leads", "CRM_SECRET_LOCKSMITH")
T0 = datetime(2100, 1, 1, 12, 0, 0)      # after every row's default next_attempt_at (now)
LEAD = LeadSnapshot("complete", "התקנת מנעול חכם", "רמת גן", True, "דנה", "+972501234567", "דחוף", (),
                    {"service": "tool", "city": "tool", "name": "tool", "phone": "caller_id", "notes": "tool"})
PARTIAL = LeadSnapshot("partial", "פריצת דלת", None, None, None, "+972501234567", "caller said: פריצת דלת",
                       ("city",), {"service": "transcript", "phone": "caller_id"})




def locksmith_id(store: Store) -> int:
    return store.business_for(LOCKSMITH)[0]


def start_call(store: Store, call_sid: str = CALL) -> None:
    store.call_started(call_sid, STREAM, locksmith_id(store), LOCKSMITH, "+97250*****67")


def rows(store: Store, model) -> list:
    with store.session() as s:
        return s.scalars(select(model).order_by(model.id)).all()


def count(store: Store, model) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def queue_one(store: Store) -> int:
    start_call(store)
    store.save_lead(CALL, LEAD, CRM)
    return rows(store, OutboxMessage)[0].id


# --- businesses -----------------------------------------------------------------------------------

def test_sync_businesses_is_idempotent_and_updates_a_changed_name(store, profiles):
    first = {b.number: b.id for b in rows(store, Business)}
    assert sorted(first) == ["+97235550100", "+97235550200"]
    assert store.sync_businesses(profiles) == first
    assert {b.number: b.id for b in rows(store, Business)} == first
    renamed = replace(profiles.businesses[LOCKSMITH], name="מנעולן השרון בע\"מ")
    assert store.sync_businesses(Profiles({**profiles.businesses, LOCKSMITH: renamed}, profiles.default)) == first
    assert count(store, Business) == 2
    assert {b.number: b.name for b in rows(store, Business)} == {LOCKSMITH: "מנעולן השרון בע\"מ",
                                                                  "+97235550200": "Clean & Shine"}
    assert store.business_for(LOCKSMITH) == (first[LOCKSMITH], renamed)


def test_create_schema_twice_keeps_the_data(store):
    store.create_schema()
    assert count(store, Business) == 2


def test_business_for_an_unlisted_number_is_none(store):
    assert store.business_for("+97235550999") is None


# --- calls and leads -----------------------------------------------------------------------------

def test_call_started_records_the_call_and_a_reconnect_updates_the_stream(store):
    start_call(store)
    store.call_started(CALL, "MZ" + "3" * 32, None, "ignored", "ignored")
    [call] = rows(store, Call)
    assert (call.call_sid, call.stream_sid, call.business_id) == (CALL, "MZ" + "3" * 32, locksmith_id(store))
    assert (call.called_number, call.caller_masked, call.outcome) == (LOCKSMITH, "+97250*****67", "in_progress")


def test_save_lead_with_deliver_to_queues_one_pending_delivery_in_the_same_write(store):
    start_call(store)
    lead_id = store.save_lead(CALL, LEAD, CRM, business={"number": LOCKSMITH, "name": "מנעולן השרון"})
    [lead] = rows(store, Lead)
    assert lead.id == lead_id
    assert (lead.status, lead.service, lead.city, lead.city_served) == ("complete", "התקנת מנעול חכם", "רמת גן", True)
    assert (lead.name, lead.phone, lead.notes, lead.business_id) == ("דנה", "+972501234567", "דחוף", locksmith_id(store))
    assert json.loads(lead.sources_json) == LEAD.sources
    [msg] = rows(store, OutboxMessage)
    assert (msg.status, msg.attempts, msg.lead_id, msg.url, msg.secret_env) == ("pending", 0, lead_id, *CRM)
    assert msg.delivery_id.startswith("dlv_")
    body = json.loads(msg.body)
    assert body["event"] == "lead.complete"
    assert body["delivery_id"] == msg.delivery_id
    assert body["lead"] == {"id": lead_id, "status": "complete", "service": "התקנת מנעול חכם", "city": "רמת גן",
                            "city_served": True, "name": "דנה", "phone": "+972501234567", "notes": "דחוף",
                            "missing": [], "visit": None}
    assert body["business"] == {"number": LOCKSMITH, "name": "מנעולן השרון"}
    assert body["call"]["call_sid"] == CALL and body["call"]["started_at"].endswith("Z")
    assert "התקנת מנעול חכם" in msg.body                       # readable, not \u escapes


def test_save_lead_without_deliver_to_queues_nothing(store):
    start_call(store)
    store.save_lead(CALL, PARTIAL, None)
    assert count(store, Lead) == 1
    assert count(store, OutboxMessage) == 0
    assert store.outbox_counts() == {}
    assert store.next_due_at() is None


def test_save_lead_twice_on_a_call_updates_its_one_lead(store):
    start_call(store)
    first = store.save_lead(CALL, PARTIAL, None)
    second = store.save_lead(CALL, LEAD, CRM)
    assert second == first
    [lead] = rows(store, Lead)
    assert (lead.status, lead.city, lead.name, json.loads(lead.missing_json)) == ("complete", "רמת גן", "דנה", [])
    [msg] = rows(store, OutboxMessage)
    assert json.loads(msg.body)["lead"]["id"] == first


def test_each_delivered_version_of_a_lead_gets_its_own_delivery_id(store):
    start_call(store)
    store.save_lead(CALL, PARTIAL, CRM)
    store.save_lead(CALL, LEAD, CRM)
    first, second = rows(store, OutboxMessage)
    assert count(store, Lead) == 1
    assert first.delivery_id != second.delivery_id
    assert [json.loads(m.body)["event"] for m in (first, second)] == ["lead.partial", "lead.complete"]


def test_save_lead_on_an_unknown_call_raises_and_writes_nothing(store):
    with pytest.raises(LookupError, match="no call CAunknown"):
        store.save_lead("CAunknown", LEAD, CRM)
    assert (count(store, Call), count(store, Lead), count(store, OutboxMessage)) == (0, 0, 0)


# --- the outbox: leases, success, failure -------------------------------------------------------------

def test_claim_due_leases_a_message_until_the_lease_expires(store):
    msg_id = queue_one(store)
    [job] = store.claim_due(T0, lease_s=30)
    msg = rows(store, OutboxMessage)[0]
    assert job == OutboxJob(msg_id, msg.delivery_id, CRM[0], CRM[1], msg.body, 0, msg.created_at)
    assert msg.lease_until == T0 + timedelta(seconds=30)
    assert store.claim_due(T0, lease_s=30) == []                           # another worker, same moment
    assert store.claim_due(T0 + timedelta(seconds=29), lease_s=30) == []
    [again] = store.claim_due(T0 + timedelta(seconds=31), lease_s=30)      # the first worker died
    assert again.id == msg_id


def test_claim_due_honours_the_limit_and_the_due_time(store):
    for i in range(3):
        start_call(store, f"CA{i}")
        store.save_lead(f"CA{i}", LEAD, CRM)
    assert len(store.claim_due(T0, lease_s=30, limit=2)) == 2
    assert len(store.claim_due(T0, lease_s=30, limit=2)) == 1
    assert store.claim_due(datetime(2000, 1, 1), lease_s=30) == []


def test_delivery_succeeded_marks_the_message_delivered(store):
    msg_id = queue_one(store)
    store.claim_due(T0, lease_s=30)
    store.delivery_succeeded(msg_id, T0 + timedelta(seconds=1))
    msg = rows(store, OutboxMessage)[0]
    assert (msg.status, msg.attempts, msg.lease_until, msg.last_error) == ("delivered", 1, None, None)
    assert msg.delivered_at == T0 + timedelta(seconds=1)
    assert store.claim_due(T0 + timedelta(days=1), lease_s=30) == []
    assert store.outbox_counts() == {"delivered": 1}
    assert store.recent_leads()[0]["deliveries"] == [{"delivery_id": msg.delivery_id, "status": "delivered",
                                                      "attempts": 1, "last_error": None,
                                                      "delivered_at": "2100-01-01T12:00:01Z"}]


def test_delivery_failed_sets_the_retry_time_and_frees_the_lease(store):
    msg_id = queue_one(store)
    store.claim_due(T0, lease_s=30)
    store.delivery_failed(msg_id, "HTTP 503", T0 + timedelta(seconds=2))
    msg = rows(store, OutboxMessage)[0]
    assert (msg.status, msg.attempts, msg.lease_until, msg.last_error) == ("pending", 1, None, "HTTP 503")
    assert msg.next_attempt_at == T0 + timedelta(seconds=2)
    assert store.next_due_at() == T0 + timedelta(seconds=2)
    assert store.claim_due(T0 + timedelta(seconds=1), lease_s=30) == []
    [job] = store.claim_due(T0 + timedelta(seconds=2), lease_s=30)
    assert (job.id, job.attempts) == (msg_id, 1)


def test_delivery_failed_without_a_retry_time_is_dead_and_still_listed(store):
    msg_id = queue_one(store)
    store.claim_due(T0, lease_s=30)
    store.delivery_failed(msg_id, "x" * 600, None)
    msg = rows(store, OutboxMessage)[0]
    assert (msg.status, msg.attempts, msg.last_error) == ("dead", 1, "x" * 500)
    assert store.claim_due(T0 + timedelta(days=30), lease_s=30) == []
    assert store.next_due_at() is None
    assert store.outbox_counts() == {"dead": 1}
    [lead] = store.recent_leads()
    assert lead["deliveries"] == [{"delivery_id": msg.delivery_id, "status": "dead", "attempts": 1,
                                   "last_error": "x" * 500, "delivered_at": None}]


# --- listings -----------------------------------------------------------------------------------------

def test_call_ended_figures_are_visible_in_recent_calls(store):
    start_call(store)
    store.call_ended(CALL, outcome="lead_captured", hangup_reason="goodbye", turns=4, responses=5, barge_ins=1,
                     latencies_ms=[900, 380, 420], transcript=[("assistant", "שלום"), ("caller", "צריך מנעולן")])
    [call] = store.recent_calls()
    assert call["call_sid"] == CALL and call["business"] == "מנעולן השרון"
    assert (call["called_number"], call["caller"]) == (LOCKSMITH, "+97250*****67")
    assert (call["outcome"], call["hangup_reason"]) == ("lead_captured", "goodbye")
    assert (call["turns"], call["responses"], call["barge_ins"]) == (4, 5, 1)
    assert (call["latency_median_ms"], call["latency_max_ms"]) == (420, 900)
    assert call["transcript"] == [["assistant", "שלום"], ["caller", "צריך מנעולן"]]
    assert call["ended_at"].endswith("Z") and call["started_at"].endswith("Z")


def test_call_ended_without_latencies_leaves_the_figures_empty(store):
    start_call(store)
    store.call_ended(CALL, outcome="no_lead", hangup_reason="caller", turns=0, responses=1, barge_ins=0,
                     latencies_ms=[], transcript=[])
    [call] = store.recent_calls()
    assert (call["latency_median_ms"], call["latency_max_ms"], call["outcome"]) == (None, None, "no_lead")


def test_call_ended_for_an_unknown_call_writes_nothing(store):
    store.call_ended("CAunknown", outcome="no_lead", hangup_reason="caller", turns=0, responses=0, barge_ins=0,
                     latencies_ms=[100], transcript=[])
    assert store.recent_calls() == []


def test_recent_calls_newest_first_and_limited(store):
    for sid in ("CA1", "CA2", "CA3"):
        start_call(store, sid)
    assert [c["call_sid"] for c in store.recent_calls()] == ["CA3", "CA2", "CA1"]
    assert [c["call_sid"] for c in store.recent_calls(limit=2)] == ["CA3", "CA2"]


def test_recent_leads_show_the_lead_and_its_deliveries(store):
    start_call(store)
    store.save_lead(CALL, PARTIAL, CRM)
    store.save_lead(CALL, LEAD, CRM)
    first, second = rows(store, OutboxMessage)
    [lead] = store.recent_leads()
    assert {k: lead[k] for k in ("call_sid", "business", "status", "service", "city", "city_served", "name", "phone",
                                 "notes", "missing", "sources")} == {
        "call_sid": CALL, "business": "מנעולן השרון", "status": "complete", "service": "התקנת מנעול חכם",
        "city": "רמת גן", "city_served": True, "name": "דנה", "phone": "+972501234567", "notes": "דחוף",
        "missing": [], "sources": LEAD.sources}
    assert lead["deliveries"] == [
        {"delivery_id": first.delivery_id, "status": "pending", "attempts": 0, "last_error": None, "delivered_at": None},
        {"delivery_id": second.delivery_id, "status": "pending", "attempts": 0, "last_error": None, "delivered_at": None}]
    assert store.outbox_counts() == {"pending": 2}


# --- python -m server.storage init ---------------------------------------------------------------------

def run_init(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "BUSINESSES_FILE": "", **env_overrides}
    return subprocess.run([sys.executable, "-m", "server.storage", "init"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_storage_init_creates_the_tables_and_loads_the_businesses(tmp_path):
    db = tmp_path / "init.sqlite3"
    done = run_init({"DATABASE_URL": f"sqlite:///{db}"})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"schema ready on sqlite:///{db}; 2 businesses loaded from businesses.toml\n"
    engine = create_engine(f"sqlite:///{db}")
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version", "businesses", "calls", "leads", "outbox",
                                                          "stream_claims"}
        with engine.connect() as conn:
            assert sorted(conn.execute(select(Business.number)).scalars()) == ["+97235550100", "+97235550200"]
    finally:
        engine.dispose()
    again = run_init({"DATABASE_URL": f"sqlite:///{db}"})                 # idempotent
    assert (again.returncode, again.stdout) == (0, done.stdout)


def test_storage_init_with_a_broken_businesses_file_exits_2(tmp_path):
    db, bad = tmp_path / "init.sqlite3", tmp_path / "bad.toml"
    bad.write_text('[[business]]\nname = "X"\n', encoding="utf-8")
    done = run_init({"DATABASE_URL": f"sqlite:///{db}", "BUSINESSES_FILE": str(bad)})
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "error: invalid business profiles:\n  bad.toml: business #1 (?): 'number' is required\n"
    assert not db.exists()


# --- the admin listings ----------------------------------------------------------------------------------

ADMIN = "adm-token-4711"
BASE_ENV = {"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_SIGNATURE_VALIDATION": "off", "OUTBOX_WORKER": "off",
            "PUBLIC_BASE_URL": "https://agent.example.com"}


def app_client(tmp_path, **env):
    settings = Settings.from_env({**BASE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path}/app.sqlite3", **env})
    return create_app(settings).test_client()


@pytest.fixture()
def admin(tmp_path):
    client = app_client(tmp_path, ADMIN_TOKEN=ADMIN)
    store = Store(f"sqlite:///{tmp_path}/app.sqlite3")     # the same file the app opened
    start_call(store)
    store.save_lead(CALL, replace(LEAD, name="<script>alert(1)</script>"), CRM)
    yield client
    store.close()


@pytest.mark.parametrize("path", ["/admin", "/admin/calls", "/admin/leads"])
def test_admin_is_off_without_a_token(tmp_path, path):
    client = app_client(tmp_path)
    assert client.get(path).status_code == 404
    assert client.get(path, headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize("path", ["/admin", "/admin/calls", "/admin/leads"])
def test_admin_needs_the_right_token(admin, path):
    for kwargs in ({"headers": {"Authorization": "Bearer wrong"}}, {"headers": {"Authorization": "Bearer " + ADMIN + "x"}},
                   {"headers": {"Authorization": ADMIN[:-1]}}):
        resp = admin.get(path, **kwargs)
        assert resp.status_code == 401, kwargs
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="prosaas-admin"'
        assert b"<script>" not in resp.data
    bare = admin.get(path)              # no credentials: the page sends a person to sign in, a script gets 401
    assert bare.status_code == (303 if path == "/admin" else 401)
    assert b"<script>" not in bare.data


@pytest.mark.parametrize("path", ["/admin", "/admin/calls", "/admin/leads"])
def test_admin_refuses_a_token_in_the_url(admin, path):
    for value in (ADMIN, "wrong"):
        resp = admin.get(path, query_string={"token": value})
        assert resp.status_code == 400
        assert "sign in at /admin/login" in resp.get_data(as_text=True) and b"<script>" not in resp.data


@pytest.mark.parametrize("auth", [{"headers": {"Authorization": f"Bearer {ADMIN}"}}], ids=["bearer"])
def test_admin_json_listings_with_the_right_token(admin, auth):
    calls = admin.get("/admin/calls", **auth)
    assert calls.status_code == 200 and calls.mimetype == "application/json"
    assert [c["call_sid"] for c in calls.get_json()["calls"]] == [CALL]
    leads = admin.get("/admin/leads", **auth)
    assert leads.status_code == 200 and leads.mimetype == "application/json"
    body = leads.get_json()
    assert sorted(body) == ["leads", "outbox"]
    assert [(lead["call_sid"], lead["name"], lead["phone"]) for lead in body["leads"]] == [
        (CALL, "<script>alert(1)</script>", "+972501234567")]
    assert [d["status"] for d in body["leads"][0]["deliveries"]] == ["pending"]
    assert body["outbox"] == {"pending": 1}


def test_admin_limit_is_clamped_and_a_bad_one_refused(admin):
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert len(admin.get("/admin/calls?limit=1000", headers=auth).get_json()["calls"]) == 1
    assert admin.get("/admin/calls?limit=1000", headers=auth).get_json()["page_size"] == 500     # at most MAX_LIMIT
    assert admin.get("/admin/calls?limit=0", headers=auth).status_code == 400
    assert admin.get("/admin/calls?limit=abc", headers=auth).status_code == 400


def test_admin_page_escapes_stored_values(admin):
    resp = admin.get("/admin", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page
    assert "<script>" not in page
    assert "<td>מנעולן השרון</td>" in page and "<td>pending×0</td>" in page


# --- the webhook and the unknown-number policy ----------------------------------------------------------

def webhook(client, to: str):
    form = {"CallSid": CALL, "From": "+972501234567", "To": to}
    resp = client.post("/webhook/incoming_call", data=form)
    assert resp.status_code == 200 and resp.mimetype == "text/xml"
    return resp.get_data(as_text=True)


def test_policy_refuse_says_the_refusal_and_hangs_up_on_an_unlisted_number(tmp_path):
    client = app_client(tmp_path, UNKNOWN_NUMBER_POLICY="refuse")
    twiml = webhook(client, "+97235550999")
    assert twiml == ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                     f'<Say language="he-IL">{DEFAULT_REFUSAL_MESSAGE}</Say><Hangup /></Response>')
    assert "<Connect>" not in twiml


def test_policy_refuse_uses_the_configured_message(tmp_path):
    client = app_client(tmp_path, UNKNOWN_NUMBER_POLICY="refuse", UNKNOWN_NUMBER_MESSAGE="Not in service & bye")
    twiml = webhook(client, "+15550001111")
    assert '<Say language="he-IL">Not in service &amp; bye</Say><Hangup /></Response>' in twiml
    assert "<Connect>" not in twiml


@pytest.mark.parametrize("to", ["+97235550100", "035550100", "+97235550200"])
def test_policy_refuse_still_connects_a_listed_number(tmp_path, to):
    twiml = webhook(app_client(tmp_path, UNKNOWN_NUMBER_POLICY="refuse"), to)
    assert '<Connect><Stream url="wss://agent.example.com/ws/twilio-media">' in twiml
    assert "<Say" not in twiml and "<Hangup" not in twiml


def test_policy_default_connects_an_unlisted_number(tmp_path):
    twiml = webhook(app_client(tmp_path), "+97235550999")
    assert '<Connect><Stream url="wss://agent.example.com/ws/twilio-media">' in twiml
    assert "<Hangup" not in twiml
