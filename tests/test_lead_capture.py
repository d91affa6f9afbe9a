"""save_lead answers, the lead as it stands, and the core's tool turn under fake time."""
import base64
import json

from server.core import realtime_protocol as rt
from server.core.call_core import TOOL_RESULT, TTS_END_MARK, CallCore
from server.core.events import (AssistantPlayoutFinished, HangUp, LeadChanged, MarkAcked, Note, QueueTrigger,
                                RealtimeReceived, SendResponseCreate, SendToolOutput, Tick)
from server.core.pipeline import Pipeline
from server.core.tool_desk import MAX_TOOL_CHAIN
from server.core.turn_config import TurnConfig
from server.leads.capture import LeadCapture
from server.tools.save_lead import SPEC as SAVE_LEAD_TOOL
from server.tools.save_lead import SaveLead
from server.tools.transfer_to_human import TransferToHuman
from sim.ga_validation import validate_client_event
from tests.test_call_core import ask

SERVICES = ["התקנת מנעול חכם", "פריצת דלת", "החלפת צילינדר"]
CITIES = ["תל אביב-יפו", "רמת גן"]
CALLER = "+972501234567"


def capture(**kw) -> LeadCapture:
    return LeadCapture(SERVICES, CITIES, caller_phone=CALLER, **kw)


def args(**fields) -> str:
    return json.dumps(fields, ensure_ascii=False)


# --- the tool's answers ---------------------------------------------------------------------------

def test_complete_lead_is_saved_normalised_with_the_caller_id_as_phone():
    lead = capture()
    answer = lead.on_tool_call(args(service="מנעול חכם", city="בתל אביב"))
    out = json.loads(answer.output)
    assert (answer.status, answer.changed, answer.became_complete) == ("saved", True, True)
    assert out["status"] == "saved"
    assert out["lead"] == {"service": "התקנת מנעול חכם", "city": "תל אביב-יפו", "phone_ending": "4567",
                           "city_served": True}
    assert "goodbye" in out["next"]
    snap = lead.snapshot()
    assert (snap.status, snap.service, snap.city, snap.phone, snap.missing) == (
        "complete", "התקנת מנעול חכם", "תל אביב-יפו", CALLER, ())
    assert snap.sources == {"service": "tool", "city": "tool", "phone": "caller_id"}
    assert CALLER not in answer.output           # the model never gets the whole number back


def test_missing_city_is_reported_so_the_model_asks_for_it():
    answer = capture().on_tool_call(args(service="פריצת דלת"))
    out = json.loads(answer.output)
    assert (answer.status, answer.became_complete, answer.missing) == ("incomplete", False, ("city",))
    assert out["missing"] == ["city"] and out["problems"] == {}
    assert out["next"] == "Ask the caller, briefly, for: city."


def test_unknown_city_and_unknown_service_come_back_as_problems():
    answer = capture().on_tool_call(args(service="ניקוי שטיחים", city="עיר הדמיון"))
    out = json.loads(answer.output)
    assert out["status"] == "incomplete"
    assert out["missing"] == ["service", "city"]
    assert "not one of the services" in out["problems"]["service"]
    assert out["problems"]["city"].startswith("unknown city «עיר הדמיון»")


def test_malformed_callback_number_is_a_problem_not_a_saved_lead():
    lead = capture()
    answer = lead.on_tool_call(args(service="פריצת דלת", city="רמת גן", phone="12"))
    out = json.loads(answer.output)
    assert out["status"] == "incomplete" and out["missing"] == []
    assert "digit by digit" in out["problems"]["phone"]
    assert not lead.complete
    fixed = lead.on_tool_call(args(service="פריצת דלת", city="רמת גן", phone="052-765-4321"))
    assert fixed.status == "saved" and lead.snapshot().phone == "+972527654321"
    assert lead.snapshot().sources["phone"] == "tool"


def test_anonymous_caller_must_give_a_number():
    lead = LeadCapture(SERVICES, CITIES, caller_phone="anonymous")
    out = json.loads(lead.on_tool_call(args(service="פריצת דלת", city="רמת גן")).output)
    assert out["missing"] == ["phone"]


def test_a_city_the_business_does_not_serve_is_saved_but_flagged():
    lead = capture()
    answer = lead.on_tool_call(args(service="פריצת דלת", city="חיפה"))
    out = json.loads(answer.output)
    assert out["status"] == "saved" and out["lead"]["city_served"] is False
    assert "does not usually serve חיפה" in out["next"]
    assert lead.snapshot().city_served is False


def test_bad_arguments_are_errors_the_model_can_recover_from():
    lead = capture()
    assert json.loads(lead.on_tool_call("{not json").output)["status"] == "error"
    assert json.loads(lead.on_tool_call("[1, 2]").output)["status"] == "error"
    assert json.loads(lead.on_tool_call(args(service=5, city="רמת גן")).output)["problems"] == {
        "service": "service must be text"}
    assert not lead.complete and lead.tool_calls == 3


def test_a_repeated_identical_call_changes_nothing():
    lead = capture()
    lead.on_tool_call(args(service="פריצת דלת", city="רמת גן"))
    again = lead.on_tool_call(args(service="פריצת דלת", city="רמת גן"))
    assert again.status == "saved" and not again.changed and not again.became_complete


def test_partial_lead_takes_service_and_city_from_what_the_caller_said():
    lead = capture()
    lead.on_caller_text("אני צריך התקנת מנעול חכם")
    lead.on_caller_text("קוראים לי דני כהן")
    assert lead.has_content
    snap = lead.snapshot()
    assert (snap.status, snap.service, snap.city, snap.missing) == ("partial", "התקנת מנעול חכם", None, ("city",))
    assert snap.sources["service"] == "transcript"
    assert snap.notes == "caller said: אני צריך התקנת מנעול חכם | קוראים לי דני כהן"
    lead.on_caller_text("אני גר ברמת גן")
    assert lead.snapshot().city == "רמת גן" and lead.snapshot().city_served is True


def test_tool_fields_win_over_the_transcript():
    lead = capture()
    lead.on_caller_text("בתל אביב")
    lead.on_tool_call(args(service="פריצת דלת", city="רמת גן", name="דני"))
    snap = lead.snapshot()
    assert snap.city == "רמת גן" and snap.name == "דני"


def test_a_caller_who_said_nothing_leaves_no_partial_lead():
    assert not capture().has_content


def test_tool_definition_and_output_item_are_valid_ga():
    update = json.loads(rt.session_update("be brief", "marin", "gpt-4o-mini-transcribe", [SAVE_LEAD_TOOL], "he"))
    assert validate_client_event(update) == []
    assert update["session"]["tools"][0]["name"] == "save_lead"
    assert update["session"]["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "he"}
    assert validate_client_event(json.loads(rt.function_call_output("call_1", '{"status":"saved"}'))) == []


def test_function_call_arguments_done_is_parsed_and_output_item_done_ignored():
    done = rt.parse_server_event(json.dumps({
        "type": "response.function_call_arguments.done", "event_id": "e1", "response_id": "resp_1",
        "item_id": "item_1", "output_index": 0, "call_id": "call_1", "name": "save_lead", "arguments": "{}"}))
    assert done == rt.FunctionCallDone("resp_1", "item_1", "call_1", "save_lead", "{}")
    item_done = rt.parse_server_event(json.dumps({"type": "response.output_item.done", "response_id": "resp_1",
                                                  "output_index": 0, "item": {"type": "function_call"}}))
    assert isinstance(item_done, rt.Ignored)


# --- the core's tool turn ----------------------------------------------------------------------------

class ToolCall:
    def __init__(self) -> None:
        self.lead = capture()
        self.core = CallCore(TurnConfig(), {"greeting": "Greet"}, lead=self.lead, tools=[SaveLead(), TransferToHuman()])
        self.now_ms = 1_000

    def rt(self, event) -> list:
        from server.core.events import RealtimeReceived
        self.now_ms += 10
        return self.core.handle(RealtimeReceived(event, self.now_ms))

    def response(self, rid: str, audio: bool, tool_args: str | None = None, status: str = "completed") -> list:
        out = self.rt(rt.ResponseCreated(rid))
        if audio:
            out += self.rt(rt.AudioDelta(rid, f"item_{rid}", base64.b64encode(b"\xff" * 1600).decode()))
            out += self.rt(rt.AudioDone(rid, f"item_{rid}"))
        if tool_args is not None:
            out += self.rt(rt.FunctionCallDone(rid, f"fc_{rid}", f"call_{rid}", "save_lead", tool_args))
        out += self.rt(rt.ResponseDone(rid, status, None))
        return out

    def play_out(self, rid: str) -> list:
        self.now_ms += 500
        out = self.core.handle(AssistantPlayoutFinished(rid, self.now_ms))
        self.now_ms += 200
        return out + self.core.handle(MarkAcked(TTS_END_MARK, self.now_ms))


def verbs(actions) -> list:
    return [a for a in actions if not isinstance(a, Note)]


def test_tool_answer_waits_for_response_done_then_one_guarded_follow_up():
    call = ToolCall()
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    call.response("r0", audio=True)
    call.play_out("r0")
    ask(call.core, "end_of_speech", call.now_ms)
    out = call.rt(rt.ResponseCreated("r1"))
    out += call.rt(rt.FunctionCallDone("r1", "fc1", "call_1", "save_lead", args(service="מנעול חכם", city="בתל אביב")))
    assert not any(isinstance(a, SendToolOutput) for a in out)          # the response is still active
    lead_changes = [a for a in out if isinstance(a, LeadChanged)]
    assert len(lead_changes) == 1 and lead_changes[0].deliver and lead_changes[0].lead.status == "complete"
    done = verbs(call.rt(rt.ResponseDone("r1", "completed", None)))
    assert isinstance(done[0], SendToolOutput) and done[0].call_id == "call_1"
    assert json.loads(done[0].output)["status"] == "saved"
    assert done[1:] == [QueueTrigger(TOOL_RESULT)]
    assert call.core.state is Pipeline.PROCESSING                        # the answer is owed: no hangup yet
    assert not any(isinstance(a, HangUp) for a in call.core.handle(Tick(call.now_ms + 5_000)))
    call.now_ms += 5_000
    follow = ask(call.core, TOOL_RESULT, call.now_ms)
    assert verbs(follow) == [SendResponseCreate(TOOL_RESULT, None)]
    assert verbs(ask(call.core, TOOL_RESULT, call.now_ms)) == []   # never two in flight
    call.response("r2", audio=True)                                      # the goodbye
    end = call.play_out("r2")
    assert HangUp("lead_captured") in end
    assert "📞 [SMART HANGUP] Lead captured: True" in [a.text for a in end if isinstance(a, Note)]
    assert ("system", f"save_lead answered: {done[0].output}") in call.core.conversation


def test_a_tool_call_inside_a_spoken_response_does_not_hang_up_before_the_follow_up():
    call = ToolCall()
    ask(call.core, "end_of_speech", call.now_ms)
    out = call.response("r1", audio=True, tool_args=args(service="פריצת דלת", city="רמת גן"))
    assert QueueTrigger(TOOL_RESULT) in out
    early = call.play_out("r1")                  # the spoken part ends before the follow-up was sent
    assert not any(isinstance(a, HangUp) for a in early)
    ask(call.core, TOOL_RESULT, call.now_ms)
    call.response("r2", audio=True)
    assert HangUp("lead_captured") in call.play_out("r2")


def test_an_incomplete_lead_keeps_the_call_going():
    call = ToolCall()
    ask(call.core, "end_of_speech", call.now_ms)
    out = verbs(call.response("r1", audio=False, tool_args=args(service="פריצת דלת")))
    assert json.loads(out[-2].output)["status"] == "incomplete" and out[-1] == QueueTrigger(TOOL_RESULT)
    ask(call.core, TOOL_RESULT, call.now_ms)
    call.response("r2", audio=True)
    assert not any(isinstance(a, HangUp) for a in call.play_out("r2"))
    assert call.core.state is Pipeline.LISTENING and not call.core.desk.lead_complete


def test_a_cancelled_tool_response_still_gets_its_answer_but_no_follow_up():
    call = ToolCall()
    ask(call.core, "end_of_speech", call.now_ms)
    out = verbs(call.response("r1", audio=False, tool_args=args(service="פריצת דלת"), status="cancelled"))
    assert [type(a) for a in out] == [LeadChanged, SendToolOutput]      # stored, answered, nothing asked


def test_tool_answers_without_the_caller_speaking_are_bounded():
    call = ToolCall()
    triggers = 0
    for i in range(MAX_TOOL_CHAIN + 2):
        ask(call.core, TOOL_RESULT if i else "end_of_speech", call.now_ms)
        out = call.response(f"r{i}", audio=False, tool_args=args(service="פריצת דלת"))
        triggers += out.count(QueueTrigger(TOOL_RESULT))
    assert triggers == MAX_TOOL_CHAIN


def test_without_lead_capture_a_tool_call_is_answered_with_an_error():
    core = CallCore(TurnConfig(), {}, tools=[SaveLead()])
    ask(core, "end_of_speech", 0)
    for ev in (rt.ResponseCreated("r1"), rt.FunctionCallDone("r1", "fc", "call_x", "save_lead", "{}")):
        core.handle(RealtimeReceived(ev, 10))
    out = verbs(core.handle(RealtimeReceived(rt.ResponseDone("r1", "completed", None), 20)))
    assert json.loads(out[0].output)["status"] == "error"
    assert not core.desk.lead_complete


def test_a_tool_the_call_does_not_have_is_answered_with_an_error_and_logged():
    call = ToolCall()
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("r1"))
    out = call.rt(rt.FunctionCallDone("r1", "fc", "call_x", "book_meeting", "{}"))
    assert "[TOOL] book_meeting called but it is not a tool of this call" in [
        a.text for a in out if isinstance(a, Note)]
    answer = verbs(call.rt(rt.ResponseDone("r1", "completed", None)))[0]
    assert isinstance(answer, SendToolOutput) and json.loads(answer.output)["status"] == "error"
