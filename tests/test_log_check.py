from server.log_check import check

CALL = "call=CA" + "1" * 32 + " stream=MZ" + "2" * 32


def line(t: str, text: str) -> str:
    return f"{t} INFO server.media_ws_ai: {CALL} {text}"


GOOD = "\n".join([
    line("10:00:00.000", "[PIPELINE] LIVE AUDIO PIPELINE ACTIVE: Twilio → realtime_audio_in_queue → send_audio_chunk (single path)"),
    line("10:00:00.100", "✅ [BUILD 196.2] response.create sent (manual trigger) reason=greeting"),
    line("10:00:00.200", "🔊 [REALTIME] response.created: id=resp_1"),
    line("10:00:01.000", "[REALTIME] response.done: id=resp_1 status=completed reason=None"),
    line("10:00:02.500", "[PIPELINE STATUS] sent=1 blocked=2 | active_response=None | ai_speaking=False | user_has_spoken=False"),
    line("10:00:04.000", "🎤 END OF UTTERANCE: 1.0s, echo_blocked=False"),
    line("10:00:04.000", "🎯 [BUILD 196.3] SPEECH→SILENCE: Triggering AI response (conversation #1)"),
    line("10:00:04.000", "✅ [BUILD 196.3] response.create queued (end of speech)"),
    line("10:00:04.100", "✅ [BUILD 196.2] response.create sent (manual trigger) reason=end_of_speech"),
    line("10:00:04.200", "🔊 [REALTIME] response.created: id=resp_2"),
    line("10:00:04.300", "TTS_START | frames=10"),
    line("10:00:05.000", "[PIPELINE STATUS] sent=1 blocked=2 | active_response=resp_2 | ai_speaking=True | user_has_spoken=True"),
    line("10:00:06.000", "[REALTIME] response.done: id=resp_2 status=completed reason=None"),
    line("10:00:07.000", "[CALL SUMMARY] turns=1 responses=2 errors={} green_threads_alive=0"),
])


def failed(results) -> list[str]:
    return [r.name for r in results if not r.passed]


def test_a_good_normal_call_passes():
    assert failed(check(GOOD, "normal")) == []
    assert failed(check(GOOD, "single_pipeline")) == []


def test_each_failure_is_caught():
    dup = GOOD.replace("reason=end_of_speech", "reason=end_of_speech\n" + line(
        "10:00:04.150", "✅ [BUILD 196.2] response.create sent (manual trigger) reason=end_of_speech"))
    assert "never two response.create in flight" in failed(check(dup))
    echo = GOOD.replace("echo_blocked=False", "echo_blocked=True")
    assert "echo-blocked utterances never trigger" in failed(check(echo))
    fast = GOOD.replace("10:00:05.000 INFO", "10:00:02.520 INFO")
    assert "[PIPELINE STATUS] every 2-3 s, never per frame" in failed(check(fast))
    phone = GOOD + "\n" + line("10:00:07.100", "[TWILIO] parameters={'From': '+972501234567'}")
    assert "caller numbers masked" in failed(check(phone))
    leaked = GOOD.replace("green_threads_alive=0", "green_threads_alive=2")
    assert "call ended with no green thread left" in failed(check(leaked))
    assert "[silent] no end-of-speech response" in failed(check(GOOD, "silent"))
    assert "[barge_in] barge-in detected" in failed(check(GOOD, "barge_in"))
    assert failed(check("Traceback (most recent call last):\n" + GOOD)) == ["no exception in the log"]
    assert failed(check("no calls here")) == ["the log contains calls"]


def test_a_held_reply_that_was_abandoned_must_never_be_heard():
    resumed = [line("10:00:04.500", "⏳ [HOLD] caller resumed after a 500ms pause - the unheard reply resp_2 is "
                                    "cancelled and removed")]
    good = GOOD.replace(line("10:00:04.300", "TTS_START | frames=10"), "\n".join(resumed))
    assert failed(check(good)) == []
    heard = "\n".join([good, line("10:00:04.600", "STATE -> SPEAKING | first audio of resp_2")])
    assert failed(check(heard)) == ["a reply abandoned in its hold is never heard"]
    assert "[thinking_pause] a reply heard after the real end of the turn" in failed(check(good, "thinking_pause"))


def test_a_paused_playout_must_be_resolved_and_backchannels_never_interrupt():
    paused = line("10:00:05.100", "⏸ [BARGE-IN] caller sound for 160ms over the AI (echo lag=None gain=?) - playout paused")
    resumed = line("10:00:05.500", "▶ [BACKCHANNEL] 300ms sound over the AI - playout resumed after a 400ms pause")
    summary = line("10:00:07.000", "[CALL SUMMARY] turns=1 responses=2 errors={} green_threads_alive=0")
    ok = GOOD.replace(summary, "\n".join([paused, resumed, summary]))
    assert failed(check(ok, "backchannel")) == []
    assert failed(check(ok, "no_false_barge_in")) == ["[no_false_barge_in] the AI was never paused or interrupted"]
    stuck = GOOD.replace(summary, paused)
    assert "every paused playout resumed or ended" in failed(check(stuck))
    interrupted = ok.replace(resumed, line("10:00:05.500", "⚡ [BARGE-IN] caller speech for 500ms over the AI"))
    assert failed(check(interrupted, "backchannel")) == ["[backchannel] a sound over the AI paused it and it resumed",
                                                          "[backchannel] no barge-in from a backchannel"]
