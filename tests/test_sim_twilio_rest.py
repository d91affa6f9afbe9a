"""The Twilio REST simulator: auth, Twilio's error shapes and codes, Messages, and what a Calls update
does to a live simulated call (the caller simulator against a stub voice application, real time)."""
import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from sim.scenario import Scenario, Step
from sim.twilio_caller import TwilioCaller
from sim.twiml_runner import MAX_DOCUMENTS, CallOver, Interrupted, OpenStream, TwimlRunner
from sim.twilio_rest import CallUpdate, TwilioRestSimulator
from tests.stub_voice_app import StubVoiceApp

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "rest-sim-token"
CALL = "CA" + "ab" * 16


@pytest.fixture
def sim():
    with TwilioRestSimulator(ACCOUNT, TOKEN) as s:
        yield s


def post(sim, path, params=None, user=ACCOUNT, password=TOKEN, method="POST"):
    """(HTTP status, JSON body) of one request, with Basic auth unless ``user`` is None."""
    data = urllib.parse.urlencode(params or {}).encode() if method == "POST" else None
    req = urllib.request.Request(sim.base_url + path, data=data, method=method)
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def call_path(sid=CALL, account=ACCOUNT):
    return f"/2010-04-01/Accounts/{account}/Calls/{sid}.json"


def messages_path(account=ACCOUNT):
    return f"/2010-04-01/Accounts/{account}/Messages.json"


# --- auth and error shapes -------------------------------------------------------------------------

def test_missing_or_wrong_credentials_and_a_foreign_account_answer_20003(sim):
    sim.register_call(CALL, "+972501234567", "+97235550100")
    missing = post(sim, call_path(), {"Status": "completed"}, user=None)
    assert missing == (401, {"code": 20003, "message": "Authentication Error - No credentials provided",
                             "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401,
                             "detail": "Your AccountSid or AuthToken was incorrect."})
    assert post(sim, call_path(), {"Status": "completed"}, password="wrong")[1]["code"] == 20003
    other = "AC" + "f" * 32
    assert post(sim, call_path(account=other), {"Status": "completed"})[0] == 401
    assert post(sim, call_path(account=other), {"Status": "completed"}, user=other)[0] == 401
    assert sim.call(CALL).status == "in-progress"              # none of them touched the call
    assert [(r.status, r.code) for r in sim.requests] == [(401, 20003)] * 4


def test_unknown_call_and_unknown_path_answer_20404(sim):
    status, body = post(sim, call_path("CA" + "0" * 32), {"Status": "completed"})
    assert (status, body) == (404, {"code": 20404, "message": f"The requested resource {call_path('CA' + '0' * 32)} "
                                    "was not found", "more_info": "https://www.twilio.com/docs/errors/20404",
                                    "status": 404})
    assert post(sim, f"/2010-04-01/Accounts/{ACCOUNT}/Queues.json", {})[1]["code"] == 20404


# --- Calls update on a registered call ---------------------------------------------------------------

def test_completed_ends_the_call_once_then_21220(sim):
    got = []
    sim.register_call(CALL, "+972501234567", "+97235550100", lambda u: got.append(u) or True)
    status, body = post(sim, call_path(), {"Status": "completed"})
    assert status == 200 and got == [CallUpdate(status="completed")]
    assert {k: body[k] for k in ("sid", "account_sid", "status", "to", "from", "direction", "api_version", "uri")} == {
        "sid": CALL, "account_sid": ACCOUNT, "status": "completed", "to": "+97235550100", "from": "+972501234567",
        "direction": "inbound", "api_version": "2010-04-01", "uri": call_path()}
    assert body["end_time"] and body["date_created"].endswith("+0000")
    again = post(sim, call_path(), {"Twiml": "<Response><Say>hi</Say></Response>"})
    assert again == (400, {"code": 21220, "message": "Call is not in-progress. Cannot redirect.",
                           "more_info": "https://www.twilio.com/docs/errors/21220", "status": 400})
    assert len(got) == 1


def test_canceled_does_not_touch_an_in_progress_call_and_url_wins_over_twiml(sim):
    got = []
    sim.register_call(CALL, "+972501234567", "+97235550100", lambda u: got.append(u) or True)
    status, body = post(sim, call_path(), {"Status": "canceled"})
    assert (status, body["status"], got) == (200, "in-progress", [])
    status, body = post(sim, call_path(), {"Twiml": "<Response/>", "Url": "https://app.example/next"})
    assert (status, body["status"]) == (200, "in-progress")
    assert got == [CallUpdate(url="https://app.example/next", method="POST")]
    assert sim.warnings == [(32019, CALL)]
    assert post(sim, call_path(), {"Url": "ftp://x/y"})[1]["code"] == 21205
    assert post(sim, call_path(), method="GET")[1]["sid"] == CALL


def test_a_call_whose_player_is_gone_answers_21220(sim):
    sim.register_call(CALL, "+972501234567", "+97235550100", lambda u: False)
    assert post(sim, call_path(), {"Status": "completed"})[1]["code"] == 21220
    assert sim.call(CALL).status == "completed"


# --- Messages --------------------------------------------------------------------------------------

def test_messages_are_created_recorded_and_validated(sim):
    status, body = post(sim, messages_path(), {"To": "+972501234567", "From": "+97235550100", "Body": "שלום"})
    assert status == 201 and body["sid"].startswith("SM") and len(body["sid"]) == 34
    assert (body["to"], body["from"], body["body"], body["status"]) == ("+972501234567", "+97235550100", "שלום", "queued")
    assert sim.messages == [body]
    assert post(sim, messages_path(), {"To": "0501234567", "From": "+97235550100", "Body": "x"}) == (400, {
        "code": 21211, "message": "The 'To' number 0501234567 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
    assert post(sim, messages_path(), {"From": "+97235550100", "Body": "x"})[1]["code"] == 21604
    assert post(sim, messages_path(), {"To": "+972501234567", "Body": "x"})[1]["code"] == 21603
    assert post(sim, messages_path(), {"To": "+972501234567", "From": "+97235550100"})[1]["code"] == 21602
    assert len(sim.messages) == 1
    assert [r.params.get("To") for r in sim.requests] == ["+972501234567", "0501234567", None, "+972501234567",
                                                         "+972501234567"]


# --- effects on a live simulated call ------------------------------------------------------------------

@pytest.fixture
def app():
    stub = StubVoiceApp(TOKEN).start()
    yield stub
    stub.stop()


def place_call(app, sim, dial_outcome="answered", steps=None):
    """A caller on the line (silence, 20 s at most) in its own thread, once its stream has started."""
    scenario = Scenario("rest", "", [], 0, steps or [Step("silence_ms", duration_ms=20000)])
    caller = TwilioCaller(app.url, scenario, TOKEN, rest=sim, dial_outcome=dial_outcome, webhook_path="/voice")
    thread = threading.Thread(target=caller.run, kwargs={"max_duration_s": 25}, daemon=True)
    thread.start()
    assert app.wait(lambda: app.started(0))
    return caller, thread


def finish(thread):
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_completed_stops_the_stream_and_skips_the_twiml_after_connect(app, sim):
    caller, thread = place_call(app, sim)
    assert post(sim, call_path(caller.record.call_sid), {"Status": "completed"})[0] == 200
    finish(thread)
    record = caller.record
    assert app.events(0)[-1] == "stop"
    stop = app.streams[0][-1]["stop"]
    assert (stop["callSid"], stop["accountSid"]) == (record.call_sid, ACCOUNT)
    assert record.ended_by_rest and record.hung_up_by == "server"
    assert [what for _, what in record.rest_updates] == ["completed"]
    assert record.after_stream == [] and app.fetches == []            # /after never requested
    assert post(sim, call_path(record.call_sid), {"Status": "completed"})[1]["code"] == 21220


@pytest.mark.parametrize("outcome,status", [("no-answer", "no-answer"), ("busy", "busy"), ("answered", "completed")])
def test_a_dial_follows_its_action_with_the_dial_call_status(app, sim, outcome, status):
    caller, thread = place_call(app, sim, dial_outcome=outcome)
    twiml = (f'<Response><Say>מעבירה אותך</Say><Dial callerId="+97235550100" timeout="20" action="{app.url}/action">'
             '<Number>+972521112222</Number></Dial><Say>unreachable</Say></Response>')
    assert post(sim, call_path(caller.record.call_sid), {"Twiml": twiml})[1]["status"] == "in-progress"
    finish(thread)
    record = caller.record
    assert app.events(0)[-1] == "stop" and not record.ended_by_rest
    (dial,) = record.dials
    assert (dial.number, dial.caller_id, dial.timeout_s, dial.outcome) == ("+972521112222", "+97235550100", 20, outcome)
    (path, params, signed), = app.fetches
    assert path == "/action" and signed and params["CallSid"] == record.call_sid
    assert params["DialCallStatus"] == status and params["DialCallSid"].startswith("CA")
    assert ("DialCallDuration" in params) == (outcome == "answered")
    assert record.after_stream == [("Say", "מעבירה אותך"), ("Dial", f"+972521112222 {outcome}"),
                                   ("Say", "action answer"), ("Hangup", "")]


def test_a_dial_without_action_goes_on_with_the_document(app, sim):
    caller, thread = place_call(app, sim, dial_outcome="busy")
    post(sim, call_path(caller.record.call_sid), {"Twiml": "<Response><Dial>+972521112222</Dial><Say>busy</Say></Response>"})
    finish(thread)
    assert caller.record.after_stream == [("Dial", "+972521112222 busy"), ("Say", "busy")]
    assert caller.record.dials[0].timeout_s == 30 and caller.record.dials[0].caller_id is None
    assert sim.call(caller.record.call_sid).status == "completed"      # out of verbs: Twilio hangs up


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_an_update_with_a_url_fetches_it_signed(app, sim, method):
    caller, thread = place_call(app, sim)
    post(sim, call_path(caller.record.call_sid), {"Url": f"{app.url}/next", "Method": method})
    finish(thread)
    (path, params, signed), = app.fetches
    assert caller.record.twiml_requests[0][:2] == (f"{app.url}/next", method)
    assert (path, signed, params["CallSid"], params["AccountSid"]) == ("/next", True, caller.record.call_sid, ACCOUNT)
    assert caller.record.after_stream == [("Say", "from the url"), ("Hangup", "")]
    assert [what for _, what in caller.record.rest_updates] == [f"url {app.url}/next"]


def test_connect_stream_in_followed_twiml_opens_a_new_stream_then_runs_what_follows(app, sim):
    caller, thread = place_call(app, sim)
    twiml = f'<Response><Connect><Stream url="{app.ws_url}"/></Connect><Say>back again</Say></Response>'
    post(sim, call_path(caller.record.call_sid), {"Twiml": twiml})
    assert app.wait(lambda: app.started(1))
    assert app.events(0)[-1] == "stop"
    first, second = app.streams[0], app.streams[1]
    start = next(m for m in second if m["event"] == "start")
    assert start["start"]["callSid"] == caller.record.call_sid and start["sequenceNumber"] == "1"
    assert start["streamSid"] != first[1]["streamSid"]
    app.close_stream(1)                                  # the application ends the new stream
    finish(thread)
    assert caller.record.streams == [first[1]["streamSid"], start["streamSid"]]
    assert caller.record.after_stream == [("Say", "back again")]
    assert caller.record.frames_sent > 0 and caller.record.violations == []


def test_the_stream_closed_by_the_application_still_runs_the_twiml_after_connect(app, sim):
    caller, thread = place_call(app, sim)
    app.close_stream(0)
    finish(thread)
    assert caller.record.hung_up_by == "server" and caller.record.after_stream == [("Hangup", "")]
    assert [(p, signed) for p, _, signed in app.fetches] == [("/after", True)]
    assert post(sim, call_path(caller.record.call_sid), {"Status": "completed"})[1]["code"] == 21220


def test_a_caller_who_hung_up_leaves_a_call_that_answers_21220(app, sim):
    caller, thread = place_call(app, sim, steps=[Step("silence_ms", duration_ms=200)])
    finish(thread)
    assert caller.record.hung_up_by == "caller" and app.events(0)[-1] == "stop"
    assert post(sim, call_path(caller.record.call_sid), {"Status": "completed"})[1]["code"] == 21220


# --- the TwiML runner alone (fetches faked) ------------------------------------------------------------

def runner(documents, **kw):
    heard, dials, fetched = [], [], []

    def fetch(url, method, extra):
        fetched.append((url, method, extra))
        if url not in documents:
            raise OSError(f"HTTP 404 for {url}")
        return documents[url]
    return TwimlRunner(fetch, heard, dials, **kw), heard, dials, fetched


def test_redirects_resolve_relative_urls_and_a_loop_is_bounded():
    loop = {"http://app/a/one": '<Response><Say>one</Say><Redirect method="GET">two</Redirect></Response>',
            "http://app/a/two": "<Response><Redirect>/a/one</Redirect></Response>"}
    run, heard, _, fetched = runner(loop)
    assert run.run_url("http://app/a/one") == CallOver("TwiML fetch failed")
    assert fetched[:3] == [("http://app/a/one", "POST", {}), ("http://app/a/two", "GET", {}),
                           ("http://app/a/one", "POST", {})]
    assert len(fetched) == MAX_DOCUMENTS and heard[-1] == ("Error", f"more than {MAX_DOCUMENTS} TwiML documents in a row")


def test_bad_twiml_a_failed_fetch_and_a_waiting_update():
    run, heard, _, _ = runner({})
    assert run.run_twiml("<Response><Say>unclosed</Response>") == CallOver("invalid TwiML")
    assert run.run_twiml("<Hangup/>") == CallOver("invalid TwiML")
    assert run.run_url("http://app/missing") == CallOver("TwiML fetch failed")
    assert [tag for tag, _ in heard] == ["Error", "Error", "Error"] and "HTTP 404" in heard[-1][1]
    waiting = [False, True]
    run, heard, _, _ = runner({}, pending=lambda: waiting.pop(0))
    assert run.run_twiml("<Response><Say>first</Say><Say>second</Say></Response>") == Interrupted()
    assert heard == [("Say", "first")]


def test_connect_stream_keeps_what_follows_for_when_the_stream_ends():
    run, heard, _, _ = runner({})
    twiml = ('<Response><Connect><Stream url="wss://app/media"><Parameter name="k" value="v"/></Stream></Connect>'
             '<Say>after</Say></Response>')
    assert run.run_twiml(twiml) == OpenStream("wss://app/media", {"k": "v"})
    assert run.resume() == CallOver("end of TwiML") and heard == [("Say", "after")]
    assert run.resume() == CallOver("no TwiML after <Connect>") and heard[-1] == ("Hangup", "(no TwiML after <Connect>)")
    with pytest.raises(ValueError, match="dial_outcome"):
        runner({}, dial_outcome="maybe")
