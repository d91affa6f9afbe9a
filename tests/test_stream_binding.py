"""A media stream is bound to the call the webhook answered (``server.call.stream_tokens``): a forged
``start`` for a call nobody answered, a token of another call, a replayed token (after its call
ended, or twice at once) are all closed before a model session or a record. End to end on
loopback with the real server, and the tokens themselves on fake time."""
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
import websocket

from server.call.stream_tokens import TOKEN_PARAM, TTL_S, UsedTokens, check, issue, secret_from
from sim import scenario as scenario_mod
from sim import twilio_wire as wire
from sim.loopback import AUTH_TOKEN, LoopbackCall

SECRET = secret_from("an auth token")
CALL, OTHER = "CA" + "a" * 32, "CA" + "b" * 32


# --- the tokens ------------------------------------------------------------------------------------

def test_a_token_opens_its_own_call_in_time_and_nothing_else():
    token = issue(SECRET, CALL, 1_000, nonce="0123456789abcdef")
    assert check(SECRET, token, CALL, 1_000 + TTL_S) == check(SECRET, token, CALL, 1_000)
    assert check(SECRET, token, CALL, 1_000).ok and check(SECRET, token, CALL, 1_000).nonce == "0123456789abcdef"
    assert check(SECRET, token, OTHER, 1_000).reason == "stream token not made for this call"
    assert check(SECRET, token, CALL, 1_000 + TTL_S + 5).reason == "stream token expired 5s ago"
    assert check(secret_from("another auth token"), token, CALL, 1_000).reason == "stream token not made for this call"
    assert check(SECRET, None, CALL, 1_000).reason == "no stream token"
    for bad in ("v1.x.0123456789abcdef.00", "v2." + token[3:], "junk", token.replace(".", "", 1)):
        assert not check(SECRET, bad, CALL, 1_000).ok
    later = token.split(".")
    later[1] = str(int(later[1]) + 3600)                                   # a longer life, forged
    assert check(SECRET, ".".join(later), CALL, 1_000).reason == "stream token not made for this call"


def test_a_nonce_is_claimed_once_and_forgotten_once_expired():
    used = UsedTokens()
    assert used.claim("n1", 2_000, 1_000) and not used.claim("n1", 2_000, 1_500)
    assert used.claim("n2", 2_100, 2_050) and used.claim("n1", 9_000, 2_050)    # n1 expired and forgotten


# --- on loopback -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    loop = LoopbackCall(scenario_mod.load("lead_hebrew"), tmp_path_factory.mktemp("bind") / "server.log",
                        env={"OUTBOX_IDLE_POLL_MS": "500"})
    loop.start()
    try:
        yield loop
    finally:
        loop.stop()


def webhook_token(loop, call_sid: str) -> dict[str, str]:
    """The stream parameters the webhook's TwiML gives a call (as Twilio would read them)."""
    url = f"{loop.base_url}/webhook/incoming_call"
    params = {"CallSid": call_sid, "From": "+972501234567", "To": "+97235550100", "AccountSid": "AC" + "0" * 32}
    req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST",
                                 headers={"X-Twilio-Signature": wire.signature(AUTH_TOKEN, url, params),
                                          "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        stream = ET.fromstring(resp.read().decode()).find("./Connect/Stream")
    return {p.get("name"): p.get("value") for p in stream.findall("Parameter")}


def forged_stream(loop, call_sid: str, parameters: dict[str, str], hold_s: float = 3.0) -> float | None:
    """A stream with a valid upgrade signature (captured once, good for every call) and the given
    ``start``; how long the server kept it open (None: still open after ``hold_s``)."""
    url = f"ws://127.0.0.1:{loop.port}/ws/twilio-media"
    ws = websocket.create_connection(url, timeout=5, header=[f"X-Twilio-Signature: {wire.signature(AUTH_TOKEN, url, {})}"])
    stream_sid = "MZ" + "f" * 32
    ws.send(wire.connected())
    ws.send(wire.start(1, "AC" + "0" * 32, stream_sid, call_sid, parameters))
    started = time.monotonic()
    ws.settimeout(0.2)
    try:
        while time.monotonic() - started < hold_s:
            try:
                if ws.recv() == "":
                    return time.monotonic() - started
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, OSError):
                return time.monotonic() - started
        return None
    finally:
        ws.close()


def call_row(loop, call_sid: str) -> dict | None:
    store = loop.store()
    try:
        detail = store.call_detail(call_sid)
        return None if detail is None else detail["call"]
    finally:
        store.close()


def test_a_start_for_a_call_nobody_answered_gets_nothing(server):
    sessions = server.realtime.counters.sessions
    for params in ({}, {"From": "+972501234567", "To": "+97235550100"},
                   {TOKEN_PARAM: webhook_token(server, OTHER)[TOKEN_PARAM]}):   # a real token, of another call
        closed_after = forged_stream(server, "CA" + "c" * 32, params)
        assert closed_after is not None and closed_after < 1.5, params
    assert server.realtime.counters.sessions == sessions                    # no model session
    assert call_row(server, "CA" + "c" * 32) is None                        # nothing recorded
    assert server.log_text().count("[TWILIO] stream refused:") >= 3


def test_a_replayed_token_cannot_rewrite_a_finished_call_nor_reach_the_crm(server):
    record = server.call(max_duration_s=90)
    assert server.wait_idle(10)["records_pending"] == 0
    before = call_row(server, record.call_sid)
    assert before["outcome"] == "lead_captured"
    time.sleep(1.5)                                                          # the lead and its summary delivered
    crm_before, sessions = len(server.crm.received), server.realtime.counters.sessions
    captured = record.stream_parameters[0]
    assert TOKEN_PARAM in captured
    closed_after = forged_stream(server, record.call_sid, captured)          # the same start, replayed
    assert closed_after is not None and closed_after < 1.5
    time.sleep(1.5)
    after = call_row(server, record.call_sid)
    assert (after["outcome"], after["stream_sid"], after["transcript"]) == \
        (before["outcome"], before["stream_sid"], before["transcript"])     # was: rewritten to no_lead
    assert len(server.crm.received) == crm_before                            # was: a second, false summary
    assert server.realtime.counters.sessions == sessions


def test_one_token_opens_one_stream_even_twice_at_once(server):
    call_sid = "CA" + "d" * 32
    params = webhook_token(server, call_sid)
    held: list = []
    threads = [threading.Thread(target=lambda: held.append(forged_stream(server, call_sid, params, hold_s=2.5)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(held, key=lambda x: (x is None, x))[0] < 1.5               # one closed at once
    assert None in held or max(h for h in held if h is not None) >= 2.0      # the other one was a call


# --- logs that stay readable under abuse -----------------------------------------------------------

def test_a_stream_that_never_starts_is_one_line_and_a_key_flood_a_few(server):
    url = f"ws://127.0.0.1:{server.port}/ws/twilio-media"
    signed = [f"X-Twilio-Signature: {wire.signature(AUTH_TOKEN, url, {})}"]
    before = len(server.log_text().splitlines())
    ws = websocket.create_connection(url, timeout=10, header=signed)
    ws.send(wire.connected())
    ws.settimeout(8)
    try:
        ws.recv()                                   # the server closes it after TWILIO_START_TIMEOUT_MS (5 s)
    except (websocket.WebSocketConnectionClosedException, websocket.WebSocketTimeoutException, OSError):
        pass
    ws.close()
    time.sleep(0.5)
    lines = server.log_text().splitlines()[before:]
    assert len([ln for ln in lines if "no start message" in ln]) == 1
    assert not any("Traceback" in ln or "Exception in thread" in ln for ln in lines), lines[:5]

    call_sid = "CA" + "e" * 32
    params = webhook_token(server, call_sid)
    ws = websocket.create_connection(url, timeout=10, header=signed)
    ws.send(wire.connected())
    ws.send(wire.start(1, "AC" + "0" * 32, "MZ" + "e" * 32, call_sid, params))
    for k in range(3000):
        ws.send(wire.dtmf(k + 2, "MZ" + "e" * 32, "5"))
    time.sleep(1.0)
    ws.close()
    time.sleep(1.0)
    keys = [ln for ln in server.log_text().splitlines() if call_sid in ln and "[KEYPAD]" in ln]
    assert 10 <= len(keys) <= 50, len(keys)                          # was one line per key
    assert any("more like it not logged" in ln for ln in keys)
