"""The acceptance calls of the behaviour contract, end to end on loopback (real gunicorn + eventlet
server, both simulators, real-time audio), judged from the server log alone (the operators' log
check) AND from the simulators' records. Calls 2 and 5 (normal speech, the single pipeline with
«התקנת מנעול חכם», «בתל אביב», «כן») run in test_e2e_call.py, with the same two kinds of checks."""
import pytest

from tests.loopback_helpers import run_scenario as run


@pytest.fixture(scope="module")
def silent(tmp_path_factory):
    return run(tmp_path_factory, "silent_caller")


@pytest.fixture(scope="module")
def barge(tmp_path_factory):
    return run(tmp_path_factory, "barge_in")


@pytest.fixture(scope="module")
def quiet_echo(tmp_path_factory):
    return run(tmp_path_factory, "quiet_echo")


def test_1_silent_caller_gets_one_prompt_then_a_polite_hangup(silent):
    assert silent.log_failures("silent") == []
    assert silent.record.hung_up_by == "server"
    assert silent.counters.client_events["response.create"] == 3          # greeting, prompt, goodbye
    assert silent.counters.client_events.get("input_audio_buffer.commit", 0) == 0
    assert [clip for clip, _, status in silent.counters.replies] == ["ai_greeting", "ai_still_there", "ai_goodbye"]
    assert "📞 [SMART HANGUP] Reason: silence_timeout" in silent.log
    assert "🔇 [SILENCE] Max warnings exceeded - initiating polite hangup" in silent.log
    # the caller heard the goodbye to its end before the line closed
    assert silent.record.marks_received == ["assistant_tts_end"] * 3
    assert len([m for m in silent.record.marks_echoed if not m[2]]) == 3
    assert silent.health["active_calls"] == 0 and silent.health["green_threads"] == 0


def test_3_barge_in_stops_the_ai_and_exactly_one_answer_follows(barge):
    assert barge.log_failures("barge_in") == []
    assert barge.record.failures == []
    assert barge.record.clears == 1                                       # Twilio's buffer flushed once
    assert barge.counters.client_events["response.cancel"] == 1
    assert barge.counters.responses_cancelled == 1
    assert barge.counters.client_events["conversation.item.truncate"] == 1
    assert dict(barge.counters.errors) == {}                              # truncate within the audio sent
    assert barge.counters.client_events["response.create"] == 2           # greeting + one answer
    assert [status for _, _, status in barge.counters.replies] == ["cancelled", "completed"]
    assert barge.counters.transcripts == ["Hello, I would like to book a smart lock installation please"]
    assert barge.counters.invalid_client_events == []
    assert barge.health["green_threads"] == 0


def test_4_quiet_room_with_echo_gets_no_invented_responses(quiet_echo):
    assert quiet_echo.log_failures("quiet_echo") == []
    assert quiet_echo.counters.client_events.get("input_audio_buffer.commit", 0) == 0
    assert quiet_echo.counters.client_events.get("response.cancel", 0) == 0
    assert [clip for clip, _, _ in quiet_echo.counters.replies] == ["ai_greeting", "ai_still_there", "ai_goodbye"]
    assert quiet_echo.record.clears == 0
    assert quiet_echo.record.hung_up_by == "server"
