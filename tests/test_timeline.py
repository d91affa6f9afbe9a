"""The call's timeline (``server/core/timeline.py``) as the core records it, on fake time."""
import base64

from server.core import realtime_protocol as rt
from server.core.events import note
from server.core.timeline import MAX_ITEMS, NOTE_EVENTS, Timeline
from server.core.log_lines import LINES
from tests.audio_helpers import SILENT, SPEECH, VOICE
from tests.test_call_core import CFG, Call, ask


def kinds(items, lane):
    return [x["kind"] for x in items if x["lane"] == lane]


def test_a_turn_its_answer_and_a_barge_in_are_drawn_where_they_happened():
    call = Call()
    t0 = call.now_ms + 20                         # the first fact: the first caller frame
    call.frames(SILENT, 20)
    call.frames(SPEECH, 50)                       # 1 s of speech from t0 + 400
    call.frames(SILENT, CFG.eou_silence_ms // 20)
    eou_at = call.now_ms
    ask(call.core, "end_of_speech", call.now_ms)
    call.frames(SILENT, CFG.reply_hold_ms // 20 + 1)   # quiet for the reply hold: the answer plays at once
    created_at = call.now_ms + 200
    call.now_ms += 200
    call.rt(rt.ResponseCreated("resp_1"))
    call.now_ms += 300
    call.rt(rt.AudioDelta("resp_1", "item_1", base64.b64encode(VOICE * 100).decode()))
    first_play = call.now_ms + 20
    call.frames(SILENT, 40, played_item="item_1", played=VOICE)     # 800 ms played, 20 ms frames
    call.frames(SPEECH, CFG.barge_in_confirm_ms // 20, played_item="item_1", played=VOICE)
    call.frames(SPEECH, 10)
    call.now_ms += 100
    call.rt(rt.ResponseDone("resp_1", "cancelled", "client_cancelled"))
    end = call.core.finish("caller_hung_up").timeline

    assert end["v"] == 1 and end["lanes"] == ["caller", "gate", "model", "playout"]
    assert end["duration_ms"] == call.now_ms - t0
    speech = [s for s in end["spans"] if s["kind"] == "speech"]
    onset_ms = 10_400 - t0                        # the first speech frame began at 10 400 on the fake clock
    assert (speech[0]["from_ms"], speech[0]["to_ms"]) == (onset_ms, onset_ms + 1000)   # the VAD's speech
    assert kinds(end["events"], "caller") == ["end_of_utterance", "barge_in"]
    assert [e["t_ms"] for e in end["events"] if e["kind"] == "end_of_utterance"] == [eou_at - t0]
    assert kinds(end["events"], "model") == ["response.create"]
    response = [s for s in end["spans"] if s["kind"] == "response"]
    assert response == [{"lane": "model", "kind": "response", "from_ms": created_at - t0,
                         "to_ms": call.now_ms - t0, "label": "cancelled"}]
    played = [s for s in end["spans"] if s["kind"] == "ai_audio"]
    assert len(played) == 1 and played[0]["from_ms"] == first_play - t0     # one run of frames, cut by the barge-in
    assert played[0]["to_ms"] - played[0]["from_ms"] >= 800
    forwarded = [s for s in end["spans"] if s["kind"] == "forwarded"]
    assert len(forwarded) == 2                    # the first utterance, then the barge-in's speech
    assert forwarded[0]["from_ms"] == onset_ms - CFG.pre_roll_ms        # the pre-roll went with the onset
    assert end["latencies"] == [{"eou_ms": onset_ms + 1000, "create_ms": eou_at - t0, "first_audio_ms": first_play - t0}]
    assert end["dropped"] == 0


def test_echo_held_back_is_a_gate_span_and_the_hangup_a_call_event():
    call = Call()
    call.frames(SILENT, 20)
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(rt.AudioDelta("resp_1", "item_1", base64.b64encode(VOICE * 20).decode()))
    call.frames(SPEECH, 10, played_item="item_1", played=VOICE)   # loud sound right over the AI: held back
    timeline = call.core.timeline.to_dict()
    assert "echo_blocked" in kinds(timeline["spans"], "gate")
    call.core.timeline.on_note(call.now_ms, note('INFO', 'hangup', reason="lead_captured"))
    assert call.core.timeline.to_dict()["events"][-1] == {"lane": "call", "kind": "hangup",
                                                          "t_ms": call.now_ms - 10_020, "label": "lead_captured"}


def test_every_mapped_note_is_a_real_log_line_with_the_fields_its_label_uses():
    for code in NOTE_EVENTS:
        assert code in LINES, code


def test_the_record_is_bounded():
    timeline = Timeline()
    for i in range(MAX_ITEMS + 50):
        timeline.event(i * 10, "model", "error", "x" * 200)
    record = timeline.to_dict()
    assert len(record["events"]) == MAX_ITEMS and record["dropped"] == 50
    assert len(record["events"][0]["label"]) == 60


def test_runs_join_close_frames_and_split_after_a_gap():
    timeline = Timeline()
    timeline.run(0, 20, "playout", "ai_audio")
    timeline.run(40, 60, "playout", "ai_audio")      # 20 ms later: the same run
    timeline.run(300, 320, "playout", "ai_audio")    # after a pause: a new one
    assert [(s["from_ms"], s["to_ms"]) for s in timeline.to_dict()["spans"]] == [(0, 60), (300, 320)]


def test_a_response_still_open_runs_to_the_end():
    timeline = Timeline()
    timeline.on_note(1000, note('INFO', 'response_created', response_id="r"))
    record = timeline.to_dict(5000)
    assert record["spans"][0]["to_ms"] == 4000 and record["duration_ms"] == 4000
