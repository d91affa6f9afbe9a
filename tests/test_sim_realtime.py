"""The OpenAI Realtime simulator behaves like the real service (protocols.md), over a real socket."""
import base64
import json
import re
import threading

import pytest
import websocket

from server.core import realtime_protocol as rt
from sim import scenario as scenario_mod
from sim.ga_validation import validate_server_event
from sim.realtime_server import RealtimeSimulator
from sim.realtime_session import RealtimeSession, ReplyScript, SimCounters
from sim.scenario import ScenarioError, ToolReply


@pytest.fixture(scope="module")
def sim():
    s = RealtimeSimulator(ReplyScript.from_clips(["ai_ask_city"], fallback="ai_fallback"), speedup=50.0)
    s.start()
    yield s
    s.stop()


class Client:
    def __init__(self, url: str, headers=("Authorization: Bearer sk-test",)) -> None:
        self.ws = websocket.create_connection(url + "?model=gpt-realtime", header=list(headers), timeout=10)
        self.seen: list[dict] = []

    def send(self, obj) -> None:
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def recv(self) -> dict:
        event = json.loads(self.ws.recv())
        self.seen.append(event)
        return event

    def until(self, event_type: str) -> list[dict]:
        out = []
        while True:
            out.append(self.recv())
            if out[-1]["type"] == event_type:
                return out

    def ready(self) -> "Client":
        assert self.recv()["type"] == "session.created"
        self.send(rt.session_update("x", "marin", "gpt-4o-mini-transcribe"))
        assert self.recv()["type"] == "session.updated"
        return self


def test_session_created_has_the_real_defaults(sim):
    c = Client(sim.url)
    created = c.recv()
    assert created["type"] == "session.created"
    assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


def test_session_update_errors_match_the_real_codes(sim):
    c = Client(sim.url)
    c.recv()
    c.send({"type": "session.update", "session": {"voice": "alloy"}})
    err = c.recv()["error"]
    assert (err["code"], err["param"], err["message"]) == (
        "missing_required_parameter", "session.type", "Missing required parameter: 'session.type'.")
    c.send({"type": "session.update", "session": {"type": "realtime", "input_audio_format": "g711_ulaw"}})
    err = c.recv()["error"]
    assert (err["code"], err["param"]) == ("unknown_parameter", "session.input_audio_format")
    c.send({"type": "response.audio.delta"})
    assert c.recv()["error"]["code"] == "invalid_value"


def test_commit_under_100ms_is_refused_then_accepted(sim):
    c = Client(sim.url).ready()
    c.send(rt.input_audio_append("/w==" * 0 + "////" * 100))       # 300 bytes = 37.5 ms of pcmu
    c.send(rt.input_audio_commit())
    err = c.recv()["error"]
    assert err["code"] == "input_audio_buffer_commit_empty"
    assert err["message"].endswith("but buffer only has 37.50ms of audio.")
    c.send(rt.input_audio_append("////" * 200))                      # +600 bytes -> 112.5 ms
    c.send(rt.input_audio_commit())
    assert [e["type"] for e in (c.recv(), c.recv(), c.recv())] == [
        "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]


def test_second_create_while_active_is_refused_and_no_second_response(sim):
    c = Client(sim.url).ready()
    c.send(rt.response_create())
    c.send(rt.response_create())
    events = c.until("response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["error"]["code"] == "conversation_already_has_active_response"
    resp_id = events[0]["response"]["id"]
    assert f"in progress: {resp_id}. Wait until" in errors[0]["error"]["message"]
    assert sum(e["type"] == "response.created" for e in events) == 1
    types = [e["type"] for e in events if e["type"] != "error"]
    assert types[:4] == ["response.created", "response.output_item.added", "conversation.item.added",
                         "response.content_part.added"]
    assert types[-6:] == ["response.output_audio.done", "response.output_audio_transcript.done",
                          "response.content_part.done", "response.output_item.done", "conversation.item.done",
                          "response.done"]
    assert events[-1]["response"]["status"] == "completed"


def test_cancel_and_cancel_not_active(sim):
    c = Client(sim.url).ready()
    c.send(rt.response_cancel())
    assert c.recv()["error"]["code"] == "response_cancel_not_active"
    c.send(rt.response_create())
    first = c.until("response.output_audio.delta")
    c.send(rt.response_cancel())
    done = c.until("response.done")[-1]["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "client_cancelled")
    assert first[0]["type"] == "response.created"


def test_truncate_is_checked_against_audio_sent(sim):
    c = Client(sim.url).ready()
    c.send(rt.response_create())
    events = c.until("response.done")
    item_id = next(e["item_id"] for e in events if e["type"] == "response.output_audio.delta")
    sent_ms = sum(len(base64.b64decode(e["delta"])) for e in events if e["type"] == "response.output_audio.delta") // 8
    c.send(rt.item_truncate(item_id, sent_ms + 500))
    err = c.recv()["error"]
    assert err["code"] == "invalid_value"
    assert err["message"] == f"Audio content of {sent_ms}ms is already shorter than {sent_ms + 500}ms"
    c.send(rt.item_truncate(item_id, 100))
    assert c.recv() | {"event_id": None} == {"type": "conversation.item.truncated", "event_id": None,
                                             "item_id": item_id, "content_index": 0, "audio_end_ms": 100}


def test_every_server_event_is_valid_ga(sim):
    c = Client(sim.url).ready()
    c.send(rt.input_audio_append("////" * 300))
    c.send(rt.input_audio_commit())
    c.send(rt.response_create())
    c.until("response.done")
    problems = {e["type"]: validate_server_event(e) for e in c.seen if validate_server_event(e)}
    assert problems == {}
    assert len({e["type"] for e in c.seen}) >= 12


def test_beta_opt_in_is_refused_with_close_4000(sim):
    c = Client(sim.url, headers=("Authorization: Bearer sk-test", "OpenAI-Beta: realtime=v1"))
    assert c.recv()["error"]["code"] == "beta_api_shape_disabled"
    opcode, frame = c.ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 4000


def test_missing_bearer_is_http_401(sim):
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        websocket.create_connection(sim.url, timeout=5)
    assert exc.value.status_code == 401


def test_counters_record_invalid_client_events(sim):
    before = len(sim.counters.invalid_client_events)
    c = Client(sim.url)
    c.recv()
    c.send({"type": "input_audio_buffer.append", "audio": "AAAA", "extra": 1})
    c.send(rt.input_audio_clear())
    assert c.recv()["type"] == "input_audio_buffer.cleared"
    assert len(sim.counters.invalid_client_events) == before + 1


# --- scripted function calls, driving a RealtimeSession directly (no socket) -----------------------

SAVE_LEAD = ToolReply("save_lead", json.dumps({"service": "מנעול חכם", "city": "בתל אביב"}, ensure_ascii=False))


class Direct:
    """A RealtimeSession with its server events collected; ``until`` waits for the response thread."""

    def __init__(self, replies, **kwargs) -> None:
        self.events: list[dict] = []
        self.on_event = None            # called with each event, on the sending thread
        self._cond = threading.Condition()
        self.counters = SimCounters()
        self.session = RealtimeSession(self._collect, ReplyScript.from_scenario_replies(replies, fallback=None),
                                       self.counters, **{"speedup": 50.0, **kwargs})
        self.session.start()

    def _collect(self, event: dict) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        if self.on_event:
            self.on_event(event)

    def send(self, obj) -> None:
        self.session.on_client_text(obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False))

    def until(self, event_type: str, count: int = 1) -> list[dict]:
        with self._cond:
            assert self._cond.wait_for(lambda: sum(e["type"] == event_type for e in self.events) >= count, 10)
            return list(self.events)


def test_tool_reply_is_the_ga_function_call_sequence():
    d = Direct([SAVE_LEAD])
    d.send(rt.response_create())
    events = d.until("response.done")[1:]          # after session.created
    types = [e["type"] for e in events]
    deltas = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) >= 1
    assert types == ["response.created", "response.output_item.added", "conversation.item.added",
                     *["response.function_call_arguments.delta"] * len(deltas),
                     "response.function_call_arguments.done", "response.output_item.done",
                     "conversation.item.done", "response.done"]
    resp_id = events[0]["response"]["id"]
    added = events[1]["item"]
    call_id, item_id = added["call_id"], added["id"]
    assert re.fullmatch(r"call_[0-9a-f]{16}", call_id)
    assert added == {"id": item_id, "type": "function_call", "object": "realtime.item", "status": "in_progress",
                     "call_id": call_id, "name": "save_lead", "arguments": ""}
    assert events[2]["item"] == added
    where = {"response_id": resp_id, "item_id": item_id, "output_index": 0, "call_id": call_id}
    assert all({k: e[k] for k in where} == where and set(e) == {"type", "event_id", *where, "delta"}
               for e in deltas)
    assert "".join(e["delta"] for e in deltas) == SAVE_LEAD.arguments_json
    args_done = events[-4]
    assert args_done == {"type": "response.function_call_arguments.done", "event_id": args_done["event_id"],
                         **where, "name": "save_lead", "arguments": SAVE_LEAD.arguments_json}
    finished = {**added, "status": "completed", "arguments": SAVE_LEAD.arguments_json}
    assert events[-3]["item"] == finished and events[-2]["item"] == finished
    done = events[-1]["response"]
    assert (done["id"], done["status"], done["output"]) == (resp_id, "completed", [finished])
    assert d.counters.tool_calls == [("save_lead", call_id, SAVE_LEAD.arguments_json)]
    assert d.counters.replies == [(None, "", "completed")]


def test_tool_call_round_trip_every_event_is_valid_ga():
    d = Direct([SAVE_LEAD, "ai_ask_city"], first_audio_delay_ms=20)
    d.send(rt.response_create())
    call_id = d.until("response.done")[-1]["response"]["output"][0]["call_id"]
    d.send({"type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": '{"ok": true}'}})
    d.send(rt.response_create())
    events = d.until("response.done", count=2)
    assert {e["type"]: validate_server_event(e) for e in events if validate_server_event(e)} == {}
    assert d.counters.tool_outputs == [(call_id, '{"ok": true}')]
    output_item = next(e["item"] for e in events if e["type"] == "conversation.item.added"
                       and e["item"]["type"] == "function_call_output")
    assert (output_item["call_id"], output_item["output"]) == (call_id, '{"ok": true}')
    second = events[[i for i, e in enumerate(events) if e["type"] == "response.created"][1]:]
    assert "response.output_audio.delta" in [e["type"] for e in second]
    assert second[-1]["response"]["output"][0]["content"][0]["transcript"] == "בשמחה. באיזו עיר אתם נמצאים?"
    assert [clip for clip, _, _ in d.counters.replies] == [None, "ai_ask_city"]
    assert d.counters.invalid_client_events == []


def test_function_call_output_needs_a_known_call_id():
    d = Direct([SAVE_LEAD])
    d.send({"type": "conversation.item.create", "event_id": "evt_1",
            "item": {"type": "function_call_output", "call_id": "call_0123456789abcdef", "output": "{}"}})
    d.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "output": "{}"}})
    errors = [e["error"] for e in d.until("error", count=2) if e["type"] == "error"]
    assert errors == [
        {"type": "invalid_request_error", "code": "invalid_value", "param": "item.call_id", "event_id": "evt_1",
         "message": "Tool call ID 'call_0123456789abcdef' not found in conversation."},
        {"type": "invalid_request_error", "code": "missing_required_parameter", "param": "item.call_id",
         "event_id": None, "message": "Missing required parameter: 'item.call_id'."}]
    assert d.counters.tool_outputs == []
    assert [e["type"] for e in d.events] == ["session.created", "error", "error"]   # no item was added


def test_cancelled_tool_call_has_no_arguments_done():
    d = Direct([SAVE_LEAD], delta_ms=2000, speedup=1.0)     # 0.5 s between deltas: the cancel lands first
    d.on_event = lambda e: e["type"] == "response.function_call_arguments.delta" and d.send(rt.response_cancel())
    d.send(rt.response_create())
    events = d.until("response.done")
    types = [e["type"] for e in events]
    assert "response.function_call_arguments.done" not in types
    assert types[-4:] == ["response.function_call_arguments.delta", "response.output_item.done",
                          "conversation.item.done", "response.done"]
    done = events[-1]["response"]
    assert (done["status"], done["status_details"]["reason"]) == ("cancelled", "client_cancelled")
    item = done["output"][0]
    assert item["status"] == "incomplete" and SAVE_LEAD.arguments_json.startswith(item["arguments"])
    assert d.counters.tool_calls == [] and d.counters.responses_cancelled == 1
    assert {e["type"]: validate_server_event(e) for e in events if validate_server_event(e)} == {}


def test_tool_call_cancelled_while_thinking_has_no_output():
    d = Direct([SAVE_LEAD], first_audio_delay_ms=5000)
    d.send(rt.response_create())
    d.send(rt.response_cancel())
    events = d.until("response.done")
    assert [e["type"] for e in events] == ["session.created", "response.created", "response.done"]
    assert (events[-1]["response"]["status"], events[-1]["response"]["output"]) == ("cancelled", [])


# --- scenario replies ------------------------------------------------------------------------------

STEPS = '[caller]\nsteps = [{ hangup = true }]\n'


def test_scenario_replies_take_tool_tables():
    text = ('[realtime]\nreplies = ["ai_greeting", { tool = "save_lead", arguments = '
            '{ service = "מנעול חכם", city = "בתל אביב" } }]\n' + STEPS)
    sc = scenario_mod.parse(text, "t.toml")
    assert sc.replies == ["ai_greeting", SAVE_LEAD]
    assert json.loads(sc.replies[1].arguments_json) == {"service": "מנעול חכם", "city": "בתל אביב"}
    script = ReplyScript.from_scenario_replies(sc.replies)
    assert [(r.clip, r.tool) for r in script.replies] == [("ai_greeting", None), (None, SAVE_LEAD)]
    assert script.fallback.clip == "ai_fallback"
    assert sc == scenario_mod.parse(text, "t.toml")           # still compares by value


def test_scenario_docstring_example_parses():
    example = re.search(r"```toml\n(.*?)```", scenario_mod.__doc__, re.S).group(1)
    assert any(isinstance(r, ToolReply) for r in scenario_mod.parse(example).replies)


@pytest.mark.parametrize("reply, complaint", [
    ('{ tool = "save_lead" }', "exactly 'tool' and 'arguments', got ['tool']"),
    ('{ tool = "save_lead", arguments = {}, extra = 1 }', "got ['arguments', 'extra', 'tool']"),
    ('{ tool = 3, arguments = {} }', "'tool' must be a non-empty string, got 3"),
    ('{ tool = "save_lead", arguments = "x" }', "'arguments' must be a table, got 'x'"),
    ('{ tool = "save_lead", arguments = { when = 2024-01-01 } }', "'arguments' must be JSON-serialisable"),
    ('"no_such_clip"', "no_such_clip"),
    ('7', "a reply is a clip name or a table"),
])
def test_scenario_reply_errors_name_the_file_and_reply(reply, complaint):
    with pytest.raises(ScenarioError) as exc:
        scenario_mod.parse(f'[realtime]\nreplies = ["ai_greeting", {reply}]\n' + STEPS, "bad.toml")
    assert str(exc.value).startswith("bad.toml: [realtime] reply 2: ")
    assert complaint in str(exc.value)


def test_server_vad_commits_the_utterance_with_its_padding_and_answers():
    """The session's default turn detection (our server turns it off; Twilio's sample relies on it):
    speech_started, speech_stopped after the silence, the utterance committed with its prefix
    padding only, and a response."""
    from sim.realtime_session import RealtimeSession, ReplyScript, SimCounters
    events: list = []
    counters = SimCounters()
    session = RealtimeSession(events.append, ReplyScript([]), counters, speedup=1000.0)
    session.on_client_text(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"},
                                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}}))
    quiet, loud = b"\xff" * 160, bytes([0x10, 0x90] * 80)     # silence; a ±10 000 square wave
    for frame in [quiet] * 100 + [loud] * 50 + [quiet] * 30:   # 2 s quiet, 1 s speech, 0.6 s quiet
        session.on_client_text(json.dumps({"type": "input_audio_buffer.append",
                                           "audio": base64.b64encode(frame).decode()}))
    kinds = [e["type"] for e in events]
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "input_audio_buffer.committed", "response.created"):
        assert kind in kinds
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    assert started["audio_start_ms"] == 2000 - 300
    assert counters.committed_ms == 300 + 1000 + 500         # padding, speech, silence up to the stop
    assert counters.appended_ms == 3600


def _usage_of(d: Direct, n: int) -> dict:
    return [e for e in d.until("response.done", n) if e["type"] == "response.done"][n - 1]["response"]["usage"]


def test_the_prompt_cache_takes_exact_prefixes_of_1024_tokens_in_steps_of_128():
    d = Direct(["ai_ask_city", "ai_confirm", "ai_goodbye"])
    d.send(rt.session_update("א" * 4400, "marin", None))        # 1100 text tokens of instructions
    d.until("session.updated")
    d.send(rt.response_create())
    first = _usage_of(d, 1)
    assert first["input_token_details"]["cached_tokens"] == 0          # nothing read before
    d.send(rt.response_create())
    second = _usage_of(d, 2)
    details = second["input_token_details"]
    reply_words = len(d.counters.replies[0][1]) // 4       # the first reply is read again: its audio and words
    assert details["text_tokens"] == 1100 + reply_words and details["audio_tokens"] > 0
    assert details["cached_tokens"] == 1024                 # 1100 shared with the first prompt: 8 steps of 128
    assert details["cached_tokens_details"] == {"text_tokens": 1024, "audio_tokens": 0, "image_tokens": 0}
    d.send(rt.response_create("Say goodbye"))               # its own instructions: another prefix, a miss
    third = _usage_of(d, 3)
    assert third["input_token_details"]["cached_tokens"] == 0


def test_an_item_inserted_after_another_takes_its_place_and_an_unknown_one_is_refused():
    d = Direct(["ai_ask_city", "ai_confirm"])
    d.send(rt.response_create())
    done = [e for e in d.until("response.done") if e["type"] == "response.done"][0]["response"]
    item_id = done["output"][0]["id"]
    d.send(rt.assistant_text_after(item_id, "בשמחה. באיזו עיר אתם?"))
    d.send(rt.item_delete(item_id))
    added = [e for e in d.until("conversation.item.deleted") if e["type"] == "conversation.item.added"][-1]
    assert added["previous_item_id"] == item_id and added["item"]["role"] == "assistant"
    assert list(d.session.items) == [added["item"]["id"]]
    assert d.session.last_item_id == added["item"]["id"]
    d.send(rt.response_create())                 # the second reply is the script's next one (no skip)
    second = _usage_of(d, 2)
    assert second["input_token_details"]["audio_tokens"] == 0          # the reply is re-read as text
    assert d.counters.replies[1][0] == "ai_confirm"
    d.send(rt.assistant_text_after("item_nope", "x"))
    error = [e for e in d.until("error") if e["type"] == "error"][-1]["error"]
    assert error["code"] == "invalid_value" and error["param"] == "previous_item_id"
    assert d.counters.invalid_client_events == []          # every event sent is the GA shape (openai's models)


def test_an_out_of_band_response_is_billed_under_its_own_instructions():
    d = Direct(["ai_ask_city"])
    d.send(rt.out_of_band_text("Summarise", "owner_summary"))
    usage = _usage_of(d, 1)
    assert usage["output_token_details"]["text_tokens"] > 0
    assert usage["input_token_details"]["text_tokens"] == len("Summarise[]") // 4
    assert sum(d.counters.usage.values()) == usage["total_tokens"]
