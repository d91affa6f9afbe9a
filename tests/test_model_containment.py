"""A model that cannot hold a session, or fails every response, is contained (fake time): a bounded
number of reconnects whatever it does, the apology after two failed responses in a row; and the
worker's breaker (``server.call.model_breaker``) gives new callers the apology at once while the model
fails call after call, and closes again by itself."""
import pytest

from server.core import realtime_protocol as rt
from server.core.ending import MODEL_FAILING
from server.core.model_link import MAX_LINK_LOSSES, MAX_QUICK_LOSSES, STABLE_SESSION_MS
from server.core.events import HangUp, RealtimeLinkLost, RealtimeReceived, Reconnect
from server.call.model_breaker import FAILURES_TO_OPEN, OPEN_MS, WINDOW_MS, BreakerState, ModelBreaker
from tests.test_call_core import Call, ask, notes, verbs


def ready(call: Call) -> None:
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess"), call.now_ms))


def lose(call: Call) -> list:
    return verbs(call.core.handle(RealtimeLinkLost(call.now_ms, "ConnectionClosed: 1011")))


def test_a_model_that_drops_every_session_after_it_opens_gets_three_reconnects_then_the_apology():
    call = Call()
    ready(call)
    backoffs = []
    for _ in range(MAX_QUICK_LOSSES):
        call.now_ms += 300                                   # every session lives 300 ms
        out = lose(call)
        assert len(out) == 1 and isinstance(out[0], Reconnect), out
        backoffs.append(out[0].after_ms)
        call.now_ms += out[0].after_ms
        ready(call)                                          # the handshake succeeds: that refills nothing
    assert backoffs == [250, 1000, 2500]                     # growing
    call.now_ms += 300
    out = call.core.handle(RealtimeLinkLost(call.now_ms, "ConnectionClosed: 1011"))
    assert HangUp("realtime_closed") in verbs(out)
    assert any("no more reconnects" in n for n in notes(out))


def test_a_session_that_lived_long_starts_a_new_budget_but_a_call_is_never_reconnected_forever():
    call = Call()
    ready(call)
    for k in range(MAX_LINK_LOSSES):
        call.now_ms += STABLE_SESSION_MS                     # a healthy session each time
        out = lose(call)
        assert out == [Reconnect(250, 1)], (k, out)
        ready(call)
    call.now_ms += STABLE_SESSION_MS
    assert HangUp("realtime_closed") in lose(call)


def failed(call: Call, n: int, status: str = "failed") -> list:
    rid = f"resp_{n}"
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated(rid))
    return call.rt(rt.ResponseDone(rid, status, "rate_limit_exceeded" if status == "failed" else None,
                                   error_code="rate_limit_exceeded" if status == "failed" else None))


def test_two_failed_responses_in_a_row_end_the_call_with_the_apology():
    call = Call()
    assert HangUp(MODEL_FAILING) not in verbs(failed(call, 1))
    out = failed(call, 2)
    assert HangUp(MODEL_FAILING) in verbs(out)
    assert any("2 responses failed in a row (rate_limit_exceeded)" in n for n in notes(out))
    assert call.core.finish().outcome == "failed"


def test_a_completed_response_between_failures_resets_the_count():
    call = Call()
    failed(call, 1)
    failed(call, 2, status="completed")
    assert HangUp(MODEL_FAILING) not in verbs(failed(call, 3))


# --- the breaker ---------------------------------------------------------------------------------

def test_the_breaker_opens_after_failing_calls_answers_with_the_apology_and_closes_by_itself():
    b, t = ModelBreaker(), 1_000_000
    for k in range(FAILURES_TO_OPEN - 1):
        assert b.allow(t)
        b.record(t, "realtime_closed")
        t += 1000
    assert b.state is BreakerState.CLOSED and b.allow(t)
    b.record(t, "realtime_unavailable")
    assert b.state is BreakerState.OPEN
    assert not b.allow(t + 1) and not b.allow(t + OPEN_MS - 1) and b.refused == 2
    assert b.allow(t + OPEN_MS)                               # half open: one trial call
    assert not b.allow(t + OPEN_MS + 10)                      # the others wait for it
    b.record(t + OPEN_MS + 5000, "realtime_failing")          # the trial failed: open again
    assert b.state is BreakerState.OPEN and not b.allow(t + OPEN_MS + 6000)
    t2 = t + 2 * OPEN_MS + 5000
    assert b.allow(t2)
    b.record(t2 + 20_000, "lead_captured")                    # the trial went well: closed
    assert b.state is BreakerState.CLOSED and b.allow(t2 + 20_001)


def test_failures_far_apart_or_with_a_good_call_between_do_not_open_it():
    b, t = ModelBreaker(), 0
    for _ in range(5):
        b.record(t, "realtime_closed")
        t += WINDOW_MS                                        # one a minute
    assert b.state is BreakerState.CLOSED
    for reason in ("realtime_closed", "realtime_closed", "caller_hung_up", "realtime_closed"):
        b.record(t, reason)
        t += 1000
    assert b.state is BreakerState.CLOSED


def test_the_breaker_table_forbids():
    b = ModelBreaker()
    with pytest.raises(AssertionError):
        b._set(BreakerState.HALF_OPEN)
