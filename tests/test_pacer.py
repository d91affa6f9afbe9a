"""Outbound pacing by deadline from the frame count, and the lateness it reports (fake time)."""
from server.core.pacer import MsHistogram, Pacer


def pacer() -> Pacer:
    return Pacer(frame_ms=20, lead_ms=40, resync_ms=200)


def test_deadlines_come_from_the_frame_count_not_from_sleeps():
    p, now = pacer(), 1000
    dues = []
    for _ in range(6):
        due = p.due_ms(now)
        dues.append(due)
        if due > now:
            now = due + 3                  # every wake-up 3 ms late: the error does not accumulate
        p.sent(now)
    assert dues == [960, 980, 1000, 1020, 1040, 1060]
    assert p.lateness.counts[0] == 3 and p.lateness.counts[3] == 3   # the margin's frames were not late


def test_a_message_of_two_frames_moves_the_next_deadline_by_both():
    p = pacer()
    assert p.due_ms(1000) == 960
    p.sent(1000, frames=2)
    assert p.due_ms(1000) == 1000 - 40 + 40


def test_a_frame_that_did_not_exist_yet_is_not_late():
    p = pacer()
    p.due_ms(1000)
    p.sent(1000)
    p.starved(1500)                        # the model sent nothing for half a second
    due = p.due_ms(1500)                   # far behind: the clock restarts
    assert due == 1460
    p.sent(1501)
    assert p.lateness.percentile_ms(100) == 1


def test_a_worker_that_falls_behind_shows_as_late():
    p = pacer()
    p.due_ms(1000)
    p.sent(1000)
    for k in range(1, 5):
        due = p.due_ms(1000 + k * 20)
        p.sent(due + 15)                   # the hub woke this frame 15 ms late
    assert p.lateness.percentile_ms(99) == 15


def test_histogram_percentiles_and_merge():
    h, g = MsHistogram(10), MsHistogram(10)
    for v in (0, 1, 1, 2, 50):
        h.add(v)
    g.add(3)
    h.merge(g)
    assert h.total == 6 and h.counts[10] == 1          # 50 lands in the top bucket
    assert h.percentile_ms(50) == 1 and h.percentile_ms(100) == 10
    assert MsHistogram().percentile_ms(99) is None
