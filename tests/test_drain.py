from server.core.drain import DrainCheck, Drained, DrainSuperseded, DrainTimedOut


def test_empty_queues_clear():
    check = DrainCheck("resp_1", started_ms=1000, timeout_ms=500)
    assert check.poll(1050, queues_empty=False, active_response_id=None) is None
    assert check.poll(1100, queues_empty=True, active_response_id=None) == Drained("resp_1", 100)


def test_mismatched_response_id_does_not_clear():
    check = DrainCheck("resp_1", 1000, 500)
    assert check.poll(1100, True, active_response_id="resp_2") == DrainSuperseded("resp_1", "resp_2")


def test_same_active_response_id_still_drains():
    check = DrainCheck("resp_1", 1000, 500)
    assert check.poll(1100, True, active_response_id="resp_1") == Drained("resp_1", 100)


def test_timeout_clears_with_queues_still_full():
    check = DrainCheck("resp_1", 1000, 500)
    assert check.poll(1499, False, None) is None
    assert check.poll(1500, False, None) == DrainTimedOut("resp_1")


def test_timeout_counts_from_the_expected_end_of_playout():
    # 3 s of audio still queued when audio.done arrived: no timeout before it could have played
    check = DrainCheck("resp_1", 1000, 500, queued_audio_ms=3000)
    assert check.poll(4000, False, None) is None
    assert check.poll(4500, False, None) == DrainTimedOut("resp_1")
