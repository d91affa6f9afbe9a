"""The admin pages through the Flask test client: sign-in and its cookie, tokens never in URLs, the
bearer header for scripts, filters and paging, one call's page and its timeline picture."""
import re
import xml.etree.ElementTree as ET
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest

from server.web.admin_pages import index_page
from server.web.admin_session import COOKIE_NAME, issue, session_key
from server.app import create_app
from server.leads.capture import LeadSnapshot
from server.settings import Settings
from server.storage.db import Store
from tests.test_timeline_svg import EXAMPLE

ADMIN = "adm-pages-token-0815"
LOCKSMITH, CLEANER = "+97235550100", "+97235550200"
ENV = {"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_SIGNATURE_VALIDATION": "off", "OUTBOX_WORKER": "off"}
LEAD_CALL = "CA" + "7" * 32
EVIL = "<script>alert(1)</script>"
LEAD = LeadSnapshot("complete", "התקנת מנעול חכם", "רמת גן", True, EVIL, "+972501234567", "דחוף & מהר", (),
                    {"service": "tool", "city": "tool", "name": "tool", "phone": "caller_id"})
TRANSCRIPT = [("assistant", "שלום, הגעתם למנעולן השרון"), ("user", "אני צריך התקנת מנעול חכם " + EVIL)]


def sid(i: int) -> str:
    return f"CA{i:032d}"


def make_app(tmp_path, token: str | None = ADMIN):
    env = {**ENV, "DATABASE_URL": f"sqlite:///{tmp_path}/admin.sqlite3"}
    if token:
        env["ADMIN_TOKEN"] = token
    return create_app(Settings.from_env(env))


@pytest.fixture()
def app(tmp_path):
    """30 calls: 20 of the locksmith (odd ones no_lead, even ones lead_captured), 10 of the cleaner
    (failed); the last locksmith call has a lead, a delivery, a transcript and the example timeline."""
    app = make_app(tmp_path)
    store = Store(f"sqlite:///{tmp_path}/admin.sqlite3")
    ids = {b["number"]: b["id"] for b in store.businesses()}
    for i in range(30):
        number = LOCKSMITH if i < 20 else CLEANER
        call_sid = LEAD_CALL if i == 19 else sid(i)
        store.call_started(call_sid, "MZ" + "0" * 32, ids[number], number, "+97250*****67")
        outcome = "failed" if i >= 20 else ("lead_captured" if i % 2 else "no_lead")
        store.call_ended(call_sid, outcome, "goodbye", 2, 3, 1, [740, 910], TRANSCRIPT if i == 19 else [],
                         timeline=EXAMPLE if i == 19 else None)
    store.save_lead(LEAD_CALL, LEAD, ("https://crm.example.com/leads", "CRM_SECRET_LOCKSMITH"))
    store.close()
    app.config["BUSINESS_IDS"] = ids
    return app


@pytest.fixture()
def client(app):
    return app.test_client()


def sign_in(client, token=ADMIN, **kwargs):
    return client.post("/admin/login", data={"token": token, "next": "/admin"}, **kwargs)


@pytest.fixture()
def signed_in(client):
    assert sign_in(client).status_code == 303
    return client


def page(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    assert resp.content_type == "text/html; charset=utf-8"
    return resp.get_data(as_text=True)


def call_links(html: str) -> list[str]:
    return re.findall(r'class=call-link href="/admin/calls/(CA\d{32}|CA7{32})"', html)


# --- off without a token ---------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("get", "/admin"), ("get", "/admin/login"), ("post", "/admin/login"),
                                         ("post", "/admin/logout"), ("get", "/admin/calls"),
                                         ("get", f"/admin/calls/{LEAD_CALL}"),
                                         ("get", f"/admin/calls/{LEAD_CALL}/timeline.svg"),
                                         ("get", "/admin?token=x")])
def test_everything_is_off_without_admin_token(tmp_path, method, path):
    client = make_app(tmp_path, token=None).test_client()
    assert getattr(client, method)(path).status_code == 404
    assert client.get(path, headers={"Authorization": "Bearer "}).status_code == 404


# --- sign-in ---------------------------------------------------------------------------------------

def test_a_page_without_credentials_sends_a_person_to_the_sign_in_form(client):
    resp = client.get(f"/admin/calls/{LEAD_CALL}")
    assert resp.status_code == 303
    target = urlsplit(resp.headers["Location"])
    assert target.path == "/admin/login" and parse_qs(target.query) == {"next": [f"/admin/calls/{LEAD_CALL}"]}
    form = page(client.get(resp.headers["Location"]))
    assert '<form method=post action="/admin/login">' in form
    assert "<input type=password name=token" in form
    assert f'name=next value="/admin/calls/{LEAD_CALL}"' in form
    assert "sign out" not in form


def test_json_and_the_picture_answer_401_without_credentials(client):
    for path in ("/admin/calls", "/admin/leads", f"/admin/calls/{LEAD_CALL}/timeline.svg"):
        resp = client.get(path)
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="prosaas-admin"'


def test_signing_in_sets_a_strict_http_only_cookie_and_goes_where_asked(client):
    resp = client.post("/admin/login", data={"token": ADMIN, "next": f"/admin/calls/{LEAD_CALL}"})
    assert resp.status_code == 303 and resp.headers["Location"] == f"/admin/calls/{LEAD_CALL}"
    [cookie] = resp.headers.getlist("Set-Cookie")
    flags = [f.strip() for f in cookie.split(";")]
    assert flags[0].startswith(f"{COOKIE_NAME}=v1.") and ADMIN not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"} <= set(flags)
    assert "Secure" not in flags                          # plain http: a Secure cookie would never come back
    assert "Expires" in cookie
    html = page(client.get(f"/admin/calls/{LEAD_CALL}"))
    assert f"Call {LEAD_CALL}" in html and "sign out" in html


@pytest.mark.parametrize("kwargs", [{"headers": {"X-Forwarded-Proto": "https"}}, {"base_url": "https://localhost"}],
                         ids=["behind-a-proxy", "direct"])
def test_the_cookie_is_secure_over_https(client, kwargs):
    resp = sign_in(client, **kwargs)
    assert resp.status_code == 303
    assert "Secure" in [f.strip() for f in resp.headers["Set-Cookie"].split(";")]


def test_a_wrong_token_gets_the_form_again_with_401(client):
    for wrong in ("wrong", ADMIN + "x", ADMIN[:-1], ""):
        resp = sign_in(client, wrong)
        assert resp.status_code == 401 and resp.mimetype == "text/html"
        assert "That is not the admin token." in resp.get_data(as_text=True)
        assert "Set-Cookie" not in resp.headers
    assert client.get("/admin").status_code == 303


def test_a_token_in_any_admin_url_is_refused_and_never_accepted(client):
    sign_in(client)
    for path in ("/admin", "/admin/login", "/admin/calls", "/admin/leads", f"/admin/calls/{LEAD_CALL}",
                 f"/admin/calls/{LEAD_CALL}/timeline.svg"):
        for value in (ADMIN, "wrong", ""):
            resp = client.get(path, query_string={"token": value})          # even while signed in
            assert resp.status_code == 400, (path, value)
            assert "sign in at /admin/login" in resp.get_data(as_text=True)
            assert "Authorization: Bearer" in resp.get_data(as_text=True)
    fresh = client.application.test_client()
    resp = fresh.post("/admin/login?token=" + ADMIN, data={"token": ADMIN})
    assert resp.status_code == 400 and "Set-Cookie" not in resp.headers


def test_signing_out_clears_the_cookie(signed_in):
    resp = signed_in.post("/admin/logout")
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/login"
    cleared = [f.strip() for f in resp.headers["Set-Cookie"].split(";")]
    assert cleared[0] == f"{COOKIE_NAME}=" and "Max-Age=0" in cleared and "Path=/admin" in cleared
    assert signed_in.get("/admin").status_code == 303


@pytest.mark.parametrize("cookie", [
    "v1.99999999999.forged", "", "garbage",
    issue(session_key(ADMIN), now_s=1_000_000),                            # expired long ago
    issue(session_key("the-previous-token"), now_s=2_000_000_000 - 43200),  # signed before a rotation
])
def test_a_bad_or_stale_cookie_is_not_a_session(client, cookie):
    client.set_cookie(COOKIE_NAME, cookie, path="/admin")
    assert client.get("/admin").status_code == 303
    assert client.get("/admin/calls").status_code == 401


def test_rotating_the_token_signs_everyone_out(app, tmp_path):
    client = app.test_client()
    sign_in(client)
    value = client.get_cookie(COOKIE_NAME, path="/admin").value
    assert client.get("/admin").status_code == 200
    rotated = make_app(tmp_path, token="a-brand-new-token").test_client()
    rotated.set_cookie(COOKIE_NAME, value, path="/admin")
    assert rotated.get("/admin").status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin", "/admin/../x\\y", "/other",
                                    "/adminx", "/admin//evil.example"])
def test_sign_in_never_redirects_off_the_admin_pages(client, target):
    resp = client.post("/admin/login", data={"token": ADMIN, "next": target})
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin"


def client_at(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failed_attempts_are_throttled_per_client(app):
    attacker = client_at(app, "203.0.113.9")
    for _ in range(5):
        assert sign_in(attacker, "guess").status_code == 401
        assert attacker.get("/admin/calls", headers={"Authorization": "Bearer guess"}).status_code == 401
    refused = sign_in(attacker)                       # the right token is not even checked now
    assert refused.status_code == 429 and "Set-Cookie" not in refused.headers
    assert 540 <= int(refused.headers["Retry-After"]) <= 600
    assert attacker.get("/admin/calls", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 429
    someone_else = client_at(app, "198.51.100.7")
    assert sign_in(someone_else).status_code == 303


# --- scripts: the bearer header --------------------------------------------------------------------

def test_bearer_works_on_every_admin_route(client):
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert client.get("/admin/calls", headers=auth).get_json()["total"] == 30
    assert client.get("/admin/leads", headers=auth).get_json()["outbox"] == {"pending": 1}
    assert len(call_links(page(client.get("/admin", headers=auth)))) == 25
    assert f"Call {LEAD_CALL}" in page(client.get(f"/admin/calls/{LEAD_CALL}", headers=auth))
    svg = client.get(f"/admin/calls/{LEAD_CALL}/timeline.svg", headers=auth)
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert "Set-Cookie" not in svg.headers


def test_json_calls_take_the_same_filters_and_paging(app, client):
    auth = {"Authorization": f"Bearer {ADMIN}"}
    ids = app.config["BUSINESS_IDS"]
    body = client.get("/admin/calls", headers=auth, query_string={"limit": 10, "page": 3}).get_json()
    assert (body["total"], body["page"], body["page_size"], len(body["calls"])) == (30, 3, 10, 10)
    assert [c["call_sid"] for c in body["calls"]] == [sid(i) for i in range(9, -1, -1)]
    body = client.get("/admin/calls", headers=auth, query_string={"business": ids[CLEANER]}).get_json()
    assert body["total"] == 10 and {c["business"] for c in body["calls"]} == {"Clean & Shine"}
    body = client.get("/admin/calls", headers=auth,
                      query_string={"business": ids[LOCKSMITH], "outcome": "lead_captured"}).get_json()
    assert body["total"] == 10 and {c["outcome"] for c in body["calls"]} == {"lead_captured"}
    for bad in ({"business": "abc"}, {"page": "0"}, {"page": "-1"}):
        assert client.get("/admin/calls", headers=auth, query_string=bad).status_code == 400


# --- the calls page --------------------------------------------------------------------------------

def test_the_calls_page_pages_by_25_with_a_total(signed_in):
    first = page(signed_in.get("/admin"))
    assert call_links(first) == [sid(i) for i in range(29, 19, -1)] + [LEAD_CALL] + [sid(i) for i in range(18, 4, -1)]
    assert "calls 1–25 of 30 · page 1 of 2" in first
    assert '<a rel=next href="/admin?page=2">next</a>' in first and "<span>previous</span>" in first
    second = page(signed_in.get("/admin?page=2"))
    assert call_links(second) == [sid(i) for i in range(4, -1, -1)]
    assert "calls 26–30 of 30 · page 2 of 2" in second
    assert '<a rel=prev href="/admin?page=1">previous</a>' in second and "<span>next</span>" in second
    assert call_links(page(signed_in.get("/admin?page=99"))) == call_links(second)
    bad = signed_in.get("/admin?page=abc")
    assert bad.status_code == 400 and "whole numbers from 1" in bad.get_data(as_text=True)


def test_the_calls_page_filters_by_business_and_outcome(app, signed_in):
    ids = app.config["BUSINESS_IDS"]
    html = page(signed_in.get("/admin"))
    assert f'<option value="{ids[CLEANER]}">Clean &amp; Shine (+97235550200)</option>' in html
    assert f'<option value="{ids[LOCKSMITH]}">מנעולן השרון (+97235550100)</option>' in html
    for outcome in ("lead_captured", "no_lead", "failed", "partial_lead", "in_progress"):
        assert f'<option value="{outcome}">{outcome}</option>' in html
    cleaner = page(signed_in.get("/admin", query_string={"business": ids[CLEANER]}))
    assert call_links(cleaner) == [sid(i) for i in range(29, 19, -1)] and "calls 1–10 of 10" in cleaner
    assert f'<option value="{ids[CLEANER]}" selected>' in cleaner
    both = page(signed_in.get("/admin", query_string={"business": ids[LOCKSMITH], "outcome": "no_lead", "page": 1}))
    assert call_links(both) == [sid(i) for i in range(18, -1, -2)] and "calls 1–10 of 10" in both
    assert '<option value="no_lead" selected>' in both
    none = page(signed_in.get("/admin", query_string={"outcome": "partial_lead"}))
    assert call_links(none) == [] and "No calls match." in none and "calls 0–0 of 0" in none


def test_paging_links_keep_the_filters():
    calls = [{"call_sid": sid(i), "started_at": "2030-01-01T00:00:00Z"} for i in range(3)]
    businesses = [{"id": 4, "name": "A & B", "number": "+1", "active": False}]
    html = index_page(calls, total=10, page=2, page_size=3, business_id=4, outcome="no_lead",
                      businesses=businesses, outcomes=["no_lead"], leads=[])
    assert "calls 4–6 of 10 · page 2 of 4" in html
    assert '<a rel=prev href="/admin?business=4&amp;outcome=no_lead&amp;page=1">previous</a>' in html
    assert '<a rel=next href="/admin?business=4&amp;outcome=no_lead&amp;page=3">next</a>' in html
    assert '<option value="4" selected>A &amp; B (+1) - inactive</option>' in html


def test_the_calls_page_lists_recent_leads_escaped(signed_in):
    html = page(signed_in.get("/admin"))
    assert EVIL not in html and "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html
    assert f'<a href="/admin/calls/{LEAD_CALL}">{LEAD_CALL}</a>' in html and "<td>pending×0</td>" in html


def test_admin_responses_are_not_cached_and_run_no_script(signed_in):
    resp = signed_in.get("/admin")
    assert resp.headers["Cache-Control"] == "no-store"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    svg = signed_in.get(f"/admin/calls/{LEAD_CALL}/timeline.svg")
    assert svg.headers["Cache-Control"] == "no-store" and "default-src 'none'" in svg.headers["Content-Security-Policy"]


# --- one call --------------------------------------------------------------------------------------

def test_the_call_page_shows_figures_picture_transcript_and_lead(signed_in):
    html = page(signed_in.get(f"/admin/calls/{LEAD_CALL}"))
    assert EVIL not in html
    assert "<tr><th>business</th><td>מנעולן השרון</td></tr>" in html
    assert "<tr><th>outcome</th><td>lead_captured</td></tr>" in html
    assert "<tr><th>duration</th><td>18.2 s</td></tr>" in html
    assert "<tr><th>reply latencies (ms)</th><td>740, 910</td></tr>" in html
    assert f'<img id=timeline src="/admin/calls/{LEAD_CALL}/timeline.svg"' in html
    assert '<tr><th>AI</th><td dir="auto">שלום, הגעתם למנעולן השרון</td></tr>' in html
    assert ('<tr><th>caller</th><td dir="auto">אני צריך התקנת מנעול חכם &lt;script&gt;alert(1)&lt;/script&gt;'
            '</td></tr>') in html
    assert '<tr><th>name</th><td dir="auto">&lt;script&gt;alert(1)&lt;/script&gt;</td></tr>' in html
    assert '<tr><th>notes</th><td dir="auto">דחוף &amp; מהר</td></tr>' in html
    assert re.search(r"<td>dlv_[0-9a-f]{32}</td><td>pending</td><td>0</td>", html)
    assert "<b>AI playout</b>" in html                  # what the lanes mean


def test_a_call_without_lead_or_timeline(signed_in):
    html = page(signed_in.get(f"/admin/calls/{sid(3)}"))
    assert "No lead was captured on this call." in html and "No transcript." in html
    assert "No timeline was recorded for this call." in html
    svg = signed_in.get(f"/admin/calls/{sid(3)}/timeline.svg")
    assert svg.status_code == 200 and ET.fromstring(svg.data).get("data-empty") == "true"


def test_the_picture_matches_the_stored_timeline(signed_in):
    resp = signed_in.get(f"/admin/calls/{LEAD_CALL}/timeline.svg")
    assert resp.status_code == 200 and resp.content_type == "image/svg+xml; charset=utf-8"
    root = ET.fromstring(resp.data)
    drawn = Counter(el.get("data-lane") for el in root.iter() if el.get("data-kind") is not None)
    stored = Counter(item["lane"] for item in EXAMPLE["spans"] + EXAMPLE["events"]) + Counter(latency=1)
    assert drawn == stored
    assert f"{LEAD_CALL} · מנעולן השרון" in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize("path", ["/admin/calls/CA404", "/admin/calls/CA404/timeline.svg",
                                  "/admin/calls/%3Cscript%3E"])
def test_an_unknown_call_is_404(signed_in, path):
    resp = signed_in.get(path)
    assert resp.status_code == 404 and b"<script>" not in resp.data


# --- the cookie and the throttle, on fake time -----------------------------------------------------

def test_a_session_lasts_twelve_hours_and_only_under_its_key():
    from server.web.admin_session import valid
    key = session_key(ADMIN)
    cookie = issue(key, now_s=1_700_000_000)
    assert valid(key, cookie, now_s=1_700_000_000) and valid(key, cookie, now_s=1_700_000_000 + 43199)
    assert not valid(key, cookie, now_s=1_700_000_000 + 43200)
    assert not valid(session_key(ADMIN + "2"), cookie, now_s=1_700_000_000)
    expires, mac = cookie.split(".")[1:]
    assert not valid(key, f"v1.{int(expires) + 1}.{mac}", now_s=1_700_000_000)        # the time is signed
    far = issue(key, now_s=1_700_000_000, ttl_s=10 * 43200)                           # never longer than 12 h
    assert not valid(key, far, now_s=1_700_000_000)


def test_the_throttle_counts_failures_in_a_sliding_window():
    from server.web.admin_session import FailureThrottle
    throttle = FailureThrottle(limit=3, window_ms=60_000, max_clients=2)
    now = 0
    for _ in range(3):
        assert throttle.retry_after_ms("a", now) == 0
        throttle.failed("a", now)
        now += 10_000
    assert throttle.retry_after_ms("a", now) == 30_000          # the first failure (t=0) ages out at 60 s
    assert throttle.retry_after_ms("b", now) == 0
    now = 60_000
    assert throttle.retry_after_ms("a", now) == 0               # one attempt back
    throttle.failed("a", now)
    assert throttle.retry_after_ms("a", now) == 10_000
    throttle.failed("b", now)
    throttle.failed("c", now)                                     # only two clients are remembered: "a" goes
    assert throttle.retry_after_ms("a", now) == 0


# --- bad numbers: 400, never 500 ------------------------------------------------------------------

BAD_NUMBERS = ["10" + "0" * 30, "1e30", "10^30", "-1", "0", "abc", "1.5", "0x10", "١٢", "1_000", "nan", "inf",
               "9" * 13, "+", "", " ", "2147483648", "1000000001", "%00", "1 2"]


@pytest.mark.parametrize("path", ["/admin", "/admin/calls", "/admin/leads"])
def test_every_number_parameter_answers_400_for_a_bad_number_never_500(client, path):
    auth = {"Authorization": f"Bearer {ADMIN}"}
    params = {"/admin": ["page", "business"], "/admin/calls": ["page", "business", "limit"],
              "/admin/leads": ["limit"]}[path]
    for name in params + ["outcome", "next", "unknown"]:
        for value in BAD_NUMBERS:
            resp = client.get(path, headers=auth, query_string={name: value})
            assert resp.status_code in (200, 400), (path, name, value, resp.status_code)
            if name in params and value.strip() not in ("",):
                assert resp.status_code == 400, (path, name, value)
    assert client.get("/admin/calls", headers=auth, query_string={"page": "1000000000"}).status_code == 200
    assert client.get("/healthz", query_string={"perf": "10^30"}).status_code == 200


def test_the_costs_per_business_and_day_need_the_token_and_count_every_call(client):
    assert client.get("/admin/costs").status_code == 401
    resp = client.get("/admin/costs?days=7", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200 and resp.json["days"] == 7
    assert sorted((d["business"], d["calls"], d["unknown"]) for d in resp.json["costs"]) == [
        ("Clean & Shine", 10, 10), ("מנעולן השרון", 20, 20)]      # no usage recorded: the cost is unknown
    assert client.get("/admin/costs?days=x", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 400


def test_a_browser_gets_the_costs_as_a_page_and_a_script_as_json(client):
    browser = {"Authorization": f"Bearer {ADMIN}",
               "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    page = client.get("/admin/costs?days=7", headers=browser)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<h2>Per business</h2>" in html and "<h2>Per day</h2>" in html and "מנעולן השרון" in html
    assert 'value="7"' in html
    assert client.get("/admin/costs", headers={"Accept": "text/html"}).status_code in (303, 302)   # sign in first
    assert client.get("/admin/costs?days=x", headers=browser).mimetype == "text/html"
    scripted = client.get("/admin/costs", headers={"Authorization": f"Bearer {ADMIN}", "Accept": "*/*"})
    assert scripted.mimetype == "application/json"
    index = client.get("/admin", headers={"Authorization": f"Bearer {ADMIN}"}).get_data(as_text=True)
    assert 'href="/admin/costs"' in index and "<th>cost_usd</th>" in index
