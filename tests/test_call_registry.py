from server.call.registry import CallRegistry


def test_who_hears_the_apology_after_the_stream():
    r = CallRegistry()
    r.record_answered("CA_ok")
    r.record_end("CA_ok", "caller_hung_up", failed=False)
    r.record_answered("CA_failed")
    r.record_end("CA_failed", "realtime_unavailable", failed=True)
    r.record_answered("CA_stream_never_started")
    assert not r.should_apologise("CA_ok")
    assert r.should_apologise("CA_failed")
    assert r.should_apologise("CA_stream_never_started")
    assert not r.should_apologise("CA_other_instance")


def test_memory_is_bounded_to_the_newest_calls():
    r = CallRegistry()
    for i in range(1500):
        r.record_answered(f"CA{i}")
        r.record_end(f"CA{i}", "x", failed=i % 2 == 0)
    assert len(r.answered) == 1000 and len(r.failed) + len(r.ended) <= 2000
    assert "CA0" not in r.answered and r.should_apologise("CA1498") and not r.should_apologise("CA1499")
