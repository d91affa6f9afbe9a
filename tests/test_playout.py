from server.core.playout import Framer, PlayoutLedger


def test_framer_cuts_exact_frames_and_pads_the_tail():
    framer = Framer()
    assert framer.push(b"\x01" * 100) == []
    frames = framer.push(b"\x02" * 300)
    assert [len(f) for f in frames] == [160, 160]
    assert frames[0] == b"\x01" * 100 + b"\x02" * 60
    tail = framer.flush()
    assert tail == [b"\x02" * 80 + b"\xff" * 80]
    assert framer.flush() == []


def test_ledger_tracks_played_and_clamps_truncation():
    ledger = PlayoutLedger()
    ledger.on_received("resp_1", "item_1", 800)     # 100 ms received
    for t in range(0, 140, 20):                      # 7 frames "played" (more than received)
        ledger.on_frame_played("item_1", t)
    assert ledger.truncate_point_ms("item_1") == 100
    assert ledger.truncate_point_ms("unknown") == 0


def test_echo_window_follows_the_last_played_frame():
    ledger = PlayoutLedger()
    assert not ledger.audible_or_echoing(0, 500)
    ledger.on_frame_played("item_1", 1000)
    assert ledger.audible_or_echoing(1499, 500)
    assert not ledger.audible_or_echoing(1500, 500)


def test_marks_flushed_by_clear_do_not_count_as_played():
    ledger = PlayoutLedger()
    ledger.on_mark_sent("assistant_tts_end")
    ledger.on_clear()
    assert ledger.on_mark_acked("assistant_tts_end") is False
    ledger.on_mark_sent("assistant_tts_end")
    assert ledger.on_mark_acked("assistant_tts_end") is True
    assert ledger.on_mark_acked("never_sent") is False


def test_ledger_owns_what_is_still_to_play():
    ledger = PlayoutLedger()
    assert ledger.drained and ledger.unplayed_ms == 0
    ledger.on_received("resp_1", "item_1", 400)      # 50 ms: 2.5 frames
    ledger.on_received("resp_1", "item_1", 320)      # 40 ms
    assert ledger.unplayed_ms == 90 and ledger.queues() == (0, 2)
    ledger.on_frame_played("item_1", 0)
    assert ledger.queues() == (2, 1)                 # the first chunk is being played: 240 bytes left
    ledger.on_frame_played("item_1", 20)
    ledger.on_frame_played("item_1", 40)             # this frame spans both chunks
    assert ledger.unplayed_ms == 30 and ledger.queues() == (2, 0)
    ledger.on_audio_ended("resp_1")
    ledger.on_frame_played("item_1", 60)
    assert not ledger.drained                        # 80 bytes left, and the end has not gone out
    ledger.on_playout_finished("resp_1")             # the padded last frame and the tail silence went
    assert ledger.drained and ledger.unplayed_ms == 0


def test_a_clear_empties_what_was_to_play():
    ledger = PlayoutLedger()
    ledger.on_received("resp_1", "item_1", 1600)
    ledger.on_audio_ended("resp_1")
    ledger.on_clear()
    assert ledger.drained and ledger.queues() == (0, 0)
