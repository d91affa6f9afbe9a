"""Faults a call must survive, end to end on loopback (real server, simulators with fault switches)."""
import json
import socket
import threading
import time

import pytest
import websocket

from sim import audio as sim_audio
from sim import scenario as scenario_mod
from sim import twilio_wire as wire
from sim.loopback import AUTH_TOKEN, LoopbackCall, free_port
from sim.twilio_caller import TwilioCaller

APOLOGY = "מצטערים, יש לנו תקלה זמנית"


def run(tmp_path, name="two_turns", env=None, faults=None, max_s=60):
    loop = LoopbackCall(scenario_mod.load(name), tmp_path / "server.log", env=env, realtime_faults=faults)
    with loop:
        record = loop.call(max_duration_s=max_s)
        health = loop.wait_idle(timeout_s=5)
    return record, health, loop.log_text(), loop


@pytest.mark.parametrize("fault,env,bound_ms", [
    ("refused", {"OPENAI_REALTIME_URL": "ws://127.0.0.1:{port}/v1/realtime"}, 2000),
    ("http_401", None, 2000),
    ("slow_handshake", {"OPENAI_CONNECT_TIMEOUT_MS": "1500"}, 3500),
])
def test_model_unreachable_at_connect_gives_a_spoken_apology_not_dead_air(tmp_path, fault, env, bound_ms):
    faults = {"http_401": {"reject_status": 401}, "slow_handshake": {"handshake_delay_ms": 5000}}.get(fault)
    if fault == "refused":
        env = {"OPENAI_REALTIME_URL": env["OPENAI_REALTIME_URL"].format(port=free_port())}
    record, health, log, _ = run(tmp_path, env=env, faults=faults)
    assert record.hung_up_by == "server"
    assert record.server_closed_ms is not None and record.server_closed_ms <= bound_ms
    assert record.after_stream[0][0] == "Say" and APOLOGY in record.after_stream[0][1]
    assert record.after_stream[-1][0] == "Hangup"
    assert record.bytes_received == 0                       # no half greeting
    assert "[REALTIME] connect failed" in log and "Traceback" not in log
    assert health["active_calls"] == 0 and health["green_threads"] == 0


def test_a_normal_end_hangs_up_without_the_apology(tmp_path):
    record, _, _, _ = run(tmp_path, "silent_caller", max_s=90)
    assert record.hung_up_by == "server"
    assert record.after_stream == [("Hangup", "")]


def test_caller_vanishing_mid_sentence_ends_everything_within_a_second(tmp_path):
    sc = scenario_mod.load("two_turns")
    loop = LoopbackCall(sc, tmp_path / "server.log")
    with loop:
        caller = TwilioCaller(loop.base_url, sc, AUTH_TOKEN)
        caller.open_stream()
        for i, frame in enumerate(sim_audio.frames(sim_audio.clip("caller_service").audio)[:60]):
            caller.send_raw(wire.media(i + 2, caller.record.stream_sid, i + 1, 20 * i, frame))
            time.sleep(0.02)
        deadline = time.monotonic() + 5
        while loop.health()["active_calls"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loop.health()["active_calls"] == 1
        sock = caller.socket.sock                            # drop the TCP connection: no stop, no close frame
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        t0 = time.monotonic()
        health = loop.wait_idle(timeout_s=5)
        elapsed_ms = (time.monotonic() - t0) * 1000
        log = loop.log_text()
        sessions = loop.realtime.sessions
    assert health["active_calls"] == 0 and health["green_threads"] == 0
    assert elapsed_ms < 1000
    assert all(s.closed.is_set() for s in sessions)           # the OpenAI socket was closed too
    assert "[CALL SUMMARY]" in log and "green_threads_alive=0" in log and "Traceback" not in log


MALFORMED = [
    "this is not json", "[1,2,3]", '{"event": 42}', '{"event":"media"}', '{"event":"media","media":{"payload":"@@@"}}',
    '{"event":"media","media":{"payload":"AAAA","chunk":"x"}}', '{"event":"mystery","streamSid":"MZ"}',
    '{"event":"mark"}', '{"event":"start"}',
]


def test_malformed_input_is_counted_and_ignored_while_a_healthy_call_runs_beside_it(tmp_path):
    sc = scenario_mod.load("two_turns")
    loop = LoopbackCall(sc, tmp_path / "server.log")
    results = {}
    with loop:
        healthy = threading.Thread(target=lambda: results.setdefault("healthy", loop.call(max_duration_s=60)))
        healthy.start()
        caller = TwilioCaller(loop.base_url, sc, AUTH_TOKEN)
        params = caller.open_stream(send_start=False)
        sid = caller.record.stream_sid
        caller.send_raw('{"event":"media","media":{"payload":"/w=="},"streamSid":"' + sid + '"}')   # media before start
        caller.send_raw(wire.connected())
        caller.send_raw(caller.start_message(params))
        for message in MALFORMED + [b"\x00\x01\x02"]:       # ... and a binary frame
            caller.send_raw(message)
        for size in (1, 100, 333, 8000):                      # odd payload sizes
            caller.send_raw(wire.media(50, sid, 50, 1000, b"\xff" * size))
        caller.send_raw(caller.start_message(params, seq=99))  # a second start
        for _ in range(300):                                  # then 300 more bad messages: logged at a bounded rate
            caller.send_raw("{broken")
        time.sleep(1.0)
        still_open = loop.health()["active_calls"] >= 1
        caller.send_raw(json.dumps({"event": "stop", "sequenceNumber": "999", "streamSid": sid,
                                    "stop": {"accountSid": caller.account_sid, "callSid": caller.record.call_sid}}))
        caller.socket.close()
        healthy.join(timeout=90)
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
    assert still_open
    assert results["healthy"].failures == [] and len(results["healthy"].response_latencies_ms()) == 2
    assert all(v is not None for v in results["healthy"].response_latencies_ms())
    assert "Traceback" not in log
    summaries = [line for line in log.splitlines() if caller.record.call_sid in line and "[CALL SUMMARY]" in line]
    assert summaries and "malformed_in=312" in summaries[0]
    ignored_lines = [line for line in log.splitlines() if "[TWILIO] ignored input #" in line]
    assert len(ignored_lines) <= 10                           # 312 bad messages, a handful of log lines
    assert health["active_calls"] == 0 and health["green_threads"] == 0


def test_an_oversized_message_closes_the_call_with_a_reason(tmp_path):
    sc = scenario_mod.load("two_turns")
    loop = LoopbackCall(sc, tmp_path / "server.log")
    with loop:
        caller = TwilioCaller(loop.base_url, sc, AUTH_TOKEN)
        caller.open_stream()
        caller.send_raw('{"event":"media","media":{"payload":"' + "A" * (1024 * 1024) + '"}}')
        caller.socket.settimeout(5)
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            while True:
                if not caller.socket.recv():
                    raise websocket.WebSocketConnectionClosedException("closed")
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
    assert health["active_calls"] == 0 and health["green_threads"] == 0
    assert "Traceback" not in log


def test_sigterm_lets_the_call_finish_its_turn_say_goodbye_and_close(tmp_path):
    import signal
    sc = scenario_mod.load("silent_caller")         # a caller who does not talk over the goodbye
    loop = LoopbackCall(sc, tmp_path / "server.log", graceful_timeout_s=25)
    with loop:
        out = {}
        caller = threading.Thread(target=lambda: out.setdefault("record", loop.call(max_duration_s=60)))
        caller.start()
        deadline = time.monotonic() + 20
        while "TTS_START" not in loop.log_text() and time.monotonic() < deadline:   # the greeting is playing
            time.sleep(0.05)
        t0 = time.monotonic()
        loop.server.send_signal(signal.SIGTERM)
        caller.join(timeout=40)
        exit_code = loop.server.wait(timeout=30)
        stop_s = time.monotonic() - t0
        log = loop.log_text()
        replies = list(loop.realtime.counters.replies)
    record = out["record"]
    assert record.hung_up_by == "server"
    assert "[SHUTDOWN] server stopping - goodbye after the current turn" in log
    assert "📞 [SMART HANGUP] Reason: shutdown" in log
    assert [status for _, _, status in replies] == ["completed"] * 2     # the greeting finished, then the goodbye
    assert len([m for m in record.marks_echoed if not m[2]]) == 2          # both heard to the end
    assert "silence_warning" not in log
    assert exit_code == 0 and stop_s < 25
    assert "Traceback" not in log


def test_model_link_drop_mid_call_reconnects_replays_and_the_call_goes_on(tmp_path):
    loop = LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log",
                        realtime_faults={"drop_after_responses": 1})          # right after the greeting
    with loop:
        record = loop.call(max_duration_s=60)
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
        counters = loop.realtime.counters
        sessions = loop.realtime.sessions
    assert counters.errors["simulated_drop"] == 1 and counters.sessions == 2
    assert record.failures == [] and all(v is not None for v in record.response_latencies_ms())
    assert record.hung_up_by == "caller"                                     # no apology, the call went on
    events = [(kind, etype) for _, kind, etype in counters.log]              # both sessions, in order
    second = [i for i, e in enumerate(events) if e == ("client", "session.update")][1]
    first_answer = events.index(("client", "response.create"), second)
    replayed = [e for e in events[second:first_answer] if e == ("client", "conversation.item.create")]
    assert len(replayed) == 1                                                # the greeting's transcript
    assert counters.invalid_client_events == []
    assert "[REALTIME] reconnected after 1 attempt(s)" in log and "link restored, 1 turns replayed" in log
    assert counters.transcripts[-2:] == ["אני צריך התקנת מנעול חכם", "בתל אביב"]
    assert health["green_threads"] == 0 and "Traceback" not in log


def test_model_link_that_cannot_come_back_ends_with_the_apology_in_bounded_time(tmp_path):
    loop = LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log",
                        realtime_faults={"drop_after_responses": 1, "fail_reconnects": 10})
    with loop:
        record = loop.call(max_duration_s=60)
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
    assert record.hung_up_by == "server"
    assert record.after_stream[0][0] == "Say" and APOLOGY in record.after_stream[0][1]
    lost = log.split("[REALTIME] link lost", 1)
    assert len(lost) == 2 and "reconnect attempt 3/3 failed" in lost[1]
    assert record.server_closed_ms - record.ai_play_starts_ms[0] < 12000     # greeting + ~4 s of retries
    assert health["green_threads"] == 0 and "Traceback" not in log


def test_long_calls_renew_the_session_before_the_limit(tmp_path):
    loop = LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log",
                        env={"OPENAI_SESSION_RENEW_MS": "6000"})
    with loop:
        record = loop.call(max_duration_s=60)
        log = loop.log_text()
        counters = loop.realtime.counters
    assert counters.sessions >= 2
    assert "[REALTIME] renewing the session" in log
    assert record.failures == [] and record.hung_up_by == "caller"
    assert counters.invalid_client_events == [] and "Traceback" not in log


def test_session_expired_is_renewed_and_the_call_goes_on(tmp_path):
    loop = LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log",
                        realtime_faults={"expire_after_ms": 7000})
    with loop:
        record = loop.call(max_duration_s=60)
        log = loop.log_text()
        counters = loop.realtime.counters
    assert counters.sessions == 2
    assert "[REALTIME] session expired - renewing" in log and "link restored" in log
    assert record.failures == [] and record.hung_up_by == "caller"
    assert counters.invalid_client_events == [] and "Traceback" not in log


FAILED_ANSWER = """
name = "failed_answer"
[realtime]
replies = ["ai_greeting", "ai_ask_city", "ai_confirm"]
[caller]
steps = [
  { wait_ai = true },
  { say = "caller_service" },
  { wait_ai = true, timeout_ms = 3000 },   # no answer comes: the caller goes on after 3 s
  { say = "caller_city" },
  { wait_ai = true },
  { hangup = true },
]
"""


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "server_error"])
def test_a_failed_response_is_logged_by_code_and_the_next_turn_is_answered(tmp_path, code):
    sc = scenario_mod.parse(FAILED_ANSWER, "failed_answer.toml")
    loop = LoopbackCall(sc, tmp_path / "server.log", realtime_faults={"fail_responses": {2: code}})
    with loop:
        record = loop.call(max_duration_s=60)
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
        counters = loop.realtime.counters
    assert f"failed ({code}) - listening again, no automatic retry" in log
    assert counters.client_events["response.create"] == 3                  # no blind retry
    assert record.failures == ["step 3: the AI did not answer within 3000ms"]
    assert record.response_latencies_ms()[1] is not None                    # the next turn got its answer
    assert record.hung_up_by == "caller" and health["green_threads"] == 0 and "Traceback" not in log


def _rss_kib(pid: int) -> int:
    from pathlib import Path
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:"))


def test_a_caller_who_stops_reading_neither_grows_memory_nor_stalls_another_call(tmp_path):
    sc = scenario_mod.load("two_turns")
    loop = LoopbackCall(sc, tmp_path / "server.log")
    with loop:
        pid = loop.server_pid()
        rss_before = _rss_kib(pid)
        stalled = TwilioCaller(loop.base_url, sc, AUTH_TOKEN, recv_buffer_bytes=4096)
        stalled.open_stream()                                  # ... and never reads a byte of what it is sent
        out = {}
        healthy = threading.Thread(target=lambda: out.setdefault("record", loop.call(max_duration_s=60)))
        healthy.start()
        speech = sim_audio.frames(sim_audio.clip("caller_service").audio)
        rss_peak, seq = rss_before, 2
        for second in range(14):                               # the stalled caller keeps talking for 14 s
            for i in range(50):
                frame = speech[(second * 50 + i) % len(speech)] if second % 4 == 1 else b"\xff" * 160
                stalled.send_raw(wire.media(seq, stalled.record.stream_sid, seq, 20 * seq, frame))
                seq += 1
                time.sleep(0.02)
            rss_peak = max(rss_peak, _rss_kib(pid))
        healthy.join(timeout=60)
        stalled.socket.close()
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
    record = out["record"]
    assert record.failures == [] and all(v is not None and v < 1000 for v in record.response_latencies_ms())
    assert rss_peak - rss_before < 20 * 1024                   # bounded queues: no growth with the stall
    assert health["active_calls"] == 0 and health["green_threads"] == 0
    assert "Traceback" not in log


def _unread_bytes(port: int) -> int:
    """Bytes waiting unread in the receive queue of the local socket on ``port`` (Linux /proc)."""
    from pathlib import Path
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            return int(fields[4].split(":")[1], 16)
    return 0


def test_a_stalled_openai_socket_neither_wedges_the_call_nor_grows_memory(tmp_path):
    """Within 30 s the kernel's buffers absorb what the server sends to a model that stopped
    reading, so the in-app drop policy is not reached here (tests/test_media_call_queues.py covers
    it); what this proves end to end is that the stall is real and harmless."""
    from sim.stalled_realtime import StalledRealtime
    stalled = StalledRealtime()
    sc = scenario_mod.load("two_turns")
    loop = LoopbackCall(sc, tmp_path / "server.log", env={"OPENAI_REALTIME_URL": stalled.url})
    try:
        with loop:
            pid = loop.server_pid()
            caller = TwilioCaller(loop.base_url, sc, AUTH_TOKEN)
            caller.open_stream()
            assert stalled.stalled.wait(10)
            rss_before, rss_peak = _rss_kib(pid), 0
            speech = sim_audio.frames(sim_audio.clip("caller_service").audio)
            for seq in range(2, 2 + 50 * 30):                  # 30 s of caller audio into a model that never reads
                caller.send_raw(wire.media(seq, caller.record.stream_sid, seq, 20 * seq,
                                                       speech[seq % len(speech)]))
                time.sleep(0.02)
                if seq % 250 == 0:
                    rss_peak = max(rss_peak, _rss_kib(pid))
            alive = loop.health()["active_calls"] == 1
            unread = _unread_bytes(int(stalled.url.split(":")[2].split("/")[0]))
            caller.socket.close()
            health = loop.wait_idle(timeout_s=12)          # the owner's summary waits at most 6 s for it
            log = loop.log_text()
    finally:
        stalled.stop()
    assert alive                                              # the stall did not kill or wedge the call
    assert unread > 2000                                      # the model really stopped reading
    assert any("[CALL SUMMARY]" in line for line in log.splitlines())   # teardown did not hang on the stall
    assert rss_peak - rss_before < 20 * 1024
    assert health["active_calls"] == 0 and health["green_threads"] == 0 and "Traceback" not in log


# --- a model that cannot hold a session or fails every response, a breaker (issue: never silent) ------

def call_record(loop, call_sid: str) -> dict:
    store = loop.store()
    try:
        return store.call_detail(call_sid)["call"]
    finally:
        store.close()


def test_a_model_that_drops_every_session_gets_a_bounded_budget_and_the_caller_the_apology(tmp_path):
    loop = LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log", realtime_faults={"flap": True})
    with loop:
        record = loop.call(max_duration_s=60)
        health = loop.wait_idle(timeout_s=5)
        log = loop.log_text()
        sessions = loop.realtime.counters.sessions
        call = call_record(loop, record.call_sid)
    assert record.hung_up_by == "server" and record.server_closed_ms < 10_000       # was 60 s of dead air
    assert record.after_stream[0][0] == "Say" and APOLOGY in record.after_stream[0][1]
    assert sessions == 4                                        # the first and three reconnects (was 253)
    assert "no more reconnects, the caller hears the fallback message" in log
    assert (call["outcome"], call["hangup_reason"]) == ("failed", "realtime_closed")
    assert health["green_threads"] == 0 and "Traceback" not in log


RATE_LIMITED = """
name = "rate_limited"
[realtime]
replies = ["ai_greeting", "ai_ask_city"]
[caller]
steps = [
  { silence_ms = 2500 },                    # the greeting never comes
  { say = "caller_service" },
  { wait_ai = true, timeout_ms = 6000 },
  { hangup = true },
]
"""


def test_a_model_that_fails_every_response_gives_the_apology_not_silence(tmp_path):
    sc = scenario_mod.parse(RATE_LIMITED, "rate_limited.toml")
    loop = LoopbackCall(sc, tmp_path / "server.log", realtime_faults={"fail_every_response": "rate_limit_exceeded"})
    with loop:
        record = loop.call(max_duration_s=60)
        log = loop.log_text()
        call = call_record(loop, record.call_sid)
    assert record.hung_up_by == "server"
    assert record.after_stream[0][0] == "Say" and APOLOGY in record.after_stream[0][1]
    speech_end = record.speech_ends_ms[0]
    assert record.server_closed_ms - speech_end < 3000             # at once after the second failure
    assert "2 responses failed in a row (rate_limit_exceeded)" in log
    assert (call["outcome"], call["hangup_reason"]) == ("failed", "realtime_failing")   # was no_lead, by silence


def test_while_the_model_fails_call_after_call_new_callers_hear_the_apology_at_once(tmp_path):
    loop = LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log", realtime_faults={"reject_status": 500})
    with loop:
        for _ in range(3):                                         # three calls fail at connect: the breaker opens
            first = loop.call(max_duration_s=30)
            assert first.after_stream[0][0] == "Say"
        started = time.monotonic()
        record = loop.call(max_duration_s=30)
        took_s = time.monotonic() - started
        metrics = loop.metrics()
        call = call_record(loop, record.call_sid)
        log = loop.log_text()
    assert record.after_stream[0][0] == "Say" and APOLOGY in record.after_stream[0][1]
    assert took_s < 1.0                                            # the webhook itself apologised
    assert "prosaas_calls_refused_model_down_total 1.0" in metrics
    assert (call["outcome"], call["hangup_reason"]) == ("failed", "model_unavailable")
    assert "[BREAKER] the model has failed call after call" in log
