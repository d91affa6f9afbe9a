"""The call core under fake time: the behaviour contract as exact actions."""
import base64

import pytest

from server.core import realtime_protocol as rt
from server.core.call_core import TTS_END_MARK, CallCore
from server.core.pipeline import Cause, ForbiddenTransition, Pipeline
from server.core.energy_vad import VadState
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerFrame, CancelResponse,
                                ClearPlayback, CommitAndTrigger, DeleteItem, EndAssistantAudio, ForwardAudio, HangUp,
                                MarkAcked, Note, PausePlayout, QueueAssistantAudio, QueueTrigger, RealtimeLinkLost,
                                RealtimeReceived, Reconnect, ReconnectFailed, RenewSession, ResumePlayout, SendMark,
                                SendResponseCreate, ShutdownRequested, StartAudio, Tick, TriggerReached,
                                TruncateAssistant, CommitSent)
from server.core.turn_config import TurnConfig
from tests.audio_helpers import SILENT, SPEECH, VOICE, b64, tone

CFG = TurnConfig()


def ask(core: CallCore, reason: str, now_ms: int) -> list:
    """What the audio sender reports once a queued marker came out: a commit for a caller's turn
    (``CommitSent``), else the trigger itself (``TriggerReached``)."""
    fact = CommitSent if reason == "end_of_speech" else TriggerReached
    return core.handle(fact(reason, now_ms))


class Call:
    """A core plus a fake clock and a caller-audio clock, both in ms."""

    def __init__(self) -> None:
        self.core = CallCore(CFG, {"greeting": "Greet"})
        self.now_ms = 10_000
        self.audio_ms = 0
        self.actions: list = []

    def frames(self, frame: bytes | list[bytes], count: int, played_item: str | None = None,
               played: bytes = b"") -> list:
        """``count`` caller frames; a list of frames is cycled (syllable-like speech)."""
        pattern = frame if isinstance(frame, list) else [frame]
        out = []
        for i in range(count):
            frame = pattern[i % len(pattern)]
            self.now_ms += 20
            self.audio_ms += 20
            if played_item is not None:            # AI audio playing at the same time
                out += self.core.handle(AssistantFramePlayed(played_item, self.now_ms, played))
            out += self.core.handle(CallerFrame(frame, self.audio_ms, self.now_ms))
        self.actions += out
        return out

    def rt(self, event) -> list:
        out = self.core.handle(RealtimeReceived(event, self.now_ms))
        self.actions += out
        return out

    def tick(self, advance_ms: int = 50) -> list:
        self.now_ms += advance_ms
        out = self.core.handle(Tick(self.now_ms))
        self.actions += out
        return out


def forwarded_frames(actions) -> list[bytes]:
    """The caller frames the core sent to the model, whatever appends they went in."""
    audio = b"".join(a.audio for a in actions if isinstance(a, ForwardAudio))
    return [audio[i:i + 160] for i in range(0, len(audio), 160)]


def notes(actions) -> list[str]:
    return [a.text for a in actions if isinstance(a, Note)]


def verbs(actions) -> list:
    return [a for a in actions if not isinstance(a, Note)]


def test_greeting_goes_through_the_guard_once():
    call = Call()
    out = call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    assert verbs(out) == [StartAudio(), QueueTrigger("greeting")]
    assert "[GREETING] Bot speaks first..." in notes(out)
    first = ask(call.core, "greeting", call.now_ms)
    assert verbs(first) == [SendResponseCreate("greeting", "Greet")]
    second = ask(call.core, "greeting", call.now_ms + 5)
    assert verbs(second) == []
    assert notes(second) == ["[RESPONSE GUARD] Active response in progress (pending:greeting) – skipping new response (greeting)"]


def test_utterance_is_forwarded_and_triggers_exactly_once():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(SPEECH, 50)                     # 1 s of speech
    out = call.frames(SILENT, CFG.eou_silence_ms // 20)   # silence -> end of utterance
    assert [v for v in verbs(call.actions) if not isinstance(v, ForwardAudio)] == [CommitAndTrigger("end_of_speech")]
    # only the utterance reaches the model: its pre-roll, its speech, the quiet up to the commit,
    # in appends of append_batch_ms, the last one just before the commit
    messages = [a.audio for a in call.actions if isinstance(a, ForwardAudio)]
    assert all(len(m) >= CFG.append_batch_ms * 8 for m in messages[:-1])     # the first carries the pre-roll
    audio = b"".join(messages)
    forwarded = [audio[i:i + 160] for i in range(0, len(audio), 160)]
    eou_frames = CFG.eou_silence_ms // 20 - 1          # the frame that ends the utterance is not sent
    pre_roll = CFG.pre_roll_ms // 20
    assert len(forwarded) == pre_roll + 50 + eou_frames
    assert len(messages) == -(-len(forwarded) * 20 // CFG.append_batch_ms)       # not one per frame
    assert forwarded[:pre_roll] + forwarded[-eou_frames:] == [SILENT] * (pre_roll + eou_frames)
    assert SILENT not in forwarded[pre_roll:-eou_frames]
    commit_at = call.actions.index(CommitAndTrigger("end_of_speech"))
    assert not any(isinstance(a, ForwardAudio) for a in call.actions[commit_at:])   # all of it went first
    assert not any(isinstance(a, ForwardAudio) for a in call.frames(SILENT, 100))   # nothing between turns
    assert "🎤 END OF UTTERANCE: 1.0s, echo_blocked=False" in notes(out)
    assert "🎯 [BUILD 196.3] SPEECH→SILENCE: Triggering AI response (conversation #1)" in notes(out)
    assert call.core.state is Pipeline.PROCESSING
    assert [v for v in verbs(ask(call.core, "end_of_speech", call.now_ms))] == \
        [SendResponseCreate("end_of_speech", None)]


def test_short_utterance_is_skipped():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(SPEECH, 10)                     # 200 ms
    out = call.frames(SILENT, 20)
    assert "[UTT] SKIPPED: duration=200ms < MIN_UTTERANCE_MS=300ms" in notes(out)
    assert not any(isinstance(a, CommitAndTrigger) for a in call.actions)


def test_echo_blocks_forwarding_and_triggering_but_never_the_vad():
    call = Call()
    call.frames(SILENT, 20)
    call.core.handle(RealtimeReceived(rt.ResponseCreated("resp_1"), call.now_ms))
    # AI audio is being played while an echo of it comes back at the same level
    out = call.frames(VOICE, 50, played_item="item_1", played=VOICE)
    assert call.core.turn.vad.state is VadState.SPEECH           # the VAD saw every frame
    assert not any(isinstance(a, ForwardAudio) for a in out)
    assert call.core.stats.frames_blocked == 50
    out = call.frames(SILENT, 20, played_item="item_1", played=SILENT)
    assert "[BUILD 196.3] SPEECH→SILENCE during echo block - NOT triggering (echo protection)" in notes(out)
    assert "🎤 END OF UTTERANCE: 1.0s, echo_blocked=True" in notes(out)
    assert not any(isinstance(a, CommitAndTrigger) for a in call.actions)


def test_echo_window_ends_after_echo_window_ms():
    call = Call()
    call.frames(SILENT, 20, played_item="item_1")           # last AI frame played at now
    last_played = call.now_ms
    call.frames(SILENT, CFG.echo_window_ms // 20 - 1)
    assert call.core.playback.echo_blocked(call.now_ms)
    call.frames(SILENT, 1)
    assert call.now_ms - last_played == CFG.echo_window_ms
    assert not call.core.playback.echo_blocked(call.now_ms)


def test_response_lifecycle_back_to_listening_on_mark_ack():
    call = Call()
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    audio = b"\x10" * 1600
    out = call.rt(rt.AudioDelta("resp_1", "item_1", base64.b64encode(audio).decode()))
    assert verbs(out) == [QueueAssistantAudio("resp_1", "item_1", audio)]
    assert call.core.state is Pipeline.SPEAKING and call.core.is_ai_speaking
    call.core.handle(AssistantFramePlayed("item_1", call.now_ms, audio[:320]))   # two frames went out
    out = call.rt(rt.AudioDone("resp_1", "item_1"))
    assert verbs(out) == [EndAssistantAudio("resp_1")]
    assert "🔇 [AUDIO_DONE] Received for response_id=resp_1, queues: tx=8, audio_out=0" in notes(out)
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    assert call.core.is_ai_speaking                           # still audible: the ledger is not drained
    out = call.tick(50)
    assert call.core.is_ai_speaking and not notes(out)
    call.core.handle(AssistantFramePlayed("item_1", call.now_ms, audio[320:]))   # the last eight
    out = call.core.handle(AssistantPlayoutFinished("resp_1", call.now_ms))
    assert verbs(out) == [SendMark(TTS_END_MARK)]
    assert call.core.is_ai_speaking                           # until the next drain poll
    out = call.tick(50)
    assert "✅ [AUDIO_DRAIN] Queues empty after 100ms - clearing is_ai_speaking (response_id=resp_1)" in notes(out)
    out = call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms + 30))
    assert "STATE -> LISTENING | buffer_reset" in notes(out)
    assert call.core.state is Pipeline.LISTENING


def test_drain_does_not_clear_for_a_newer_response():
    call = Call()
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(rt.AudioDelta("resp_1", "item_1", "AAAA"))
    call.rt(rt.AudioDone("resp_1", "item_1"))
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    call.core.handle(AssistantFramePlayed("item_1", call.now_ms, b"\xff" * 160))
    call.core.handle(AssistantPlayoutFinished("resp_1", call.now_ms))     # resp_1 all out
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_2"))
    call.rt(rt.AudioDelta("resp_2", "item_2", "AAAA"))
    out = call.tick(50)
    assert not any("AUDIO_DRAIN] Queues empty" in n for n in notes(out))
    assert call.core.is_ai_speaking


def test_watchdog_clears_pending_without_a_second_create():
    call = Call()
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    out = []
    for _ in range(CFG.response_created_timeout_ms // 50):
        out += call.tick(50)
    assert any(n.startswith("[WATCHDOG] no response.created 2500ms") for n in notes(out))
    assert not any(isinstance(a, SendResponseCreate) for a in out)
    assert call.core.state is Pipeline.LISTENING
    assert not call.core.book.guard.busy


def test_no_audio_watchdog_returns_to_listening():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(SPEECH, 50)
    call.frames(SILENT, 20)
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))              # created, but no audio ever comes
    out = []
    for _ in range(CFG.no_audio_timeout_ms // 50):
        out += call.tick(50)
    assert any(n.startswith("[WATCHDOG] no AI audio") for n in notes(out))
    assert call.core.state is Pipeline.LISTENING
    assert not any(isinstance(a, SendResponseCreate) for a in out)


def test_rejected_create_is_counted_and_frees_the_guard():
    call = Call()
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.RealtimeError("conversation_already_has_active_response", "busy", "invalid_request_error"))
    assert call.core.stats.errors["conversation_already_has_active_response"] == 1
    assert not call.core.book.guard.busy


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


def start_playing(call: Call, response_id: str = "resp_1", item_id: str = "item_1") -> None:
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated(response_id))
    call.rt(rt.AudioDelta(response_id, item_id, base64.b64encode(VOICE * 100).decode()))   # 2 s received


def test_barge_in_over_a_quiet_line_interrupts_once():
    call = Call()
    call.frames(SILENT, 20)
    start_playing(call)
    call.frames(SILENT, 40, played_item="item_1", played=VOICE)      # 800 ms played, line quiet: no echo
    pause_frames = CFG.barge_in_min_ms // 20
    out = call.frames(SPEECH, pause_frames, played_item="item_1", played=VOICE)   # the caller talks over the AI
    # barge_in_min_ms of sustained speech -> the playout pauses at once (nothing cancelled yet)
    assert [a for a in verbs(out) if not isinstance(a, ForwardAudio)] == [PausePlayout()]
    assert any(n.startswith(f"⏸ [BARGE-IN] caller sound for {CFG.barge_in_min_ms}ms over the AI") for n in notes(out))
    confirm_frames = CFG.barge_in_confirm_ms // 20
    out = call.frames(SPEECH, confirm_frames - pause_frames - 1)       # paused: nothing more is played
    assert verbs(out) == []
    out = call.frames(SPEECH, 1)                                      # barge_in_confirm_ms of sound: a barge-in
    barge = [a for a in verbs(out) if not isinstance(a, ForwardAudio)]
    # 40 frames played, and the pause_frames played before the pause -> truncate there
    assert barge == [CancelResponse("resp_1"), ClearPlayback(), TruncateAssistant("item_1", (40 + pause_frames) * 20)]
    assert any(n.startswith(f"⚡ [BARGE-IN] caller speech for {CFG.barge_in_confirm_ms}ms over the AI")
               for n in notes(out))
    # the held-back speech since its onset plus the pre-roll before it
    assert len(forwarded_frames(out)) == (CFG.barge_in_confirm_ms + CFG.pre_roll_ms) // 20
    assert call.core.state is Pipeline.LISTENING and not call.core.is_ai_speaking
    # late deltas of the cancelled response are dropped
    assert verbs(call.rt(rt.AudioDelta("resp_1", "item_1", "AAAA"))) == []
    assert call.core.stats.dropped_deltas == 1
    # the caller keeps talking, then stops: one trigger, deferred until the cancelled response is done
    call.frames(SPEECH, 30)
    call.frames(SILENT, 20)
    assert sum(isinstance(a, CommitAndTrigger) for a in call.actions) == 1
    deferred = ask(call.core, "end_of_speech", call.now_ms)
    assert verbs(deferred) == [] and "deferred until its response.done" in notes(deferred)[0]
    out = call.rt(rt.ResponseDone("resp_1", "cancelled", "client_cancelled"))
    assert QueueTrigger("end_of_speech") in out
    assert verbs(ask(call.core, "end_of_speech", call.now_ms)) == [SendResponseCreate("end_of_speech", None)]


def test_no_barge_in_from_the_ais_own_echo():
    call = Call()
    call.frames(SILENT, 20)
    start_playing(call)
    # the line returns the played audio 6 dB down, 100 ms later, for 2 s
    played = [VOICE if (i // 10) % 2 == 0 else SILENT for i in range(100)]
    out = []
    for i, frame in enumerate(played):
        echo = tone(1000) if i >= 5 and played[i - 5] == VOICE else SILENT
        out += call.frames(echo, 1, played_item="item_1", played=frame)
    assert not any(isinstance(a, (CancelResponse, ClearPlayback, ForwardAudio)) for a in out)
    assert call.core.stats.barge_ins == 0


def test_silence_prompts_then_goodbye_then_smart_hangup():
    call = Call()
    call.frames(SILENT, 20)
    out = []
    for _ in range(CFG.silence_timeout_ms // 50 + 1):    # the first tick starts the silence clock
        out += call.tick(50)
    assert QueueTrigger("silence_warning") in out
    assert verbs(ask(call.core, "silence_warning", call.now_ms)) == \
        [SendResponseCreate("silence_warning", None)]
    call.rt(rt.ResponseCreated("resp_w"))
    call.rt(rt.ResponseDone("resp_w", "completed", None))          # (no audio in this test)
    out = []
    for _ in range(CFG.silence_timeout_ms // 50 + 1):
        out += call.tick(50)
    assert "🔇 [SILENCE] Max warnings exceeded - initiating polite hangup" in notes(out)
    assert QueueTrigger("goodbye") in out
    ask(call.core, "goodbye", call.now_ms)
    call.rt(rt.ResponseCreated("resp_g"))
    call.rt(rt.AudioDelta("resp_g", "item_g", "////"))
    call.rt(rt.AudioDone("resp_g", "item_g"))
    call.rt(rt.ResponseDone("resp_g", "completed", None))
    call.core.handle(AssistantPlayoutFinished("resp_g", call.now_ms))
    out = call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms + 100))
    assert HangUp("silence_timeout") in out
    assert "📞 [SMART HANGUP] Reason: silence_timeout" in notes(out)
    assert "📞 [SMART HANGUP] Lead captured: False" in notes(out)
    # nothing more is triggered once the call is ending
    assert verbs(ask(call.core, "end_of_speech", call.now_ms)) == []


def test_caller_speech_resets_the_silence_clock():
    call = Call()
    out = []
    for _ in range(10):
        call.frames(SILENT, 150)                      # 3 s of quiet
        call.frames(VOICE, 10)                        # then a short sound (skipped as an utterance)
        call.frames(SILENT, 20)
        out += call.tick(0)
    assert not any(isinstance(a, QueueTrigger) for a in out)


def test_an_utterance_starting_in_the_echo_tail_reaches_openai_whole():
    call = Call()
    call.frames(SILENT, 20)
    call.frames(SILENT, 1, played_item="item_1", played=VOICE)      # the last AI frame
    soft = tone(60)                                                  # a soft onset the barge-in rule ignores
    held = call.frames(soft, 10)                                     # inside the 500 ms window
    assert not any(isinstance(a, ForwardAudio) for a in held)
    call.frames(soft, 14)
    # The window has expired, but the utterance began inside it: it stays held until the echo
    # detector sees it as the caller's (150 ms of near-end speech), then goes out with its pre-roll.
    out, frames = [], 0
    while not any(isinstance(a, ForwardAudio) for a in out) and frames < 20:
        out = call.frames(VOICE, 1)
        frames += 1
    n = CFG.barge_in_min_ms // 20   # near-end frames, once the AI's reference is out of the echo's lag range
    assert n <= frames <= n + 3
    assert len(forwarded_frames(out)) == (n * 20 + CFG.pre_roll_ms) // 20 + 1    # the speech so far + pre-roll, this frame
    assert any("[ECHO GATE] caller speech in the echo tail" in n for n in notes(out))
    assert call.core.turn.vad.state is not VadState.SILENCE


def test_an_echo_tail_that_outlasts_the_echo_window_is_never_forwarded():
    call = Call()
    call.frames(SILENT, 20)
    # 1 s of AI audio; a speakerphone returns it 400 ms later (20 frames), so the echo goes on for
    # 400 ms after the last AI frame, and the 500 ms echo window ends just 100 ms after the echo
    syllables = [3, 2, 5, 3, 4, 2, 6, 3, 2, 4, 5, 3, 4, 4]             # frames on, off, on, ... (irregular)
    played = [VOICE if k % 2 == 0 else SILENT for k, n in enumerate(syllables) for _ in range(n)] + [None] * 40
    during_tail = []
    for i, frame in enumerate(played):
        echo = tone(1000) if i >= 20 and played[i - 20] == VOICE else SILENT
        if frame is None:
            during_tail += call.frames(echo, 1)
        else:
            during_tail += call.frames(echo, 1, played_item="item_1", played=frame)
    after = call.frames(SILENT, 20)
    assert set(forwarded_frames(during_tail)) <= {SILENT}   # no echo
    assert not any(isinstance(a, CommitAndTrigger) for a in during_tail + after)
    assert call.core.stats.echo_blocked_utterances == 1


def test_steady_sound_is_vetoed_and_becomes_the_noise_floor():
    call = Call()
    call.frames(SILENT, 20)
    out = call.frames(tone(1500), 100)                   # 2 s of a steady hum-like tone
    # the floor's minimum statistic rises with the tone, so it stops counting as speech while it
    # still sounds, and the utterance it made is vetoed
    assert any(n.startswith("[UTT] VETO: steady sound, not speech (modulation 0.0dB < 4dB)") for n in notes(out))
    assert call.core.turn.vad.noise_floor_rms > 1000
    call.frames(SILENT, CFG.eou_silence_ms // 20)
    assert not any(isinstance(a, CommitAndTrigger) for a in call.actions)
    assert call.core.stats.vetoed_utterances == 1


def test_barge_in_also_cancels_a_response_that_has_not_spoken_yet():
    """Found by the property test: the caller interrupts r1's playback while r2 is already active."""
    call = Call()
    call.frames(SILENT, 20)
    start_playing(call, "resp_1", "item_1")
    call.rt(rt.AudioDone("resp_1", "item_1"))
    call.rt(rt.ResponseDone("resp_1", "completed", None))            # r1 done on the server, still playing here
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_2"))                              # r2 active, no audio yet
    call.frames(SILENT, 20, played_item="item_1", played=tone(300))
    out = call.frames(VOICE, 8, played_item="item_1", played=tone(300))   # clearly louder than any echo
    assert PausePlayout() in out
    out = call.frames(VOICE, 17)                                           # sustained: a barge-in
    assert CancelResponse("resp_2") in out and ClearPlayback() in out
    assert verbs(call.rt(rt.AudioDelta("resp_2", "item_2", "AAAA"))) == []


def test_barge_in_cancels_a_pending_create_as_soon_as_it_is_created():
    call = Call()
    call.frames(SILENT, 20)
    start_playing(call, "resp_1", "item_1")
    call.rt(rt.ResponseDone("resp_1", "completed", None))
    ask(call.core, "greeting", call.now_ms)               # pending, not yet created
    call.frames(SILENT, 20, played_item="item_1", played=tone(300))
    out = call.frames(VOICE, 8, played_item="item_1", played=tone(300))
    out += call.frames(VOICE, 17)
    assert ClearPlayback() in out and not any(isinstance(a, CancelResponse) for a in out)
    created = call.rt(rt.ResponseCreated("resp_3"))
    assert CancelResponse("resp_3") in created


# --- thinking pauses: the reply is asked for early and held --------------------------------------

def caller_turn(call: Call, frames: int = 30) -> None:
    call.frames(SILENT, 20)
    call.frames(SPEECH, frames)


def test_reply_audio_waits_for_the_hold_then_plays_in_order():
    call = Call()
    caller_turn(call)
    speech_end_ms = call.audio_ms
    out = call.frames(SILENT, CFG.eou_silence_ms // 20)
    assert CommitAndTrigger("end_of_speech") in out
    assert verbs(ask(call.core, "end_of_speech", call.now_ms)) == [SendResponseCreate("end_of_speech", None)]
    assert "⏳ [HOLD] reply resp_1 requested at the end of utterance" in notes(call.rt(rt.ResponseCreated("resp_1")))[1]
    held = call.rt(rt.AudioDelta("resp_1", "item_1", b64(VOICE * 10)))
    held += call.rt(rt.AudioDone("resp_1", "item_1"))
    held += call.rt(rt.ResponseDone("resp_1", "completed", None, item_ids=("item_1",)))
    assert not any(isinstance(a, (QueueAssistantAudio, EndAssistantAudio)) for a in held)
    wait_frames = (CFG.reply_hold_ms - CFG.eou_silence_ms) // 20
    out = call.frames(SILENT, wait_frames - 1)
    assert not any(isinstance(a, QueueAssistantAudio) for a in out)
    out = call.frames(SILENT, 1)                          # reply_hold_ms since the last voiced frame
    assert call.audio_ms - speech_end_ms == CFG.reply_hold_ms
    assert [type(a) for a in verbs(out) if not isinstance(a, ForwardAudio)] == [QueueAssistantAudio, EndAssistantAudio]
    assert any(n.startswith(f"⏳ [HOLD] releasing reply resp_1 after {CFG.reply_hold_ms}ms of caller silence "
                            "(200ms of audio held)") for n in notes(out))
    assert call.core.state is Pipeline.SPEAKING
    assert call.core.stats.latencies_ms == [CFG.reply_hold_ms]


def test_a_reply_that_comes_after_the_hold_plays_at_once():
    call = Call()
    caller_turn(call)
    call.frames(SILENT, CFG.reply_hold_ms // 20 + 10)         # a slow model: the hold has long passed
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    out = call.rt(rt.AudioDelta("resp_1", "item_1", b64(VOICE)))
    assert [type(a) for a in verbs(out)] == [QueueAssistantAudio]


def test_a_caller_who_resumes_inside_the_hold_never_hears_the_early_reply():
    call = Call()
    caller_turn(call)
    call.frames(SILENT, CFG.eou_silence_ms // 20)
    ask(call.core, "end_of_speech", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(rt.AudioDelta("resp_1", "item_1", b64(VOICE * 10)))
    call.frames(SILENT, 10)                                    # a 500 ms thinking pause so far
    out = call.frames(SPEECH, CFG.min_utterance_ms // 20 - 1)  # «...אממ, התקנה של מנעול»: not yet sure it is speech
    assert not any(isinstance(a, CancelResponse) for a in out)
    out = call.frames(SPEECH, 1)                               # min_utterance_ms of it: the caller goes on
    assert [a for a in verbs(out) if not isinstance(a, ForwardAudio)] == [CancelResponse("resp_1"), DeleteItem("item_1")]
    assert any(n.startswith("⏳ [HOLD] caller resumed after a 500ms pause - the unheard reply resp_1 is cancelled")
               for n in notes(out))
    assert call.core.state is Pipeline.LISTENING
    call.frames(SPEECH, 30)
    out = call.frames(SILENT, CFG.eou_silence_ms // 20)
    assert CommitAndTrigger("end_of_speech") in out
    # still one guarded trigger: the new reply waits for the cancelled one's response.done
    assert verbs(ask(call.core, "end_of_speech", call.now_ms)) == []
    done = call.rt(rt.ResponseDone("resp_1", "cancelled", "client_cancelled", item_ids=("item_1", "item_9")))
    assert [a for a in verbs(done)] == [DeleteItem("item_9"), QueueTrigger("end_of_speech")]
    assert not any(isinstance(a, QueueAssistantAudio) for a in call.actions)
    assert call.core.stats.resumed_turns == 1


def test_a_resumption_before_response_created_cancels_it_when_created():
    call = Call()
    caller_turn(call)
    call.frames(SILENT, CFG.eou_silence_ms // 20)
    ask(call.core, "end_of_speech", call.now_ms)
    out = call.frames(SPEECH, CFG.min_utterance_ms // 20)
    assert any("(not created yet) is cancelled" in n for n in notes(out))
    assert CancelResponse("resp_1") in call.rt(rt.ResponseCreated("resp_1"))


# --- backchannels: pause, then resume ------------------------------------------------------------

def test_a_short_sound_over_the_ai_pauses_it_and_resumes_it_without_cancelling():
    call = Call()
    call.frames(SILENT, 20)
    start_playing(call)
    call.frames(SILENT, 40, played_item="item_1", played=VOICE)
    out = call.frames(VOICE, 8, played_item="item_1", played=VOICE)        # «כן» over the AI
    assert PausePlayout() in out
    out = call.frames(VOICE, 7)                                            # 300 ms in all
    out += call.frames(SILENT, CFG.backchannel_resume_ms // 20)
    assert [a for a in verbs(out) if not isinstance(a, ForwardAudio)] == [ResumePlayout()]
    assert any(n.startswith("▶ [BACKCHANNEL] 300ms sound over the AI - playout resumed") for n in notes(out))
    assert not any(isinstance(a, (CancelResponse, ClearPlayback, TruncateAssistant, CommitAndTrigger))
                   for a in call.actions)
    assert call.core.is_ai_speaking and call.core.stats.backchannels == 1 and call.core.stats.barge_ins == 0


def test_a_paused_playout_is_resumed_when_the_ai_stops_being_audible():
    call = Call()
    call.frames(SILENT, 20)
    start_playing(call)
    call.rt(rt.AudioDone("resp_1", "item_1"))
    call.frames(SILENT, 40, played_item="item_1", played=VOICE)
    assert PausePlayout() in call.frames(VOICE, 8, played_item="item_1", played=VOICE)
    call.core.handle(AssistantPlayoutFinished("resp_1", call.now_ms))
    out = call.core.handle(MarkAcked(TTS_END_MARK, call.now_ms))           # its last frames were already out
    assert ResumePlayout() in out and not call.core.is_ai_speaking


# --- timers come from the core ------------------------------------------------------------------

def wake(call: Call) -> list:
    """The shell's timer: jump to the core's next deadline and tick there."""
    deadline = call.core.next_deadline_ms()
    assert deadline is not None and deadline >= call.now_ms
    return call.tick(deadline - call.now_ms)


def test_an_idle_call_sleeps_until_its_next_deadline_not_on_a_poll():
    call = Call()
    call.frames(SILENT, 5)
    wakes, out = 0, []
    while not any(isinstance(a, QueueTrigger) for a in out):
        out = wake(call)
        wakes += 1
    # 8 s of silence reached in a handful of wakes (the status line every 2.5 s), not 160 ticks
    assert QueueTrigger("silence_warning") in out
    assert wakes <= CFG.silence_timeout_ms // CFG.status_interval_ms + 2
    assert call.now_ms - 10_000 - 100 == CFG.silence_timeout_ms    # the first wake started the clock


def test_a_pending_response_is_watched_by_its_own_deadline():
    call = Call()
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    assert call.core.next_deadline_ms() == call.now_ms + CFG.response_created_timeout_ms
    out = wake(call)
    assert any("[WATCHDOG] no response.created" in n for n in notes(out))


def test_the_session_is_renewed_at_its_age_limit_only_between_turns():
    call = Call()
    call.core = CallCore(CFG, {"greeting": "Greet"}, session_renew_ms=60_000)
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))                 # a response in flight: the call is busy
    renew_at = call.now_ms + 60_000
    while call.now_ms < renew_at + 5000:
        out = wake(call)
        assert RenewSession() not in out                  # busy: looked at again a second later
    call.rt(rt.ResponseDone("resp_1", "completed", None))   # no audio: listening again
    out = wake(call)
    while RenewSession() not in out:
        out = wake(call)
    assert "[REALTIME] renewing the session before OpenAI's 60-minute limit" in notes(out)
    assert call.now_ms - renew_at <= 5000 + 1000


def test_a_draining_server_says_goodbye_after_the_turn_and_hangs_up_at_the_limit():
    call = Call()
    call.frames(SILENT, 5)
    out = call.core.handle(ShutdownRequested(call.now_ms))
    assert QueueTrigger("goodbye") in out                      # idle: the goodbye starts at once
    ask(call.core, "goodbye", call.now_ms)
    call.rt(rt.ResponseCreated("resp_bye"))
    call.rt(rt.AudioDelta("resp_bye", "item_bye", b64(VOICE * 5)))     # it plays, and never finishes
    out = []
    while not any(isinstance(a, HangUp) for a in out):
        out = wake(call)
    assert HangUp("shutdown") in out
    assert "[SHUTDOWN] goodbye not finished after 20000ms - closing" in notes(out)


def greeting_in_flight(call: Call) -> None:
    """The session is ready and the greeting's response was created (``resp_1``, item ``item_1``)."""
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))


def test_the_pipeline_table_forbids_a_prompt_over_a_speaking_ai():
    call = Call()
    greeting_in_flight(call)
    call.rt(rt.AudioDelta("resp_1", "item_1", b64(VOICE * 5)))
    assert call.core.state is Pipeline.SPEAKING
    with pytest.raises(ForbiddenTransition, match="SPEAKING on silence prompt or goodbye"):
        call.core.pipeline.move(Cause.PROMPT, "silence_warning")
    assert call.core.state is Pipeline.SPEAKING          # a forbidden move changes nothing
    call.core.pipeline.move(Cause.UTTERANCE, "caller's turn over unplayed audio")
    assert call.core.state is Pipeline.PROCESSING        # the one race the table allows


def test_a_message_of_two_frames_counts_as_two_played_frames_at_their_own_times():
    call = Call()
    greeting_in_flight(call)
    call.rt(rt.AudioDelta("resp_1", "item_1", b64(VOICE * 10)))
    for _ in range(3):                                   # three messages of 40 ms each
        call.now_ms += 40
        call.core.handle(AssistantFramePlayed("item_1", call.now_ms, VOICE * 2))
    assert call.core.playback.ledger.truncate_point_ms("item_1") == 120
    assert call.core.playback.ledger.last_ai_frame_played_at_ms == call.now_ms + 20   # the second frame's slot
    assert call.core.playback.echo_blocked(call.now_ms + 20 + CFG.echo_window_ms - 1)
    assert not call.core.playback.echo_blocked(call.now_ms + 20 + CFG.echo_window_ms)


def test_a_lost_model_link_is_retried_on_the_cores_schedule_then_given_up():
    call = Call()
    call.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), call.now_ms))
    out = call.core.handle(RealtimeLinkLost(call.now_ms, "ConnectionResetError"))
    assert Reconnect(250, 1) in out
    assert verbs(call.core.handle(ReconnectFailed(call.now_ms, 1, "refused"))) == [Reconnect(1000, 2)]
    assert verbs(call.core.handle(ReconnectFailed(call.now_ms, 2, "refused"))) == [Reconnect(2500, 3)]
    out = call.core.handle(ReconnectFailed(call.now_ms, 3, "refused"))
    assert verbs(out) == [HangUp("realtime_closed")]
    assert [n.code for n in out if isinstance(n, Note)] == ["reconnect_failed", "reconnect_given_up"]
    assert "[REALTIME] reconnect attempt 3/3 failed: refused" in notes(out)
