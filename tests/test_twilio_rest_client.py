"""The server's Twilio REST client against the REST simulator: it really reaches TWILIO_API_BASE_URL
through the ``twilio`` library, and every failure is a result with Twilio's code, never an exception;
its settings; and one real call on loopback ended through the API."""
import logging
import socket
import threading
from pathlib import Path

import pytest

from server.settings import Secret, Settings, SettingsError
from server.adapters.twilio_rest import RestResult, TwilioRest
from sim.loopback import AUTH_TOKEN, SIM_ACCOUNT_SID, LoopbackCall
from sim.scenario import Scenario, Step
from sim.twilio_rest import CallUpdate, TwilioRestSimulator

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "client-test-token-4242"
CALL = "CA" + "cd" * 16
README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def sim():
    with TwilioRestSimulator(ACCOUNT, TOKEN) as s:
        yield s


@pytest.fixture
def delivered(sim):
    got: list[CallUpdate] = []
    sim.register_call(CALL, "+972501234567", "+97235550100", lambda u: got.append(u) or True)
    return got


def client(sim, token=TOKEN, **kw) -> TwilioRest:
    return TwilioRest(ACCOUNT, Secret(token), sim.base_url, **kw)


def test_complete_reaches_the_simulator_and_ends_the_call(sim, delivered):
    result = client(sim).complete(CALL)
    assert result == RestResult(True, sid=CALL, status="completed")
    assert delivered == [CallUpdate(status="completed")]
    (request,) = sim.requests
    assert (request.path, request.params, request.account_sid) == (
        f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json", {"Status": "completed"}, ACCOUNT)
    again = client(sim).complete(CALL)
    assert (again.ok, again.code, again.http_status, again.call_already_over) == (False, 21220, 400, True)


def test_redirect_sends_the_twiml_unchanged(sim, delivered):
    twiml = '<Response><Say language="he-IL">מעבירה אותך לנציג</Say><Dial>+972521112222</Dial></Response>'
    result = client(sim).redirect(CALL, twiml)
    assert (result.ok, result.status) == (True, "in-progress")
    assert delivered == [CallUpdate(twiml=twiml)]


def test_unknown_call_and_bad_credentials_are_results_with_twilios_code(sim, delivered):
    unknown = client(sim).complete("CA" + "0" * 32)
    assert (unknown.ok, unknown.code, unknown.http_status, unknown.failure) == (False, 20404, 404, "twilio")
    refused = client(sim, token="not-the-token").complete(CALL)
    assert (refused.ok, refused.code, refused.http_status) == (False, 20003, 401)
    assert delivered == [] and sim.call(CALL).status == "in-progress"


def test_sms_is_sent_and_an_invalid_number_is_21211_logged_masked(sim, caplog):
    caplog.set_level(logging.INFO, logger="server.adapters.twilio_rest")
    sent = client(sim).send_sms("+972501234567", "+97235550100", "הפרטים נשמרו")
    assert sent.ok and sent.sid.startswith("SM") and sent.status == "queued"
    assert [(m["to"], m["from"], m["body"]) for m in sim.messages] == [("+972501234567", "+97235550100", "הפרטים נשמרו")]
    bad = client(sim).send_sms("0501234567", "+97235550100", "x")
    assert (bad.ok, bad.code, bad.failure) == (False, 21211, "twilio") and "******4567" in bad.message
    assert "0501234567" not in caplog.text and "+972501234567" not in caplog.text and TOKEN not in caplog.text
    assert "+97******4567" in caplog.text and "code=21211" in caplog.text


def test_unreachable_and_silent_apis_are_results_within_the_timeout():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = TwilioRest(ACCOUNT, Secret(TOKEN), f"http://127.0.0.1:{port}").complete(CALL)
    assert (refused.ok, refused.failure, refused.code) == (False, "unreachable", None)
    with socket.socket() as silent:                        # accepts (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        api = TwilioRest(ACCOUNT, Secret(TOKEN), f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3)
        stalled = api.redirect(CALL, "<Response/>")
    assert (stalled.ok, stalled.failure, stalled.code) == (False, "timeout", None)


def test_the_default_base_url_is_twilios_and_edges_cannot_move_it(monkeypatch):
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    api = TwilioRest(ACCOUNT, Secret(TOKEN))
    assert api._client.api.base_url == "https://api.twilio.com"
    assert api._client.get_hostname("https://api.twilio.com/x") == "https://api.twilio.com/x"


# --- settings ---------------------------------------------------------------------------------------

BASE = {"OPENAI_API_KEY": "sk-test", "TWILIO_AUTH_TOKEN": TOKEN}


def test_settings_build_the_client_only_with_an_account_sid(sim, delivered):
    assert TwilioRest.from_settings(Settings.from_env(BASE)) is None
    settings = Settings.from_env({**BASE, "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_API_BASE_URL": sim.base_url + "/"})
    assert (settings.twilio_account_sid, settings.twilio_api_base_url) == (ACCOUNT, sim.base_url)
    assert TwilioRest.from_settings(settings).complete(CALL).ok and delivered
    assert Settings.from_env(BASE).twilio_api_base_url == "https://api.twilio.com"


def test_settings_check_the_sid_the_token_and_the_url():
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"OPENAI_API_KEY": "sk", "TWILIO_SIGNATURE_VALIDATION": "off",
                           "TWILIO_ACCOUNT_SID": "AC123", "TWILIO_API_BASE_URL": "ftp://api.example/x"})
    text = str(exc.value)
    assert "TWILIO_ACCOUNT_SID='AC123' is not an account SID" in text
    assert "TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not" in text
    assert "TWILIO_API_BASE_URL='ftp://api.example/x'" in text
    with pytest.raises(SettingsError, match="TWILIO_API_BASE_URL='https://api.example/2010-04-01'"):
        Settings.from_env({**BASE, "TWILIO_API_BASE_URL": "https://api.example/2010-04-01"})
    assert TOKEN not in repr(Settings.from_env({**BASE, "TWILIO_ACCOUNT_SID": ACCOUNT}))


def test_readme_documents_the_rest_settings():
    assert "`TWILIO_ACCOUNT_SID`" in README and "`TWILIO_API_BASE_URL`" in README


# --- one real call on loopback --------------------------------------------------------------------

def test_a_loopback_call_ended_through_the_api(tmp_path):
    scenario = Scenario("rest_complete", "ended through the REST API", ["ai_greeting"], 0,
                        [Step("wait_ai_audio", timeout_ms=15000), Step("silence_ms", duration_ms=20000)], speedup=20)
    playing, out = threading.Event(), {}
    with LoopbackCall(scenario, tmp_path / "server.log", twilio_rest=True) as loop:
        rest = loop.twilio_rest
        caller = threading.Thread(target=lambda: out.update(record=loop.call(
            on_event=lambda t, kind, d: kind == "ai_audio_playing" and playing.set(), max_duration_s=30)))
        caller.start()
        assert playing.wait(15)
        (call,) = rest.calls
        result = TwilioRest(SIM_ACCOUNT_SID, Secret(AUTH_TOKEN), rest.base_url).complete(call.sid)
        caller.join(timeout=10)
        health = loop.wait_idle(timeout_s=5)
        late = TwilioRest(SIM_ACCOUNT_SID, Secret(AUTH_TOKEN), rest.base_url).complete(call.sid)
    record, log = out["record"], loop.log_text()
    assert result.ok and result.status == "completed"
    assert record.ended_by_rest and record.hung_up_by == "server" and record.after_stream == []
    assert "[TWILIO] stop received" in log and "Traceback" not in log
    assert health["active_calls"] == 0 and health["green_threads"] == 0
    assert late.call_already_over
