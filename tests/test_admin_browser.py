"""The admin pages in a real headless Chromium: sign in through the form, follow a call, see its
timeline picture drawn and matching the stored timeline, and the session cookie's flags.

The server is the real Flask app served by werkzeug on loopback in a thread, over a store holding
one call with a synthetic timeline. Without Chromium the test skips, saying so, unless
``PROSAAS_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""
import os
import threading
import time
from collections import Counter

import pytest
from werkzeug.serving import make_server

from server.app import create_app
from server.leads.capture import LeadSnapshot
from server.settings import Settings
from server.storage.db import Store
from tests.browser import Browser, find_chromium
from tests.test_timeline_svg import EXAMPLE

ADMIN = "browser-admin-token-5150"
CALL = "CA" + "5" * 32
LOCKSMITH = "+97235550100"
LEAD = LeadSnapshot("complete", "התקנת מנעול חכם", "רמת גן", True, "דנה", "+972501234567", "", (),
                    {"service": "tool", "city": "tool", "name": "tool", "phone": "caller_id"})


@pytest.fixture()
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = ("chromium is not installed (apt-get install -y chromium, or set PROSAAS_CHROMIUM): "
                  "the admin pages were not tried in a browser")
        if os.environ.get("PROSAAS_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " and PROSAAS_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    return binary


@pytest.fixture()
def server(tmp_path):
    url = f"sqlite:///{tmp_path}/browser.sqlite3"
    app = create_app(Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_SIGNATURE_VALIDATION": "off",
                                        "OUTBOX_WORKER": "off", "DATABASE_URL": url, "ADMIN_TOKEN": ADMIN}))
    store = Store(url)
    business_id = store.business_for(LOCKSMITH)[0]
    store.call_started(CALL, "MZ" + "6" * 32, business_id, LOCKSMITH, "+97250*****67")
    store.call_ended(CALL, "lead_captured", "goodbye", 1, 2, 1, [750],
                     [("assistant", "שלום, הגעתם למנעולן השרון"), ("user", "אני צריך התקנת מנעול חכם")],
                     timeline=EXAMPLE)
    store.save_lead(CALL, LEAD, ("https://crm.example.com/leads", "CRM_SECRET_LOCKSMITH"))
    store.close()
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="admin-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


PARSE_PICTURE = """
(async () => {
  const img = document.querySelector('img#timeline');
  const resp = await fetch(img.src);
  const doc = new DOMParser().parseFromString(await resp.text(), 'image/svg+xml');
  const items = [...doc.querySelectorAll('[data-kind]')].map(el => ({
    lane: el.getAttribute('data-lane'), kind: el.getAttribute('data-kind'),
    from: el.getAttribute('data-from-ms'), to: el.getAttribute('data-to-ms'), t: el.getAttribute('data-t-ms')}));
  return {status: resp.status, type: resp.headers.get('content-type'),
          broken: doc.getElementsByTagName('parsererror').length, root: doc.documentElement.localName,
          width: Number(doc.documentElement.getAttribute('width')), items};
})()
"""


def test_sign_in_follow_a_call_and_see_its_timeline(chromium, server, tmp_path):
    with Browser(chromium) as browser:
        page = browser.new_page()
        assert page.goto(server + "/admin") == server + "/admin/login?next=%2Fadmin"
        assert page.evaluate("document.querySelector('form').method") == "post"

        page.type_into("input[name=token]", ADMIN)
        assert page.click_and_wait_load("form button[type=submit]") == server + "/admin"
        assert page.evaluate("document.querySelectorAll('#calls a.call-link').length") == 1
        assert page.evaluate("document.querySelector('#paging').textContent").startswith("calls 1–1 of 1")

        assert page.click_and_wait_load("#calls a.call-link") == f"{server}/admin/calls/{CALL}"
        page.wait_for("document.querySelector('img#timeline').complete")
        shown = page.evaluate("(() => { const img = document.querySelector('img#timeline');"
                              " const box = img.getBoundingClientRect();"
                              " return {natural: img.naturalWidth, width: box.width, height: box.height}; })()")
        assert shown["natural"] > 0 and shown["width"] > 0 and shown["height"] > 0, shown
        assert page.evaluate("getComputedStyle(document.querySelector('#transcript td[dir=auto]')).direction") == "rtl"

        picture = page.evaluate(PARSE_PICTURE, await_promise=True)
        assert (picture["status"], picture["type"], picture["broken"], picture["root"]) == (
            200, "image/svg+xml; charset=utf-8", 0, "svg")
        assert picture["width"] == shown["natural"]
        items = picture["items"]
        stored = EXAMPLE["spans"] + EXAMPLE["events"]
        assert Counter(i["lane"] for i in items if i["lane"] != "latency") == Counter(s["lane"] for s in stored)
        assert Counter((i["lane"], i["kind"]) for i in items if i["lane"] != "latency") == \
            Counter((s["lane"], s["kind"]) for s in stored)
        assert sorted((i["lane"], i["kind"], int(i["from"]), int(i["to"])) for i in items
                      if i["from"] is not None and i["lane"] != "latency") == \
            sorted((s["lane"], s["kind"], s["from_ms"], s["to_ms"]) for s in EXAMPLE["spans"])
        assert sorted((i["lane"], i["kind"], int(i["t"])) for i in items if i["t"] is not None) == \
            sorted((e["lane"], e["kind"], e["t_ms"]) for e in EXAMPLE["events"])
        assert [(i["from"], i["to"]) for i in items if i["lane"] == "latency"] == [("2900", "3650")]

        [cookie] = [c for c in page.cookies(server + "/admin") if c["name"] == "prosaas_admin"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["secure"]) == (
            True, "Strict", "/admin", False)
        assert 11.9 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
        assert page.evaluate("document.cookie") == ""          # HttpOnly: no script can read it
        requested = page.requested_urls()
        assert any(u.endswith("/timeline.svg") for u in requested)
        assert not [u for u in requested if ADMIN in u]         # the token was typed, never in a URL
        page.screenshot(tmp_path / "call_page.png")


def test_a_real_calls_page_shows_its_timeline(chromium, tmp_path):
    """A whole simulated call on the real server (gunicorn, simulators), then its admin page in the
    browser: the picture drawn from what the call really recorded, element for element."""
    from sim import scenario as scenario_mod
    from sim.loopback import ADMIN_TOKEN, LoopbackCall
    with LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log") as loop:
        record = loop.call(max_duration_s=60)
        loop.wait_idle(timeout_s=5)
        detail = loop.store().call_detail(record.call_sid)
        stored, usage = detail["timeline"], detail["call"]["usage"]
        with Browser(chromium) as browser:
            page = browser.new_page()
            page.goto(loop.base_url + "/admin")
            page.type_into("input[name=token]", ADMIN_TOKEN)
            assert page.click_and_wait_load("form button[type=submit]") == loop.base_url + "/admin"
            assert page.click_and_wait_load("#calls a.call-link") == f"{loop.base_url}/admin/calls/{record.call_sid}"
            page.wait_for("document.querySelector('img#timeline').complete")
            assert page.evaluate("document.querySelector('img#timeline').naturalWidth") > 0
            picture = page.evaluate(PARSE_PICTURE, await_promise=True)
            cost_rows = page.evaluate("[...document.querySelectorAll('#cost tr')].map(r => r.textContent)")
            page.goto(loop.base_url + "/admin")
            assert page.click_and_wait_load('a[href="/admin/costs"]') == loop.base_url + "/admin/costs"
            per_business = page.evaluate("[...document.querySelectorAll('table')[0].querySelectorAll('tr')]"
                                         ".map(r => [...r.cells].map(c => c.textContent))")
    # What the call cost, as its page shows it, and the day's total on the costs page.
    assert f"total${usage['cost']['total_usd']:.4f}" in cost_rows
    assert f"tokens: output_audio{usage['tokens']['output_audio']}" in cost_rows and usage["tokens"]["output_audio"] > 0
    assert per_business[0][:4] == ["business", "calls", "minutes", "cost_usd"]
    assert [row[1] for row in per_business[1:]] == ["1"] and per_business[1][3] == f"${usage['cost']['total_usd']:.4f}"
    items = [i for i in picture["items"] if i["lane"] != "latency"]
    recorded = stored["spans"] + stored["events"]
    assert picture["broken"] == 0 and len(items) == len(recorded) > 10
    assert Counter((i["lane"], i["kind"]) for i in items) == Counter((s["lane"], s["kind"]) for s in recorded)
    lanes = {i["lane"] for i in items}
    assert {"caller", "gate", "model", "playout"} <= lanes
    answered = [x for x in stored["latencies"] if "first_audio_ms" in x]
    assert [(int(i["from"]), int(i["to"])) for i in picture["items"] if i["lane"] == "latency"] == \
        [(x["eou_ms"], x["first_audio_ms"]) for x in answered]
