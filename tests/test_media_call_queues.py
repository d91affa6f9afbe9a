"""``realtime_audio_in_queue``: when OpenAI cannot keep up, the oldest audio goes first, counted;
a commit marker is never dropped nor moved, and the newest audio is never the one lost."""
from server.call.audio_in_queue import AudioInQueue
from server.call.model_leg import AUDIO_IN_QUEUE_BYTES, _Commit, _Trigger

FRAME = 160
FRAMES = 50


def frame(i: int) -> bytes:
    return bytes([i % 256]) * FRAME


def drain(q: AudioInQueue) -> list:
    items = []
    while len(q):
        items.append(q.get())
    return items


def test_oldest_audio_is_dropped_and_counted():
    q = AudioInQueue(FRAMES * FRAME)
    for i in range(FRAMES + 25):
        q.put(frame(i))
    items = drain(q)
    assert items == [frame(i) for i in range(25, FRAMES + 25)]     # the newest frame is kept
    assert q.dropped_audio == 25


def test_a_commit_marker_at_the_head_of_a_full_queue_stays_first():
    q = AudioInQueue(FRAMES * FRAME)
    q.put(_Commit("end_of_speech"))
    for i in range(FRAMES + 10):
        q.put(frame(i))
    items = drain(q)
    assert items[0] == _Commit("end_of_speech")            # still ahead of every newer frame
    assert items[1:] == [frame(i) for i in range(10, FRAMES + 10)]
    assert q.dropped_audio == 10


def test_markers_keep_their_place_between_the_frames_they_follow():
    q = AudioInQueue(FRAMES * FRAME)
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


def test_a_batch_larger_than_the_bound_is_kept_alone_rather_than_lost():
    q = AudioInQueue(4 * FRAME)
    q.put(frame(1))
    q.put(frame(2) * 6)
    assert drain(q) == [frame(2) * 6] and q.dropped_audio == 1


def test_the_call_bounds_its_queue_at_ten_seconds():
    assert AUDIO_IN_QUEUE_BYTES == 10_000 * 8
