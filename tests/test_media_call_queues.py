"""``realtime_audio_in_queue``: when OpenAI cannot keep up, the oldest audio goes first, counted;
a commit marker is never dropped nor moved, and the newest frame is never the one lost."""
from server.audio_in_queue import AudioInQueue
from server.media_ws_ai import AUDIO_IN_QUEUE_FRAMES, _Commit, _Trigger

FRAMES = 50


def frame(i: int) -> bytes:
    return b"frame%d" % i


def drain(q: AudioInQueue) -> list:
    items = []
    while len(q):
        items.append(q.get())
    return items


def test_oldest_audio_is_dropped_and_counted():
    q = AudioInQueue(FRAMES)
    for i in range(FRAMES + 25):
        q.put(frame(i))
    items = drain(q)
    assert items == [frame(i) for i in range(25, FRAMES + 25)]     # the newest frame is kept
    assert q.dropped_audio == 25


def test_a_commit_marker_at_the_head_of_a_full_queue_stays_first():
    q = AudioInQueue(FRAMES)
    q.put(_Commit("end_of_speech"))
    for i in range(FRAMES + 10):
        q.put(frame(i))
    items = drain(q)
    assert items[0] == _Commit("end_of_speech")            # still ahead of every newer frame
    assert items[1:] == [frame(i) for i in range(10, FRAMES + 10)]
    assert q.dropped_audio == 10


def test_markers_keep_their_place_between_the_frames_they_follow():
    q = AudioInQueue(FRAMES)
    for i in range(FRAMES):
        q.put(frame(i))
    q.put(_Commit("end_of_speech"))
    q.put(_Trigger("silence_warning"))
    for i in range(FRAMES, FRAMES + 5):
        q.put(frame(i))
    items = drain(q)
    commit_at = items.index(_Commit("end_of_speech"))
    assert items[commit_at + 1] == _Trigger("silence_warning")
    assert items[:commit_at] == [frame(i) for i in range(5, FRAMES)]   # the oldest before the commit went
    assert items[commit_at + 2:] == [frame(i) for i in range(FRAMES, FRAMES + 5)]
    assert q.dropped_audio == 5


def test_the_call_bounds_its_queue_at_ten_seconds():
    assert AUDIO_IN_QUEUE_FRAMES * 20 == 10_000
