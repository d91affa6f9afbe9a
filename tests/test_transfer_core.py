"""Transfer to a person and the keypad, in the call core on fake time."""
from server.core import realtime_protocol as rt
from server.core.call_core import TTS_END_MARK, CallCore
from server.core.ending import EndKind
from server.core.keypad import KEYPAD_PROMPTS
from server.core.pipeline import Pipeline
from server.core.events import (AssistantPlayoutFinished, CallerDigit, ForwardAudio, HangUp, MarkAcked, QueueTrigger,
                                SendResponseCreate, SendToolOutput, TransferCall)
from tests.audio_helpers import SILENT
from server.tools.save_lead import SaveLead
from server.tools.transfer_to_human import NAME as TRANSFER_TOOL
from server.tools.transfer_to_human import TransferToHuman
from tests.test_call_core import CFG, Call, ask, notes, verbs

KEYPAD = {"0": "person", "9": "repeat"}


def call_with(transfer_allowed: bool) -> Call:
    call = Call()
    call.core = CallCore(CFG, {"greeting": "Greet"}, transfer_allowed=transfer_allowed, keypad=KEYPAD,
                         tools=[SaveLead(), TransferToHuman()])
    call.frames(SILENT, 10)
    return call


def play_response(call: Call, rid: str, item: str) -> list:
    """A response with audio, played to its end and its mark echoed: what follows its playout."""
    call.rt(rt.ResponseCreated(rid))
    call.rt(rt.AudioDelta(rid, item, "////"))
    call.rt(rt.AudioDone(rid, item))
    call.rt(rt.ResponseDone(rid, "completed", None))
    call.core.handle(AssistantPlayoutFinished(rid, call.now_ms))
    call.now_ms += 100
    return call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms))


def tool_call(call: Call, arguments: str) -> list:
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_t"))
    call.rt(rt.FunctionCallDone("resp_t", "item_t", "call_1", TRANSFER_TOOL, arguments))
    return call.rt(rt.ResponseDone("resp_t", "completed", None))


def test_the_tool_transfers_after_the_ais_line_has_played():
    call = call_with(transfer_allowed=True)
    out = tool_call(call, '{"reason": "wants a person"}')
    [answer] = [a for a in out if isinstance(a, SendToolOutput)]
    assert '"status":"transferring"' in answer.output and QueueTrigger("tool_result") in out
    assert ("system", f"transfer_to_human answered: {answer.output}") in call.core.conversation   # replayed as such
    assert "👤 [TRANSFER] the caller asked for a person (wants a person) - transferring after the AI's line" in \
        notes(call.actions)
    assert verbs(ask(call.core, "tool_result", call.now_ms))[0].reason == "tool_result"
    after = play_response(call, "resp_line", "item_line")
    assert TransferCall("wants a person") in after and not any(isinstance(a, HangUp) for a in after)
    end = call.core.finish()                    # the stream ended on the core's TransferCall
    assert end.asked_for_person and end.hangup_reason == "transferred"
    assert end.kind is EndKind.TRANSFERRED and end.transfer_reason == "wants a person"
    assert [e["kind"] for e in end.timeline["events"] if e["lane"] == "call"] == ["transfer"]
    assert verbs(ask(call.core, "end_of_speech", call.now_ms)) == []    # nothing after it


def test_outside_the_allowed_hours_the_tool_answers_unavailable_and_the_call_goes_on():
    call = call_with(transfer_allowed=False)
    out = tool_call(call, '{"reason": "wants a person"}')
    [answer] = [a for a in out if isinstance(a, SendToolOutput)]
    assert '"status":"unavailable"' in answer.output and "call back" in answer.output
    ask(call.core, "tool_result", call.now_ms)
    after = play_response(call, "resp_line", "item_line")
    assert not any(isinstance(a, (TransferCall, HangUp)) for a in after)
    assert call.core.state is Pipeline.LISTENING
    end = call.core.finish("caller_hung_up")
    assert end.asked_for_person and end.kind is EndKind.CALLER_LEFT and end.transfer_reason is None


def test_keypad_zero_asks_for_a_person_through_the_one_trigger_and_is_never_speech():
    call = call_with(transfer_allowed=True)
    turns, sent = call.core.stats.turns, call.core.stats.frames_sent
    out = call.core.handle(CallerDigit("0", call.now_ms))
    assert verbs(out) == [QueueTrigger("transfer")]
    assert "🔢 [KEYPAD] caller pressed 0: person" in notes(out)
    assert not any(isinstance(a, ForwardAudio) for a in out)
    assert (call.core.stats.turns, call.core.stats.frames_sent) == (turns, sent)
    [create] = verbs(ask(call.core, "transfer", call.now_ms))
    assert create == SendResponseCreate("transfer", KEYPAD_PROMPTS["transfer"])
    assert TransferCall("keypad 0") in play_response(call, "resp_k", "item_k")


def test_keypad_zero_outside_hours_offers_a_call_back_and_nine_repeats():
    call = call_with(transfer_allowed=False)
    assert verbs(call.core.handle(CallerDigit("0", call.now_ms))) == [QueueTrigger("transfer_unavailable")]
    ask(call.core, "transfer_unavailable", call.now_ms)
    assert not any(isinstance(a, TransferCall) for a in play_response(call, "resp_u", "item_u"))
    assert verbs(call.core.handle(CallerDigit("9", call.now_ms))) == [QueueTrigger("repeat")]
    assert verbs(ask(call.core, "repeat", call.now_ms)) == [SendResponseCreate("repeat", KEYPAD_PROMPTS["repeat"])]


def test_a_key_without_an_action_or_while_the_ai_speaks_triggers_nothing_now():
    call = call_with(transfer_allowed=True)
    out = call.core.handle(CallerDigit("5", call.now_ms))
    assert verbs(out) == [] and "🔢 [KEYPAD] caller pressed 5: none" in notes(out)
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_g"))
    call.rt(rt.AudioDelta("resp_g", "item_g", "////"))
    assert verbs(call.core.handle(CallerDigit("0", call.now_ms))) == []      # the greeting plays to its end
    call.rt(rt.AudioDone("resp_g", "item_g"))
    call.rt(rt.ResponseDone("resp_g", "completed", None))
    call.core.handle(AssistantPlayoutFinished("resp_g", call.now_ms))
    assert TransferCall("keypad 0") in call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms + 100))
