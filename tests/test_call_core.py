"""The call core under fake time: the behaviour contract as exact actions."""
import base64

from server.core import realtime_protocol as rt
from server.core.call_core import TTS_END_MARK, CallCore, Pipeline
from server.core.energy_vad import VadState
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerFrame, CommitAndTrigger,
                                EndAssistantAudio, ForwardAudio, MarkAcked, Note, QueueAssistantAudio, QueueTrigger,
                                RealtimeReceived, SendMark, SendResponseCreate, SessionReady, Tick)
from server.core.turn_config import TurnConfig
from tests.audio_helpers import SILENT, VOICE, b64

CFG = TurnConfig()


class Call:
    """A core plus a fake clock and a caller-audio clock, both in ms."""

    def __init__(self) -> None:
        self.core = CallCore(CFG, greeting_instructions="Greet")
        self.now_ms = 10_000
        self.audio_ms = 0
        self.actions: list = []

    def frames(self, frame: bytes, count: int, played_item: str | None = None) -> list:
        out = []
        for _ in range(count):
            self.now_ms += 20
            self.audio_ms += 20
            if played_item is not None:            # AI audio playing at the same time
                out += self.core.handle(AssistantFramePlayed(played_item, self.now_ms))
            out += self.core.handle(CallerFrame(frame, b64(frame), self.audio_ms, self.now_ms))
        self.actions += out
        return out

    def rt(self, event, tx_frames: int = 0, out_chunks: int = 0, queued_ms: int = 0) -> list:
        out = self.core.handle(RealtimeReceived(event, self.now_ms, tx_frames, out_chunks, queued_ms))
        self.actions += out
        return out

    def tick(self, advance_ms: int = 50, tx_frames: int = 0, out_chunks: int = 0) -> list:
        self.now_ms += advance_ms
        out = self.core.handle(Tick(self.now_ms, tx_frames, out_chunks))
        self.actions += out
        return out


def notes(actions) -> list[str]:
    return [a.text for a in actions if isinstance(a, Note)]


def verbs(actions) -> list:
    return [a for a in actions if not isinstance(a, Note)]


def test_greeting_goes_through_the_guard_once():
    call = Call()
    out = call.core.handle(SessionReady(call.now_ms))
    assert verbs(out) == [QueueTrigger("greeting")]
    assert "[GREETING] Bot speaks first..." in notes(out)
    first = call.core.request_response("greeting", call.now_ms)
    assert verbs(first) == [SendResponseCreate("greeting", "Greet")]
    second = call.core.request_response("greeting", call.now_ms + 5)
    assert verbs(second) == []
    assert notes(second) == ["[RESPONSE GUARD] Active response in progress (pending:greeting) – skipping new response (greeting)"]


def test_utterance_is_forwarded_and_triggers_exactly_once():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(VOICE, 50)                      # 1 s of speech
    out = call.frames(SILENT, 20)               # 400 ms of silence -> end of utterance
    assert [v for v in verbs(call.actions) if not isinstance(v, ForwardAudio)] == [CommitAndTrigger("end_of_speech")]
    assert sum(isinstance(a, ForwardAudio) for a in call.actions) == 90      # every frame, speech or not
    assert "🎤 END OF UTTERANCE: 1.0s, echo_blocked=False" in notes(out)
    assert "🎯 [BUILD 196.3] SPEECH→SILENCE: Triggering AI response (conversation #1)" in notes(out)
    assert call.core.state is Pipeline.PROCESSING
    assert [v for v in verbs(call.core.request_response("end_of_speech", call.now_ms))] == \
        [SendResponseCreate("end_of_speech", None)]


def test_short_utterance_is_skipped():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(VOICE, 10)                      # 200 ms
    out = call.frames(SILENT, 20)
    assert "[UTT] SKIPPED: duration=200ms < MIN_UTTERANCE_MS=300ms" in notes(out)
    assert not any(isinstance(a, CommitAndTrigger) for a in call.actions)


def test_echo_blocks_forwarding_and_triggering_but_never_the_vad():
    call = Call()
    call.frames(SILENT, 20)
    call.core.handle(RealtimeReceived(rt.ResponseCreated("resp_1"), call.now_ms, 0, 0))
    # AI audio is being played while an echo of it comes back at speech level
    out = call.frames(VOICE, 50, played_item="item_1")
    assert call.core.vad.state is VadState.SPEECH           # the VAD saw every frame
    assert not any(isinstance(a, ForwardAudio) for a in out)
    assert call.core.stats.frames_blocked == 50
    out = call.frames(SILENT, 20, played_item="item_1")
    assert "[BUILD 196.3] SPEECH→SILENCE during echo block - NOT triggering (echo protection)" in notes(out)
    assert "🎤 END OF UTTERANCE: 1.0s, echo_blocked=True" in notes(out)
    assert not any(isinstance(a, CommitAndTrigger) for a in call.actions)


def test_echo_window_ends_after_echo_window_ms():
    call = Call()
    call.frames(SILENT, 20, played_item="item_1")           # last AI frame played at now
    last_played = call.now_ms
    call.frames(SILENT, CFG.echo_window_ms // 20 - 1)
    assert call.core.echo_blocked(call.now_ms)
    call.frames(SILENT, 1)
    assert call.now_ms - last_played == CFG.echo_window_ms
    assert not call.core.echo_blocked(call.now_ms)


def test_response_lifecycle_back_to_listening_on_mark_ack():
    call = Call()
    call.core.handle(SessionReady(call.now_ms))
    call.core.request_response("greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    audio = b"\x10" * 1600
    out = call.rt(rt.AudioDelta("resp_1", "item_1", base64.b64encode(audio).decode()))
    assert verbs(out) == [QueueAssistantAudio("resp_1", "item_1", audio)]
    assert call.core.state is Pipeline.SPEAKING and call.core.is_ai_speaking
    out = call.rt(rt.AudioDone("resp_1", "item_1"), tx_frames=8, out_chunks=1, queued_ms=200)
    assert verbs(out) == [EndAssistantAudio("resp_1")]
    assert "🔇 [AUDIO_DONE] Received for response_id=resp_1, queues: tx=8, audio_out=1" in notes(out)
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    assert call.core.is_ai_speaking                           # still audible: queues not drained
    out = call.tick(50, tx_frames=3)
    assert call.core.is_ai_speaking and not notes(out)
    out = call.tick(50, tx_frames=0)
    assert "✅ [AUDIO_DRAIN] Queues empty after 100ms - clearing is_ai_speaking" in notes(out)
    out = call.core.handle(AssistantPlayoutFinished("resp_1", call.now_ms))
    assert verbs(out) == [SendMark(TTS_END_MARK)]
    out = call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms + 30))
    assert "STATE -> LISTENING | buffer_reset" in notes(out)
    assert call.core.state is Pipeline.LISTENING


def test_drain_does_not_clear_for_a_newer_response():
    call = Call()
    call.core.request_response("greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(rt.AudioDelta("resp_1", "item_1", "AAAA"))
    call.rt(rt.AudioDone("resp_1", "item_1"), tx_frames=5)
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    call.core.request_response("end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_2"))
    call.rt(rt.AudioDelta("resp_2", "item_2", "AAAA"))
    out = call.tick(50, tx_frames=0)
    assert not any("AUDIO_DRAIN] Queues empty" in n for n in notes(out))
    assert call.core.is_ai_speaking


def test_watchdog_clears_pending_without_a_second_create():
    call = Call()
    call.core.handle(SessionReady(call.now_ms))
    call.core.request_response("greeting", call.now_ms)
    out = []
    for _ in range(CFG.response_created_timeout_ms // 50):
        out += call.tick(50)
    assert any(n.startswith("[WATCHDOG] no response.created 2500ms") for n in notes(out))
    assert not any(isinstance(a, SendResponseCreate) for a in out)
    assert call.core.state is Pipeline.LISTENING
    assert not call.core.guard.busy


def test_no_audio_watchdog_returns_to_listening():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(VOICE, 50)
    call.frames(SILENT, 20)
    call.core.request_response("end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))              # created, but no audio ever comes
    out = []
    for _ in range(CFG.no_audio_timeout_ms // 50):
        out += call.tick(50)
    assert any(n.startswith("[WATCHDOG] no AI audio") for n in notes(out))
    assert call.core.state is Pipeline.LISTENING
    assert not any(isinstance(a, SendResponseCreate) for a in out)


def test_rejected_create_is_counted_and_frees_the_guard():
    call = Call()
    call.core.request_response("end_of_speech", call.now_ms)
    call.rt(rt.RealtimeError("conversation_already_has_active_response", "busy", "invalid_request_error"))
    assert call.core.stats.errors["conversation_already_has_active_response"] == 1
    assert not call.core.guard.busy


def test_pipeline_status_every_interval_not_per_frame():
    call = Call()
    call.tick(50)                                       # the first tick starts the status clock
    lines = []
    for _ in range(200):                                # then 10 s of ticks
        lines += [n for n in notes(call.tick(50)) if n.startswith("[PIPELINE STATUS]")]
    assert len(lines) == 10000 // CFG.status_interval_ms
    assert lines[0] == ("[PIPELINE STATUS] sent=0 blocked=0 | active_response=None | ai_speaking=False "
                        "| user_has_spoken=False")


def test_transcripts_are_logged():
    call = Call()
    assert "ASR_TEXT: בתל אביב | dur_ms=0" in notes(call.rt(rt.InputTranscription("item_1", "בתל אביב")))
    assert "🤖 [REALTIME] AI said: שלום" in notes(call.rt(rt.TranscriptDone("resp_1", "item_1", "שלום")))
