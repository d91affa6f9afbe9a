import json

import pytest

from server.core import realtime_protocol as rt
from sim.ga_validation import validate_client_event


def test_client_events_exact_json():
    assert rt.input_audio_append("AAA=") == '{"type":"input_audio_buffer.append","audio":"AAA="}'
    assert rt.input_audio_commit() == '{"type":"input_audio_buffer.commit"}'
    assert rt.input_audio_clear() == '{"type":"input_audio_buffer.clear"}'
    assert rt.response_create() == '{"type":"response.create"}'
    assert rt.response_create("Greet") == '{"type":"response.create","response":{"instructions":"Greet"}}'
    assert rt.response_cancel() == '{"type":"response.cancel"}'
    assert rt.response_cancel("resp_1") == '{"type":"response.cancel","response_id":"resp_1"}'
    assert rt.item_truncate("item_1", 1234) == \
        '{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":1234}'
    assert json.loads(rt.session_update("Be brief", "marin", "gpt-4o-mini-transcribe")) == {
        "type": "session.update",
        "session": {"type": "realtime", "output_modalities": ["audio"], "instructions": "Be brief",
                    "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None,
                                        "transcription": {"model": "gpt-4o-mini-transcribe"}},
                              "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}}}


@pytest.mark.parametrize("text", [
    rt.session_update("x", "marin", "gpt-4o-mini-transcribe"), rt.session_update("x", "marin", None),
    rt.input_audio_append("AAA="), rt.input_audio_commit(), rt.input_audio_clear(), rt.response_create(),
    rt.response_create("hi"), rt.response_cancel(), rt.response_cancel("resp_1"), rt.item_truncate("item_1", 10)])
def test_every_client_event_is_valid_ga_with_no_unknown_keys(text):
    assert validate_client_event(json.loads(text)) == []


def test_validator_catches_beta_shapes():
    assert validate_client_event({"type": "session.update", "session": {"type": "realtime",
                                                                        "input_audio_format": "g711_ulaw"}}) == \
        ["unknown key session.input_audio_format"]
    assert validate_client_event({"type": "session.update", "session": {"voice": "alloy"}})
    assert validate_client_event({"type": "response.audio.delta"})


def test_parse_ga_server_events():
    delta = {"type": "response.output_audio.delta", "event_id": "e1", "response_id": "r1", "item_id": "i1",
             "output_index": 0, "content_index": 0, "delta": "AAA="}
    assert rt.parse_server_event(json.dumps(delta)) == rt.AudioDelta("r1", "i1", "AAA=")
    done = {"type": "response.done", "event_id": "e2", "response": {"id": "r1", "status": "cancelled",
                                                                     "status_details": {"type": "cancelled", "reason": "client_cancelled"}}}
    assert rt.parse_server_event(json.dumps(done)) == rt.ResponseDone("r1", "cancelled", "client_cancelled")
    err = {"type": "error", "event_id": "e3", "error": {"type": "invalid_request_error",
                                                         "code": "conversation_already_has_active_response",
                                                         "message": "busy", "param": None, "event_id": None}}
    assert rt.parse_server_event(json.dumps(err)) == rt.RealtimeError(
        "conversation_already_has_active_response", "busy", "invalid_request_error", None, None)
    assert rt.parse_server_event('{"type":"response.created","event_id":"e","response":{"id":"r9"}}') == \
        rt.ResponseCreated("r9")
    assert rt.parse_server_event('{"type":"conversation.item.input_audio_transcription.completed",'
                                 '"item_id":"i","content_index":0,"transcript":"כן"}') == rt.InputTranscription("i", "כן")


def test_beta_names_are_tolerated():
    beta = {"type": "response.audio.delta", "response_id": "r1", "item_id": "i1", "delta": "AAA="}
    assert rt.parse_server_event(json.dumps(beta)) == rt.AudioDelta("r1", "i1", "AAA=")
    assert rt.parse_server_event('{"type":"response.audio.done","response_id":"r","item_id":"i"}') == \
        rt.AudioDone("r", "i")


def test_unknown_and_malformed_never_raise():
    assert rt.parse_server_event('{"type":"brand.new.event"}') == rt.UnknownServerEvent("brand.new.event")
    assert rt.parse_server_event('{"type":"rate_limits.updated","rate_limits":[]}') == rt.Ignored("rate_limits.updated")
    for text in ["", "nope", "[]", '{"no":"type"}', '{"type":"response.done"}', '{"type":"response.output_audio.delta"}']:
        assert isinstance(rt.parse_server_event(text), rt.MalformedServerEvent), text


def test_an_infinite_number_is_a_malformed_event_not_a_crash():
    event = rt.parse_server_event('{"type":"conversation.item.truncated","item_id":"i","audio_end_ms":Infinity}')
    assert isinstance(event, rt.MalformedServerEvent) and "OverflowError" in event.reason
