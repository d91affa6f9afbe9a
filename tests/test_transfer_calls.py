"""Transfer to a person, end to end on loopback (real server, simulated caller, model, Twilio REST).

The ``transfer`` scenario: «אפשר לדבר עם בן אדם?» on a Tuesday morning (``BUSINESS_TIME``). Then
the same caller after hours, a caller who presses 0, and a transfer nobody answers.
"""
from dataclasses import replace

from sim import scenario as scenario_mod
from sim.loopback import LoopbackCall
from sim.scenario import Step, ToolReply

SATURDAY = "2026-12-05T11:00:00+02:00"
PERSON = "+97235550101"


def run(tmp_path, scenario, dial_outcome="answered"):
    with LoopbackCall(scenario, tmp_path / "server.log", twilio_rest=True, dial_outcome=dial_outcome) as loop:
        record = loop.call(max_duration_s=90)
        health = loop.wait_idle(timeout_s=5)
        found = loop.records()
        rest = loop.twilio_rest.requests
        detail = loop.store().call_detail(record.call_sid)
    return record, health, found, rest, detail, loop.log_text()


def test_in_business_hours_the_caller_is_put_through_after_the_ais_line(tmp_path):
    record, health, found, rest, detail, log = run(tmp_path, scenario_mod.load("transfer"))
    [update] = [r for r in rest if "/Calls/" in r.path]
    assert update.params["Twiml"].count("<Dial") == 1 and f"<Number>{PERSON}</Number>" in update.params["Twiml"]
    assert 'callerId="+97235550100"' in update.params["Twiml"]            # the business's number, as configured
    [dial] = record.dials
    assert (dial.number, dial.timeout_s, dial.dial_call_status) == (PERSON, 20, "completed")
    last_ai = max(t for t, voiced in record.arrivals if voiced)
    assert record.rest_updates[0][0] >= last_ai                            # the AI's line had played to its end
    assert "👤 [TRANSFER] handing the call to a person (asked for a person)" in log
    call = detail["call"]
    assert call["hangup_reason"] == "transferred"
    assert call["transfer"] == {"reason": "asked for a person", "to": "+97*****0101", "status": "completed"}
    [lead] = found["leads"]                                                # the caller ID: a partial lead, delivered
    assert lead["status"] == "partial"
    [delivery] = [r for r in found["crm_received"] if r["payload"]["event"] != "lead.summary"]
    assert delivery["payload"]["call"]["asked_for_person"] is True
    assert health["active_calls"] == 0 and health["green_threads"] == 0 and "Traceback" not in log


def test_after_hours_the_tool_offers_a_call_back_and_the_lead_is_kept(tmp_path):
    sc = scenario_mod.load("transfer")
    sc = replace(sc, env={"BUSINESS_TIME": SATURDAY},
                 replies=["ai_greeting", ToolReply("transfer_to_human", '{"reason": "asked for a person"}'),
                          "ai_no_one_now", "ai_ask_city"],
                 steps=[Step("wait_ai"), Step("say", clip="caller_ask_person"), Step("wait_ai"),
                        Step("say", clip="caller_service"), Step("wait_ai"), Step("hangup")])
    record, _, found, rest, detail, log = run(tmp_path, sc)
    assert not [r for r in rest if "/Calls/" in r.path] and record.dials == []
    assert "no transfer now: transfers are not allowed now" in log and ", after hours" in log
    assert detail["call"]["transfer"] is None and detail["call"]["hangup_reason"] == "caller_hung_up"
    [lead] = found["leads"]
    assert lead["status"] == "partial" and lead["service"] == "התקנת מנעול חכם"
    assert found["crm_received"][0]["payload"]["call"]["asked_for_person"] is True


def test_keypad_zero_transfers(tmp_path):
    sc = scenario_mod.load("transfer")
    sc = replace(sc, replies=["ai_greeting", "ai_transferring"],
                 steps=[Step("wait_ai"), Step("press", digit="0"), Step("wait_ai"), Step("silence_ms", duration_ms=3000)])
    record, _, _, rest, detail, log = run(tmp_path, sc)
    assert "🔢 [KEYPAD] caller pressed 0: person" in log
    assert [d.number for d in record.dials] == [PERSON]
    assert detail["call"]["transfer"]["reason"] == "keypad 0"
    assert "END OF UTTERANCE" not in log                                   # a key is never speech


def test_an_unanswered_transfer_comes_back_to_the_agent(tmp_path):
    sc = scenario_mod.load("transfer")
    sc = replace(sc, steps=[Step("wait_ai"), Step("say", clip="caller_ask_person"), Step("wait_ai"),
                            Step("wait_ai", timeout_ms=15000), Step("hangup")])
    record, health, _, rest, detail, log = run(tmp_path, sc, dial_outcome="no-answer")
    assert [(d.number, d.dial_call_status) for d in record.dials] == [(PERSON, "no-answer")]
    assert len(record.streams) == 2                                        # back on a new stream
    assert "'Transfer': 'unanswered'" in log
    assert detail["call"]["transfer"]["status"] == "no-answer"
    assert health["active_calls"] == 0 and "Traceback" not in log


def test_without_the_rest_api_the_after_stream_twiml_dials(tmp_path):
    """No TWILIO_ACCOUNT_SID: the stream closes and the TwiML after <Connect>, read from the call's
    record by whichever instance Twilio asks, dials the person."""
    with LoopbackCall(scenario_mod.load("transfer"), tmp_path / "server.log") as loop:
        record = loop.call(max_duration_s=90)
        loop.wait_idle(timeout_s=5)
        detail = loop.store().call_detail(record.call_sid)
        log = loop.log_text()
    assert [d.number for d in record.dials] == [PERSON] and not record.ended_by_rest
    assert "stream ended for %s: transfer to a person" % record.call_sid in log
    assert detail["call"]["transfer"]["status"] == "completed"
