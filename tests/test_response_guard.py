from server.core.response_guard import PendingExpired, ResponseGuard, SendCreate, SkipCreate


def test_two_triggers_before_response_created_send_one_create():
    guard = ResponseGuard(created_timeout_ms=2500)
    assert guard.request("end_of_speech", now_ms=1000) == SendCreate("end_of_speech")
    assert guard.request("silence_warning", now_ms=1010) == SkipCreate("silence_warning", "pending:end_of_speech")
    assert guard.sent_count == 1


def test_active_response_blocks_until_done():
    guard = ResponseGuard(2500)
    guard.request("greeting", 0)
    guard.on_created("resp_1")
    assert guard.request("end_of_speech", 100) == SkipCreate("end_of_speech", "resp_1")
    assert guard.on_done("resp_other") is False
    assert guard.request("end_of_speech", 150) == SkipCreate("end_of_speech", "resp_1")
    assert guard.on_done("resp_1") is True
    assert guard.request("end_of_speech", 200) == SendCreate("end_of_speech")


def test_pending_expires_after_timeout_and_does_not_resend():
    guard = ResponseGuard(2500)
    guard.request("end_of_speech", 1000)
    assert guard.next_deadline_ms() == 3500
    assert guard.on_deadline(3499) is None
    assert guard.on_deadline(3500) == PendingExpired("end_of_speech", 2500)
    assert guard.next_deadline_ms() is None
    assert guard.sent_count == 1           # expiry never sends by itself
    assert guard.request("end_of_speech", 3600) == SendCreate("end_of_speech")


def test_rejected_create_clears_pending():
    guard = ResponseGuard(2500)
    guard.request("end_of_speech", 0)
    guard.on_create_rejected()
    assert not guard.busy
