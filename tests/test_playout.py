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
