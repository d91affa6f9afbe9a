"""The bounded caller-audio queue of a call: when OpenAI cannot keep up, the oldest audio goes
first, counted, and an end-of-utterance commit marker is never dropped."""
from server.media_ws_ai import AUDIO_IN_QUEUE_FRAMES, MediaCall, _Commit
from server.call_registry import CallRegistry
from server.settings import Settings


def make_call() -> MediaCall:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_AUTH_TOKEN": "tok"})
    return MediaCall(ws=None, settings=settings, registry=CallRegistry())


def drain(call: MediaCall) -> list:
    items = []
    while call.audio_in_q.qsize():
        items.append(call.audio_in_q.get_nowait())
    return items


def test_oldest_audio_is_dropped_and_counted():
    call = make_call()
    for i in range(AUDIO_IN_QUEUE_FRAMES + 25):
        call._put_audio_in(f"frame{i}")
    items = drain(call)
    assert len(items) == AUDIO_IN_QUEUE_FRAMES
    assert items[0] == "frame25" and items[-1] == f"frame{AUDIO_IN_QUEUE_FRAMES + 24}"
    assert call.dropped_in == 25


def test_a_commit_marker_survives_a_full_queue():
    call = make_call()
    call._put_audio_in(_Commit("end_of_speech"))
    for i in range(AUDIO_IN_QUEUE_FRAMES + 10):
        call._put_audio_in(f"frame{i}")
    items = drain(call)
    assert len(items) == AUDIO_IN_QUEUE_FRAMES
    assert sum(isinstance(x, _Commit) for x in items) == 1
