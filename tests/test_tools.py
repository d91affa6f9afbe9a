"""Tools as modules: the registry, and a tool that needs I/O added from this file alone.

``PartsInStock`` below is what a new tool looks like: a spec, ``call`` (asks for I/O), ``run_io``
(the impure lookup, run by the shell off the call's thread under a deadline) and ``answer_io``
(the answer, or what to say when the lookup failed). It is registered here and offered to a
business that lists it; nothing in the core or the shell knows it.
"""
import json
from datetime import datetime, timezone

import pytest

from server import green
from server.business.profiles import BusinessProfile, parse_profiles
from server.call.registry import CallRegistry
from server.call.setup import plan_call
from server.core import realtime_protocol as rt
from server.core.call_core import TOOL_RESULT, CallCore
from server.core.events import (CommitAndTrigger, QueueTrigger, RealtimeLinkLost, RealtimeReceived, RunToolIo,
                                SendToolOutput,
                                ToolIoDone)
from server.core.tool_desk import MAX_IO_TIMEOUT_MS
from server.media_ws_ai import MediaCall
from server.settings import Settings
from server.tools import ToolBase, ToolContext, ToolDef, ToolReply, reply_json
from server.tools import registry
from tests.test_call_core import CFG, ask, notes, verbs

SETTINGS = Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_SIGNATURE_VALIDATION": "off"})
STOCK = {"צילינדר": 4, "מנעול חכם": 0}


class PartsInStock(ToolBase):
    name = "parts_in_stock"
    spec = {"type": "function", "name": "parts_in_stock",
            "description": "Whether a part is in stock today.",
            "parameters": {"type": "object", "properties": {"part": {"type": "string"}}, "required": ["part"]}}

    def __init__(self, stock: dict, delay_s: float = 0.0) -> None:
        self.stock, self.delay_s = stock, delay_s

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply:
        part = json.loads(arguments or "{}").get("part", "")
        return ToolReply(io=part, io_timeout_ms=200)

    def run_io(self, part: str) -> int:
        green.sleep(self.delay_s)                 # a database or an HTTP API, in a real tool
        return self.stock[part]

    def answer_io(self, part: str, result, error, ctx: ToolContext) -> ToolReply:
        if error is not None:
            return ToolReply(reply_json({"status": "unavailable", "next": "Say the stock cannot be checked now."}))
        return ToolReply(reply_json({"status": "ok", "part": part, "in_stock": result}))


TOOL = ToolDef("parts_in_stock", make=lambda profile, options, call: PartsInStock(STOCK), order=50,
               instructions="When the caller asks whether a part is in stock, call parts_in_stock.",
               check=lambda options: [] if set(options) <= {"warehouse"} else [f"unknown options {sorted(options)}"])


@pytest.fixture()
def stock_tool():
    registry.register(TOOL)
    yield TOOL
    registry.unregister(TOOL.name)


def tuesday_morning():
    return datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


# --- the registry -------------------------------------------------------------------------------

def test_every_call_has_save_lead_and_a_transfer_number_adds_transfer_to_human():
    bare = BusinessProfile(number="+97235550100", name="Bare")
    assert [t.name for t in registry.tools_for(bare)[0]] == ["save_lead"]
    with_person = BusinessProfile(number="+97235550100", name="Bare", transfer_number="+97235550199")
    tools, sentences = registry.tools_for(with_person)
    assert [t.name for t in tools] == ["save_lead", "transfer_to_human"]
    assert sentences[0].startswith("When the caller has confirmed the service and the city, call the save_lead")
    assert "transfer_to_human" in sentences[1]


def test_a_business_lists_the_extra_tools_it_wants_and_the_call_plan_offers_them(stock_tool):
    profiles = parse_profiles('[[business]]\nnumber = "+97235550100"\nname = "Keys"\n'
                              'tools = ["parts_in_stock"]\n', "b.toml")
    profile = profiles.businesses["+97235550100"]
    assert registry.check([profile]) == []
    plan = plan_call(SETTINGS, profile, {"From": "+972501234567"}, tuesday_morning())
    assert [spec["name"] for spec in plan.tools] == ["save_lead", "parts_in_stock"]
    assert plan.instructions.endswith("\nWhen the caller asks whether a part is in stock, call parts_in_stock.")


def test_an_unknown_tool_or_bad_options_stop_the_start_with_the_profile_problems(stock_tool):
    profiles = parse_profiles('[[business]]\nnumber = "+97235550100"\nname = "Keys"\ntools = ["book_a_dragon"]\n'
                              '[[business]]\nnumber = "+97235550101"\nname = "Locks"\n'
                              '[business.tools.parts_in_stock]\nshelf = 3\n', "b.toml")
    problems = registry.check(list(profiles.businesses.values()))
    assert problems[0].startswith("business +97235550100: unknown tool 'book_a_dragon' (known: ")
    assert problems[1] == "business +97235550101: tool parts_in_stock: unknown options ['shelf']"


def test_a_profile_keeps_its_tool_options_through_json():
    profiles = parse_profiles('[[business]]\nnumber = "+97235550100"\nname = "Keys"\n'
                              '[business.tools.parts_in_stock]\nwarehouse = "north"\n', "b.toml")
    profile = profiles.businesses["+97235550100"]
    assert profile.tool_options("parts_in_stock") == {"warehouse": "north"}
    assert BusinessProfile.from_json(profile.to_json()) == profile


# --- a tool's I/O through the core ---------------------------------------------------------------

class StockCall:
    def __init__(self) -> None:
        self.core = CallCore(CFG, {"greeting": "Greet"}, tools=[PartsInStock(STOCK)])
        self.now_ms = 1_000

    def rt(self, event) -> list:
        self.now_ms += 10
        return self.core.handle(RealtimeReceived(event, self.now_ms))

    def tool_turn(self, part: str) -> tuple[RunToolIo, list]:
        ask(self.core, "end_of_speech", self.now_ms)
        self.rt(rt.ResponseCreated("r1"))
        out = self.rt(rt.FunctionCallDone("r1", "fc1", "call_1", "parts_in_stock", json.dumps({"part": part})))
        [io] = [a for a in out if isinstance(a, RunToolIo)]
        return io, out + self.rt(rt.ResponseDone("r1", "completed", None))


def test_a_tool_asks_for_io_and_answers_once_it_is_in():
    call = StockCall()
    io, out = call.tool_turn("צילינדר")
    assert (io.tool, io.request, io.timeout_ms) == ("parts_in_stock", "צילינדר", 200)
    assert "[TOOL] parts_in_stock asked for I/O (#1, at most 200ms)" in notes(out)
    assert not any(isinstance(a, (SendToolOutput, QueueTrigger)) for a in out)   # the response is done, the I/O not
    assert io.run() == 4                                              # what the shell runs, knowing no tool
    done = call.core.handle(ToolIoDone(io.ticket, 4, None, call.now_ms + 30))
    answer, follow = verbs(done)
    assert answer == SendToolOutput("call_1", '{"status":"ok","part":"צילינדר","in_stock":4}')
    assert follow == QueueTrigger(TOOL_RESULT)
    assert "[TOOL] parts_in_stock I/O #1 done (error: none)" in notes(done)


def test_io_that_finishes_before_the_response_ends_is_answered_at_the_response_end():
    call = StockCall()
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("r1"))
    [io] = [a for a in call.rt(rt.FunctionCallDone("r1", "fc1", "call_1", "parts_in_stock", '{"part":"צילינדר"}'))
            if isinstance(a, RunToolIo)]
    assert verbs(call.core.handle(ToolIoDone(io.ticket, 4, None, call.now_ms))) == []     # still active
    out = verbs(call.rt(rt.ResponseDone("r1", "completed", None)))
    assert [type(a) for a in out] == [SendToolOutput, QueueTrigger]


def test_io_that_times_out_gets_the_tools_own_fallback_answer_and_the_call_goes_on():
    call = StockCall()
    io, _ = call.tool_turn("צילינדר")
    answer, follow = verbs(call.core.handle(ToolIoDone(io.ticket, None, "timeout", call.now_ms + 200)))
    assert json.loads(answer.output)["status"] == "unavailable" and follow == QueueTrigger(TOOL_RESULT)


def test_io_of_a_session_that_died_is_dropped():
    call = StockCall()
    io, _ = call.tool_turn("צילינדר")
    call.core.handle(RealtimeLinkLost(call.now_ms, "closed"))
    assert verbs(call.core.handle(ToolIoDone(io.ticket, 4, None, call.now_ms + 30))) == []


def test_a_tools_io_timeout_is_capped_under_the_no_audio_watchdog():
    assert MAX_IO_TIMEOUT_MS < CFG.no_audio_timeout_ms


# --- the shell runs the I/O off the call's thread, under its deadline -------------------------------

class _Core:
    def __init__(self) -> None:
        self.facts = []

    def handle(self, fact):
        self.facts.append(fact)
        return []

    def next_deadline_ms(self):
        return None


def run_io_in_shell(tool: PartsInStock, timeout_ms: int) -> ToolIoDone:
    media = MediaCall(None, SETTINGS, CallRegistry("token"))
    media.core = _Core()
    green.spawn(media._verbs[RunToolIo], RunToolIo(7, tool.name, "צילינדר", timeout_ms,
                                                            lambda: tool.run_io("צילינדר")))
    green.sleep(0)
    deadline = green.monotonic_ms() + 2000
    while not media.core.facts and green.monotonic_ms() < deadline:
        green.sleep(0.01)
    [fact] = media.core.facts
    return fact


def test_the_shell_reports_the_ios_result():
    fact = run_io_in_shell(PartsInStock(STOCK), 500)
    assert (fact.ticket, fact.result, fact.error) == (7, 4, None)


def test_the_shell_stops_waiting_at_the_deadline():
    started = green.monotonic_ms()
    fact = run_io_in_shell(PartsInStock(STOCK, delay_s=5.0), 100)
    assert (fact.ticket, fact.result, fact.error) == (7, None, "timeout")
    assert green.monotonic_ms() - started < 2000


def test_the_shell_reports_a_failing_io_as_its_error():
    fact = run_io_in_shell(PartsInStock({}), 500)
    assert fact.error == "KeyError: 'צילינדר'"


# --- a caller who talks over a tool's I/O ----------------------------------------------------------

def talked_over_io() -> tuple:
    """A caller turn whose held reply is a tool call with I/O; the caller resumes while it runs."""
    from tests.audio_helpers import SILENT, SPEECH
    from tests.test_call_core import Call, caller_turn
    call = Call()
    call.core = CallCore(CFG, {"greeting": "Greet"}, tools=[PartsInStock(STOCK)])
    caller_turn(call)
    call.frames(SILENT, CFG.eou_silence_ms // 20)
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    [io] = [a for a in call.rt(rt.FunctionCallDone("resp_1", "fc1", "call_1", "parts_in_stock", '{"part":"צילינדר"}'))
            if isinstance(a, RunToolIo)]
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    call.frames(SILENT, 10)
    out = call.frames(SPEECH, CFG.min_utterance_ms // 20 + 5)         # the caller goes on
    assert any("[HOLD] caller resumed" in n for n in notes(out))
    return call, io, SILENT, SPEECH


def test_io_done_while_the_caller_still_talks_is_answered_by_their_turn():
    call, io, silent, speech = talked_over_io()
    done = call.core.handle(ToolIoDone(io.ticket, 4, None, call.now_ms))
    assert [type(a) for a in verbs(done)] == [SendToolOutput]           # no follow-up over the caller
    assert any("sent without a follow-up" in n for n in notes(done))
    call.frames(speech, 10)
    out = call.frames(silent, CFG.eou_silence_ms // 20)
    assert CommitAndTrigger("end_of_speech") in out                      # their turn's answer sees the tool's


def test_io_done_after_the_callers_turn_was_answered_gets_its_follow_up_after_that_answer():
    call, io, silent, speech = talked_over_io()
    out = call.frames(silent, CFG.eou_silence_ms // 20)
    assert CommitAndTrigger("end_of_speech") in out
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_2"))                                # the turn's answer, without the tool's
    done = call.core.handle(ToolIoDone(io.ticket, 4, None, call.now_ms))
    assert [type(a) for a in verbs(done)] == [SendToolOutput]
    assert any("their follow-up goes after that answer" in n for n in notes(done))
    after = verbs(call.rt(rt.ResponseDone("resp_2", "completed", None)))
    assert QueueTrigger(TOOL_RESULT) in after                            # never lost to the busy guard
