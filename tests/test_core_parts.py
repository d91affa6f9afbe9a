"""The core's parts on their own: each owns its state and its table forbids what it does not list."""
import pytest

from server.core.ending import CallEnding, CallStats, EndKind, ForbiddenEndingMove
from server.core.events import Reconnect, ReplayConversation, StartAudio, TransferCall
from server.core.model_link import (MAX_QUICK_LOSSES, RECONNECT_BACKOFF_MS, ForbiddenLinkMove, LinkEvent, LinkState,
                                    ModelLink)
from server.core.pipeline import NEXT, Cause, ForbiddenTransition, Pipeline, PipelineMachine
from server.leads.capture import LeadCapture


# --- the pipeline ------------------------------------------------------------------------------

def test_the_pipeline_computes_its_next_state_from_the_cause():
    machine = PipelineMachine()
    assert machine.move(Cause.UTTERANCE) is Pipeline.PROCESSING
    assert machine.move(Cause.UTTERANCE) is None                 # listed, and no change: nothing to log
    assert machine.move(Cause.FIRST_AUDIO) is Pipeline.SPEAKING
    assert machine.move(Cause.PLAYED) is Pipeline.LISTENING


@pytest.mark.parametrize("state", list(Pipeline))
def test_every_pair_the_table_does_not_list_raises_and_changes_nothing(state):
    for cause in Cause:
        machine = PipelineMachine()
        machine.state = state
        if (state, cause) in NEXT:
            continue
        with pytest.raises(ForbiddenTransition):
            machine.move(cause, "probe")
        assert machine.state is state


def test_a_greeting_or_prompt_never_starts_over_a_speaking_ai():
    assert (Pipeline.SPEAKING, Cause.GREETING) not in NEXT and (Pipeline.SPEAKING, Cause.PROMPT) not in NEXT


# --- the model link ----------------------------------------------------------------------------

def test_the_first_session_greets_and_a_replacement_replays_the_conversation():
    link, out = ModelLink(None), []
    assert link.on_ready(0, (), out) == "greet" and StartAudio() in out
    assert link.on_ready(10, (), out) is None                    # the same session updated again
    assert link.on_lost(20_000, "closed", out) and not link.up
    assert Reconnect(RECONNECT_BACKOFF_MS[0], 1) in out
    out.clear()
    assert link.on_ready(21_000, (("user", "שלום"),), out) == "restore"
    assert ReplayConversation((("user", "שלום"),)) in out and link.up


def test_sessions_lost_soon_after_opening_spend_one_budget_then_the_link_closes_for_good():
    link, out = ModelLink(None), []
    link.on_ready(0, (), out)
    now = 0
    for _ in range(MAX_QUICK_LOSSES):
        now += 1000
        assert link.on_lost(now, "closed", out)
        link.on_ready(now + 300, (), out)
    assert not link.on_lost(now + 1000, "closed", out)
    assert link.state is LinkState.CLOSED
    with pytest.raises(ForbiddenLinkMove):
        link._move(LinkEvent.READY)                  # nothing moves a closed link
    assert link.on_ready(now + 2000, (), out) is None   # a late session.updated is ignored, not a crash


# --- the call's ending -------------------------------------------------------------------------

def finish(ending: CallEnding, stream_end_reason=None, lead=None, written=False):
    return ending.finish(stream_end_reason, lead, written, CallStats(), (), {}, link_up=True)


def test_a_transfer_replaces_a_goodbye_and_ends_the_call_transferred():
    ending, out = CallEnding(transfer_allowed=True), []
    assert ending.close_after_playout("lead_captured")
    assert not ending.close_after_playout("silence_timeout")         # the first reason stays...
    assert ending.ask_for_person("wants a person", out)
    assert ending.after_playout == "transferred"                     # ...but a person comes first
    assert ending.hang_up("transferred", True, out) and TransferCall("wants a person") in out
    end = finish(ending)
    assert (end.kind, end.transfer_reason, end.summary_wanted) == (EndKind.TRANSFERRED, "wants a person", True)
    with pytest.raises(ForbiddenEndingMove):
        ending._move("close")


def test_how_a_call_ended_follows_who_ended_it():
    completed = CallEnding(False)
    completed.hang_up("silence_timeout", False, [])
    assert finish(completed).kind is EndKind.COMPLETED
    assert finish(completed, "caller_hung_up").kind is EndKind.CALLER_LEFT     # the caller left first
    failed = CallEnding(False)
    failed.hang_up("realtime_failing", False, [], announce=False)
    assert finish(failed).kind is EndKind.FAILED and not finish(failed).summary_wanted
    assert finish(CallEnding(False), "realtime_unavailable").outcome == "failed"


def test_the_lead_to_write_is_what_the_call_has_not_written_yet():
    lead = LeadCapture(["פריצת דלת"], ["רמת גן"], caller_phone="+972501234567")
    lead.on_tool_call('{"service": "פריצת דלת", "city": "רמת גן"}')
    ending = CallEnding(False)
    ending.hang_up("lead_captured", True, [])
    assert finish(ending, lead=lead, written=True).lead_to_write is None           # stored when it completed
    assert finish(ending, lead=lead, written=False).lead_to_write.status == "complete"
    partial = LeadCapture(["פריצת דלת"], ["רמת גן"], caller_phone="+972501234567")
    partial.on_tool_call('{"service": "פריצת דלת"}')
    end = finish(CallEnding(False), "caller_hung_up", lead=partial, written=False)
    assert (end.outcome, end.lead_to_write.status) == ("partial_lead", "partial")
