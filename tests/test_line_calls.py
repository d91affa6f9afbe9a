"""The calls of real phone lines, end to end on loopback (real gunicorn + eventlet server, both
simulators, real-time audio through ``sim.line_model``), judged by the demo's verdict, the
operators' log check and the simulators' records."""
import pytest

from sim import scenario as scenario_mod
from sim.verdict import judge
from tests.loopback_helpers import run_scenario as run


def verdict_failures(call, name: str) -> list[str]:
    sc = scenario_mod.load(name)
    return [f"{c.name}: {c.detail}" for c in judge(call.record, call.health, call.log, call.counters, sc.turns, sc.expect)
            if not c.passed]


@pytest.fixture(scope="module")
def pauses(tmp_path_factory):
    return run(tmp_path_factory, "thinking_pauses")


@pytest.fixture(scope="module")
def backchannels(tmp_path_factory):
    return run(tmp_path_factory, "backchannels")


@pytest.fixture(scope="module")
def cafe(tmp_path_factory):
    return run(tmp_path_factory, "speakerphone_cafe")


@pytest.fixture(scope="module")
def cafe_conversation(tmp_path_factory):
    return run(tmp_path_factory, "cafe_conversation")


@pytest.fixture(scope="module")
def backchannels_handset(tmp_path_factory):
    return run(tmp_path_factory, "backchannels_handset")


def test_thinking_pauses_are_never_talked_over(pauses):
    assert verdict_failures(pauses, "thinking_pauses") == []
    assert pauses.log_failures("thinking_pause") == []
    lengths = [e - s for s, e in pauses.record.thinking_pauses]          # as scripted, to a frame
    assert len(lengths) == 2 and abs(lengths[0] - 600) <= 20 and abs(lengths[1] - 700) <= 20, lengths
    resumed = pauses.log.count("[HOLD] caller resumed")
    assert resumed >= 1                                                    # a reply was asked early, then dropped
    assert pauses.counters.client_events["response.create"] == 1 + 2 + resumed
    assert pauses.counters.client_events.get("conversation.item.delete", 0) >= 1
    assert dict(pauses.counters.errors) == {}
    heard = [c for c, _, status in pauses.counters.replies if status == "completed"]
    assert heard[:1] == ["ai_greeting"] and len(heard) == 3              # greeting + one answer per turn


def test_backchannels_pause_the_ai_at_most(backchannels):
    assert verdict_failures(backchannels, "backchannels") == []
    assert backchannels.log_failures("backchannel") == []
    assert backchannels.record.clears == 0
    assert backchannels.counters.client_events.get("response.cancel", 0) == 0
    assert backchannels.counters.client_events["response.create"] == 2     # greeting + the one real turn


def test_a_speakerphone_in_a_cafe_gets_no_false_barge_in(cafe):
    assert verdict_failures(cafe, "speakerphone_cafe") == []
    assert cafe.log_failures("no_false_barge_in") == []
    assert cafe.record.clears == 0
    assert cafe.counters.client_events["response.create"] == 3             # greeting + two turns


def test_a_caller_in_a_cafe_gets_each_question_answered_once_and_the_cafe_never(cafe_conversation):
    call = cafe_conversation
    assert verdict_failures(call, "cafe_conversation") == []          # latency_max_ms: 1500 included
    assert call.counters.client_events["response.create"] == 3         # greeting + two questions: no answer to the café
    assert call.record.clears == 0 and call.counters.client_events.get("response.cancel", 0) == 0
    assert "[ECHO] echo path" not in call.log                          # a line without echo learns none from the voices


def test_short_sounds_over_the_ai_on_a_handset_never_cut_it_off(backchannels_handset):
    call = backchannels_handset
    assert verdict_failures(call, "backchannels_handset") == []
    assert len(call.record.backchannels) == 4 and call.record.clears == 0
    assert call.counters.client_events.get("response.cancel", 0) == 0
    assert call.counters.client_events["response.create"] == 3         # greeting + the two real turns
    assert "[BARGE-IN] caller speech" not in call.log                  # no barge-in line: each sound resumed the AI
