"""The after-stream TwiML comes from the call's shared record, so any instance can answer it."""
from server.app import create_app
from server.core.ending import apologise_after_stream
from server.settings import Settings

CALL = {"CallSid": "CA" + "3" * 32, "From": "+972501234567", "To": "+97235550100"}


def instance(db_url: str):
    """One server process's app: its own memory (call registry), the shared database."""
    return create_app(Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "DATABASE_URL": db_url,
                                         "TWILIO_SIGNATURE_VALIDATION": "off",
                                         "PUBLIC_BASE_URL": "https://agent.example.com"}))


def test_who_hears_the_apology():
    assert apologise_after_stream(None) is False                                   # no instance knows the call
    assert apologise_after_stream(("in_progress", None, False)) is True            # its stream never ended well
    assert apologise_after_stream(("failed", "realtime_unavailable", True)) is True
    assert apologise_after_stream(("partial_lead", "realtime_closed", True)) is True   # a lead, but the line died
    assert apologise_after_stream(("lead_captured", "lead_captured", True)) is False
    assert apologise_after_stream(("no_lead", "silence_timeout", True)) is False


def test_another_instance_answers_the_after_stream_request_from_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    a, b = instance(url), instance(url)
    assert a.test_client().post("/webhook/incoming_call", data=CALL).status_code == 200
    # The stream went to instance A (or A died mid-call): B, which never saw the call, apologises.
    after = b.test_client().post("/webhook/stream_ended", data={"CallSid": CALL["CallSid"]})
    assert b"<Say" in after.data and b"<Hangup" in after.data
    store = a.config["CALL_RECORDS"].store
    store.call_ended(CALL["CallSid"], outcome="no_lead", hangup_reason="silence_timeout", turns=1, responses=2,
                     barge_ins=0, latencies_ms=[700], transcript=[])
    after = b.test_client().post("/webhook/stream_ended", data={"CallSid": CALL["CallSid"]})
    assert b"<Say" not in after.data and b"<Hangup" in after.data
    store.call_ended(CALL["CallSid"], outcome="failed", hangup_reason="realtime_closed", turns=1, responses=1,
                     barge_ins=0, latencies_ms=[], transcript=[])
    after = b.test_client().post("/webhook/stream_ended", data={"CallSid": CALL["CallSid"]})
    assert b"<Say" in after.data
    unknown = b.test_client().post("/webhook/stream_ended", data={"CallSid": "CA" + "9" * 32})
    assert b"<Say" not in unknown.data and b"<Hangup" in unknown.data


def test_the_webhook_writes_the_record_with_a_masked_caller(tmp_path):
    app = instance(f"sqlite:///{tmp_path}/x.sqlite3")
    app.test_client().post("/webhook/incoming_call", data=CALL)
    [call] = app.config["CALL_RECORDS"].store.recent_calls()
    assert call["call_sid"] == CALL["CallSid"] and call["outcome"] == "in_progress"
    assert call["caller"] != CALL["From"] and call["caller"].endswith("4567")


def test_the_dial_action_hangs_up_after_a_talk_or_falls_back_as_the_business_chose(tmp_path):
    from pathlib import Path
    shipped = (Path(__file__).resolve().parent.parent / "config" / "businesses.toml").read_text(encoding="utf-8")
    url = f"sqlite:///{tmp_path}/shared.sqlite3"
    agent = instance(url).test_client()
    agent.post("/webhook/incoming_call", data=CALL)
    answered = agent.post("/webhook/transfer_done", data={**CALL, "DialCallStatus": "completed"})
    assert b"<Hangup" in answered.data and b"<Dial" not in answered.data
    back = agent.post("/webhook/transfer_done", data={**CALL, "DialCallStatus": "no-answer"})
    assert b"<Connect><Stream" in back.data and b'name="Transfer" value="unanswered"' in back.data
    voicemail_file = tmp_path / "businesses.toml"
    voicemail_file.write_text(shipped.replace('number = "+97235550100"',
                                              'number = "+97235550100"\ntransfer_fallback = "voicemail"'),
                              encoding="utf-8")
    app = create_app(Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "DATABASE_URL": url,
                                        "TWILIO_SIGNATURE_VALIDATION": "off", "BUSINESSES_FILE": str(voicemail_file),
                                        "PUBLIC_BASE_URL": "https://agent.example.com"}))
    busy = app.test_client().post("/webhook/transfer_done", data={**CALL, "DialCallStatus": "busy"})
    assert b"<Record" in busy.data and b"<Say" in busy.data and b"<Connect" not in busy.data
    store = app.config["CALL_RECORDS"].store
    assert store.call_detail(CALL["CallSid"])["call"]["transfer"] == {"status": "busy"}
