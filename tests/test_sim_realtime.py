"""The OpenAI Realtime simulator behaves like the real service (protocols.md), over a real socket."""
import base64
import json

import pytest
import websocket

from server.core import realtime_protocol as rt
from sim.ga_validation import validate_server_event
from sim.realtime_server import RealtimeSimulator
from sim.realtime_session import ReplyScript


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
