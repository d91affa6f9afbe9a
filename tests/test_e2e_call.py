"""End to end on loopback: the real gunicorn + eventlet server, the Twilio caller simulator and the
OpenAI Realtime simulator, real-time audio. Each call runs once per module; the tests read the
simulators' records (ground truth) and the server's log."""
import re

import pytest

from sim.loopback import AUTH_TOKEN, SIM_API_KEY
from tests.loopback_helpers import Finished
from tests.loopback_helpers import run_scenario as run_call


@pytest.fixture(scope="module")
def normal(tmp_path_factory) -> Finished:
    return run_call(tmp_path_factory, "two_turns")


@pytest.fixture(scope="module")
def echo_call(tmp_path_factory) -> Finished:
    return run_call(tmp_path_factory, "lead_hebrew")


def test_one_response_per_utterance_plus_greeting(normal):
    assert len(normal.record.speech_ends_ms) == 2
    assert normal.counters.client_events["response.create"] == 3
    assert normal.counters.client_events["input_audio_buffer.commit"] == 2
    assert normal.counters.responses_completed == 3
    assert normal.log.count("🔊 [REALTIME] response.created") == 3


def test_no_model_errors_and_every_client_event_valid_ga(normal):
    assert normal.counters.errors.get("conversation_already_has_active_response", 0) == 0
    assert dict(normal.counters.errors) == {}
    assert normal.counters.invalid_client_events == []
    assert normal.counters.client_events["session.update"] == 1
    assert set(normal.counters.client_events) == {"session.update", "input_audio_buffer.append",
                                                 "input_audio_buffer.commit", "response.create",
                                                 "response.create (out of band)",     # the owner's summary
                                                 "conversation.item.create", "conversation.item.delete"}
    assert normal.counters.client_events["response.create (out of band)"] == 1
    # Each reply heard whole became text in its place: one text item inserted, one audio item deleted.
    converted = normal.counters.client_events["conversation.item.create"]
    assert converted == normal.counters.client_events["conversation.item.delete"] >= 2


def test_the_model_heard_what_the_caller_said(normal):
    assert normal.counters.transcripts == ["אני צריך התקנת מנעול חכם", "בתל אביב"]
    assert "ASR_TEXT: אני צריך התקנת מנעול חכם" in normal.log


def test_the_caller_heard_an_answer_after_each_utterance(normal):
    assert normal.record.failures == []
    latencies = normal.record.response_latencies_ms()
    assert len(latencies) == 2 and all(v is not None for v in latencies)


def test_marks_round_trip_and_return_to_listening(normal):
    assert normal.record.marks_received == ["assistant_tts_end"] * 3
    assert [name for _, name, cleared in normal.record.marks_echoed if not cleared] == ["assistant_tts_end"] * 3
    assert normal.log.count("MARK_ACK assistant_tts_end") == 3
    assert normal.log.count("STATE -> LISTENING | buffer_reset") == 3
    assert normal.record.violations == []


def test_call_ends_with_every_green_thread_gone(normal):
    assert normal.record.hung_up_by == "caller"
    assert normal.health["active_calls"] == 0 and normal.health["green_threads"] == 0
    assert normal.health["calls_total"] == 1
    assert "green_threads_alive=0" in normal.log
    assert "Traceback" not in normal.log


def test_log_vocabulary_of_a_normal_call(normal):
    log = normal.log
    for line in ("[PIPELINE] LIVE AUDIO PIPELINE ACTIVE: Twilio → realtime_audio_in_queue → send_audio_chunk (single path)",
                 "[GREETING] Bot speaks first...", "✅ [BUILD 196.3] response.create queued (end of speech)",
                 "✅ [BUILD 196.2] response.create sent (manual trigger)", "TTS_START | frames=",
                 "MARK_SENT assistant_tts_end", "[PIPELINE STATUS] sent=", "🤖 [REALTIME] AI said: "):
        assert line in log, line
    assert len(re.findall(r"🎤 END OF UTTERANCE: \d+\.\ds, echo_blocked=False", log)) == 2
    assert "conversation #2)" in log
    assert "[RESPONSE GUARD]" not in log


def test_secrets_and_caller_number_stay_out_of_the_log(normal):
    assert SIM_API_KEY not in normal.log and AUTH_TOKEN not in normal.log
    assert "+972501234567" not in normal.log and "+97******4567" in normal.log


def test_echo_on_the_line_never_triggers_and_real_turns_still_do(echo_call):
    """Acceptance call 5 shape with line echo: «התקנת מנעול חכם», «בתל אביב», «כן»."""
    assert echo_call.record.failures == []
    assert len(echo_call.record.speech_ends_ms) == 3
    assert echo_call.counters.client_events["response.create"] == 5     # greeting, 3 turns, the tool answer
    assert dict(echo_call.counters.errors) == {}
    assert echo_call.counters.invalid_client_events == []
    # the echo of the AI was heard by the VAD and refused as a turn
    assert "NOT triggering (echo protection)" in echo_call.log
    assert echo_call.counters.transcripts == ["אני צריך התקנת מנעול חכם", "בתל אביב", "כן"]
    assert len(re.findall(r"🎤 END OF UTTERANCE: \d+\.\ds, echo_blocked=False", echo_call.log)) == 3
    assert echo_call.health["active_calls"] == 0 and echo_call.health["green_threads"] == 0


@pytest.mark.parametrize("expect", ["normal", "single_pipeline"])
def test_acceptance_2_and_5_from_the_log_alone(normal, echo_call, expect):
    for call in (normal, echo_call):
        assert call.log_failures(expect) == []


def test_the_hebrew_lead_is_stored_normalised_delivered_once_and_ends_the_call(echo_call):
    """Issue 5's proof: «התקנת מנעול חכם», «בתל אביב», «כן» -> save_lead -> goodbye -> smart hangup."""
    assert [name for name, _, _ in echo_call.counters.tool_calls] == ["save_lead"]
    assert len(echo_call.leads) == 1
    lead = echo_call.leads[0]
    assert (lead["status"], lead["service"], lead["city"], lead["city_served"]) == (
        "complete", "התקנת מנעול חכם", "תל אביב-יפו", True)
    assert lead["phone"] == "+972501234567" and lead["missing"] == []
    assert [(r["payload"]["event"], r["payload"]["lead"]["id"]) for r in echo_call.crm_received] == \
        [("lead.complete", lead["id"]), ("lead.summary", lead["id"])]        # then the owner's summary
    assert echo_call.crm_attempts == 2 and echo_call.outbox == {"delivered": 2}
    assert "📞 [SMART HANGUP] Reason: lead_captured" in echo_call.log
    assert "📞 [SMART HANGUP] Lead captured: True" in echo_call.log
    assert echo_call.record.hung_up_by == "server"
    call = echo_call.calls[0]
    assert call["outcome"] == "lead_captured" and call["turns"] == 3
    assert call["latency_median_ms"] is not None and call["latency_max_ms"] >= call["latency_median_ms"]


def test_the_tool_answer_precedes_its_one_follow_up_response(echo_call):
    """function_call_output is sent after the tool response is done, then exactly one response.create."""
    log = [(kind, etype) for _, kind, etype in echo_call.counters.log]
    args_done_at = log.index(("server", "response.function_call_arguments.done"))
    output_at = log.index(("client", "conversation.item.create"), args_done_at)   # heard replies became text before
    tool_done_at = max(i for i, e in enumerate(log[:output_at]) if e == ("server", "response.done"))
    assert ("server", "response.function_call_arguments.done") in log[:tool_done_at]
    following = [e for e in log[output_at + 1:] if e[0] == "client" and e[1] == "response.create"]
    assert len(following) == 1
    assert [json_status(o) for _, o in echo_call.counters.tool_outputs] == ["saved"]
    assert echo_call.log_failures("lead") == []


def json_status(output: str) -> str:
    import json
    return json.loads(output)["status"]


def test_the_calls_timeline_is_stored_and_drawn_lane_by_lane(echo_call):
    """The real call's timeline, as stored with it, and the admin picture of it (one element per item)."""
    import xml.etree.ElementTree as ET
    from collections import Counter
    timeline = echo_call.detail["timeline"]
    spans, events = timeline["spans"], timeline["events"]
    kinds = Counter((s["lane"], s["kind"]) for s in spans) + Counter((e["lane"], e["kind"]) for e in events)
    call = echo_call.calls[0]
    assert kinds[("caller", "end_of_utterance")] == call["turns"] == 3
    assert kinds[("caller", "speech")] >= 3 and kinds[("gate", "forwarded")] >= 3
    assert kinds[("model", "response")] == kinds[("model", "response.create")] == echo_call.counters.responses_created
    assert kinds[("model", "tool_call")] == 1 and kinds[("playout", "ai_audio")] >= 4
    assert [e["label"] for e in events if e["kind"] == "hangup"] == ["lead_captured"]
    answered = [x for x in timeline["latencies"] if "first_audio_ms" in x]
    assert len(answered) == 3 and all(x["eou_ms"] < x["create_ms"] < x["first_audio_ms"] for x in answered)
    heard = [v for v in echo_call.record.response_latencies_ms() if v is not None]     # the caller's own clock
    drawn_ms = [x["first_audio_ms"] - x["eou_ms"] for x in answered]
    assert len(heard) == 3 and all(abs(d - h) <= 150 for d, h in zip(drawn_ms, heard)), (drawn_ms, heard)
    assert timeline["duration_ms"] >= max(s["to_ms"] for s in spans) and timeline["dropped"] == 0
    drawn = Counter((g.get("data-lane"), g.get("data-kind"))
                    for g in ET.fromstring(echo_call.timeline_svg).iter("{http://www.w3.org/2000/svg}g")
                    if g.get("data-kind") and g.get("data-lane") != "latency")
    assert drawn == kinds

