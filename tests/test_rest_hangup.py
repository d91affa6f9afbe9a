"""With ``TWILIO_ACCOUNT_SID`` set, a call the agent ends is ended through Twilio's REST API (on the
REST simulator); a failed call keeps the stream path, whose TwiML says the apology."""
from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall

APOLOGY = "מצטערים"


def test_a_captured_lead_hangs_up_through_the_api_once(tmp_path):
    with LoopbackCall(scenario_mod.load("lead_hebrew"), tmp_path / "server.log", twilio_rest=True) as loop:
        record = loop.call(max_duration_s=90)
        health = loop.wait_idle(timeout_s=5)
        updates = [r for r in loop.twilio_rest.requests if r.path.endswith(f"/Calls/{record.call_sid}.json")]
        calls = loop.records()["calls"]
    assert [(r.method, r.params, r.status) for r in updates] == [("POST", {"Status": "completed"}, 200)]
    assert record.ended_by_rest and record.hung_up_by == "server"
    assert record.after_stream == []                     # Twilio ended the call: no TwiML after <Connect>
    assert calls[0]["outcome"] == "lead_captured" and calls[0]["hangup_reason"] == "lead_captured"
    assert health["active_calls"] == 0 and health["green_threads"] == 0


def test_a_failed_call_is_not_ended_through_the_api_but_apologised_for(tmp_path):
    with LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log", twilio_rest=True,
                      realtime_faults={"reject_status": 401}) as loop:
        record = loop.call(max_duration_s=60)
        loop.wait_idle(timeout_s=5)
        updates = [r for r in loop.twilio_rest.requests if "/Calls/" in r.path]
    assert updates == []
    assert not record.ended_by_rest
    assert record.after_stream[0][0] == "Say" and APOLOGY in record.after_stream[0][1]
