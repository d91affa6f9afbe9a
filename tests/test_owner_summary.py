"""The owner's summary: an out-of-band text response after the call, kept apart from the call's
own events, stored on the call, shown on its admin page and sent to the CRM with the lead."""
import json

from server.core import realtime_protocol as rt
from server.call.owner_summary import PURPOSE, OwnerSummary
from sim import scenario as scenario_mod
from sim.ga_validation import validate_client_event
from sim.loopback import LoopbackCall


def test_the_request_is_a_valid_ga_out_of_band_text_response():
    request = json.loads(rt.out_of_band_text("Summarise", PURPOSE))
    assert request["response"]["conversation"] == "none" and request["response"]["output_modalities"] == ["text"]
    assert request["response"]["metadata"] == {"purpose": PURPOSE} and validate_client_event(request) == []


def test_only_the_summarys_own_events_are_taken():
    summary = OwnerSummary()
    created = rt.parse_server_event(json.dumps({"type": "response.created", "response": {
        "id": "resp_s", "metadata": {"purpose": PURPOSE}}}))
    assert summary.take(created) and summary.response_id == "resp_s"
    assert not summary.take(rt.AudioDelta("resp_call", "item_1", "////"))         # the call's own: the core's
    assert not summary.take(rt.ResponseCreated("resp_other"))
    done_text = rt.parse_server_event(json.dumps({"type": "response.output_text.done", "response_id": "resp_s",
                                                  "item_id": "i", "text": " שורה אחת\nשורה שתיים "}))
    assert summary.take(done_text) and summary.text == "שורה אחת\nשורה שתיים"
    assert summary.take(rt.ResponseDone("resp_s", "completed", None))


def test_a_lead_call_leaves_a_summary_for_the_owner(tmp_path):
    with LoopbackCall(scenario_mod.load("lead_hebrew"), tmp_path / "server.log") as loop:
        record = loop.call(max_duration_s=90)
        loop.wait_idle(timeout_s=15)
        found = loop.records()
        detail = loop.store().call_detail(record.call_sid)
        page = loop.admin_bytes(f"calls/{record.call_sid}").decode()
        asked = loop.realtime.counters.out_of_band
        log = loop.log_text()
    [(instructions, metadata, text)] = asked
    assert metadata == {"purpose": PURPOSE} and "Hebrew" in instructions
    assert detail["call"]["summary"] == text and "התקנת מנעול חכם" in text
    assert "id=summary" in page and "התקנת מנעול חכם" in page
    events = sorted(r["payload"]["event"] for r in found["crm_received"])
    assert events == ["lead.complete", "lead.summary"]
    [sent] = [r["payload"] for r in found["crm_received"] if r["payload"]["event"] == "lead.summary"]
    assert sent["summary"] == text and sent["lead"]["id"] == found["leads"][0]["id"]
    assert text not in json.dumps(detail["transcript"], ensure_ascii=False)      # never part of the call
    assert "[SUMMARY]" in log and "Traceback" not in log
