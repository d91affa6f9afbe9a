"""Replies the caller heard whole are re-read by the model as text: the core's verbs under fake time."""
import base64

from server.core import realtime_protocol as rt
from server.core.call_core import TTS_END_MARK
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, AudioReplyAsText, DeleteItem,
                                MarkAcked, Reconnect, RealtimeReceived, TruncateAssistant)
from server.core.reply_history import ReplyHistory
from tests.test_call_core import Call, ask, verbs

AUDIO = b"\x10" * 1600


def play_greeting_whole(call: Call, transcript: str = "שלום, במה אפשר לעזור?") -> list:
    """The greeting generated, played to its last frame, its end mark acked; the verbs of the ack."""
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(rt.AudioDelta("resp_1", "item_1", base64.b64encode(AUDIO).decode()))
    call.rt(rt.AudioDone("resp_1", "item_1"))
    call.rt(rt.TranscriptDone("resp_1", "item_1", transcript))
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    call.core.handle(AssistantFramePlayed("item_1", call.now_ms, AUDIO))
    call.core.handle(AssistantPlayoutFinished("resp_1", call.now_ms))
    call.tick(50)
    return verbs(call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms + 30)))


def test_a_reply_heard_to_the_end_becomes_text_in_its_place_once():
    call = Call()
    assert AudioReplyAsText("item_1", "שלום, במה אפשר לעזור?") in play_greeting_whole(call)
    again = verbs(call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms + 60)))
    assert not any(isinstance(v, AudioReplyAsText) for v in again)


def test_the_shell_inserts_the_text_after_the_audio_item_then_deletes_it():
    inserted = rt.assistant_text_after("item_1", "שלום")
    assert '"previous_item_id":"item_1"' in inserted.replace(" ", "")
    assert '"role":"assistant"' in inserted.replace(" ", "") and '"output_text"' in inserted


def test_a_truncated_or_deleted_reply_stays_as_it_is_even_when_its_transcript_comes_late():
    history = ReplyHistory()
    history.watch([TruncateAssistant("item_1", 640), DeleteItem("item_2")])
    history.said(rt.TranscriptDone("resp_1", "item_1", "full text the caller never heard"), unheard=False)
    history.said(rt.TranscriptDone("resp_2", "item_2", "abandoned"), unheard=False)
    history.said(rt.TranscriptDone("resp_3", "item_3", "held, then abandoned"), unheard=True)
    out: list = []
    history.heard_whole(False, out)
    assert out == []


def test_not_under_a_response_in_flight_and_not_across_a_new_session():
    history = ReplyHistory()
    history.said(rt.TranscriptDone("resp_1", "item_1", "first"), unheard=False)
    out: list = []
    history.heard_whole(True, out)                 # a follow-up is being generated: later
    assert out == []
    history.heard_whole(False, out)
    assert [v for v in out if isinstance(v, AudioReplyAsText)] == [AudioReplyAsText("item_1", "first")]
    history.said(rt.TranscriptDone("resp_2", "item_2", "second"), unheard=False)
    history.watch([Reconnect(0, 1)])             # the new session was given the conversation as text
    out = []
    history.heard_whole(False, out)
    assert out == []
