import base64
import json

from server.core import twilio_codec as tw
from sim import twilio_wire as wire

SID = "MZ" + "a" * 32
CALL = "CA" + "b" * 32
ACCOUNT = "AC" + "c" * 32


def test_outbound_messages_exact_json():
    assert tw.media_message(SID, b"\xff\x00") == '{"event":"media","streamSid":"%s","media":{"payload":"/wA="}}' % SID
    assert tw.mark_message(SID, "assistant_tts_end") == \
        '{"event":"mark","streamSid":"%s","mark":{"name":"assistant_tts_end"}}' % SID
    assert tw.clear_message(SID) == '{"event":"clear","streamSid":"%s"}' % SID


def test_twilio_side_messages_use_strings_for_numbers():
    start = json.loads(wire.start(1, ACCOUNT, SID, CALL, {"From": "+972501234567"}))
    assert start == {"event": "start", "sequenceNumber": "1", "streamSid": SID,
                     "start": {"accountSid": ACCOUNT, "streamSid": SID, "callSid": CALL, "tracks": ["inbound"],
                               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                               "customParameters": {"From": "+972501234567"}}}
    media = json.loads(wire.media(4, SID, 2, 20, b"\x01\x02"))
    assert media == {"event": "media", "sequenceNumber": "4", "streamSid": SID,
                     "media": {"track": "inbound", "chunk": "2", "timestamp": "20", "payload": "AQI="}}
    assert json.loads(wire.stop(9, ACCOUNT, SID, CALL)) == {
        "event": "stop", "sequenceNumber": "9", "streamSid": SID, "stop": {"accountSid": ACCOUNT, "callSid": CALL}}
    assert json.loads(wire.connected()) == {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def test_round_trips():
    start = tw.parse(wire.start(1, ACCOUNT, SID, CALL, {"To": "+97235550100"}))
    assert start == tw.Start(SID, CALL, ACCOUNT, ("inbound",), "audio/x-mulaw", 8000, 1, {"To": "+97235550100"})
    media = tw.parse(wire.media(5, SID, 3, 40, b"\xff" * 160))
    assert media == tw.Media(SID, "inbound", 3, 40, base64.b64encode(b"\xff" * 160).decode())
    assert media.audio() == b"\xff" * 160
    assert tw.parse(wire.mark(6, SID, "m1")) == tw.Mark(SID, "m1")
    assert tw.parse(wire.stop(7, ACCOUNT, SID, CALL)) == tw.Stop(SID, CALL)
    assert tw.parse(tw.clear_message(SID)) == tw.Clear(SID)
    # what our server sends parses too (the caller simulator reads it)
    assert tw.parse(tw.media_message(SID, b"\x01")).audio() == b"\x01"


def test_documented_twilio_sample_messages_parse():
    dtmf = '{"event":"dtmf","streamSid":"%s","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}' % SID
    assert tw.parse(dtmf) == tw.Dtmf(SID, "1", 5)
    media = ('{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5",'
             '"payload":"no+JhoaJjpzS"},"streamSid":"%s"}' % SID)
    assert tw.parse(media).timestamp_ms == 5


def test_bad_input_never_raises():
    cases = [b"\x00\x01", "not json", "[]", "{}", '{"event": 5}', '{"event":"media"}',
             '{"event":"media","media":{"payload":"***"}}', '{"event":"media","media":{"payload":5}}',
             '{"event":"start","start":{}}', '{"event":"mark","mark":{}}', '{"event":"media","media":{"payload":"AA==","chunk":"x"}}']
    for text in cases:
        assert isinstance(tw.parse(text), tw.MalformedTwilioMessage), text
    assert tw.parse('{"event":"something_new"}') == tw.UnknownTwilioEvent("something_new")


def test_the_per_stream_media_encoder_writes_exactly_what_media_message_writes():
    for sid in ("MZ0123456789abcdef", 'MZ"odd\\sid\u05d0'):
        encode = tw.media_encoder(sid)
        for audio in (b"", b"\xff" * 160, bytes(range(256))):
            assert encode(audio) == tw.media_message(sid, audio)
            assert json.loads(encode(audio))["streamSid"] == sid


def test_an_infinite_timestamp_is_malformed_not_a_crash():
    event = tw.parse('{"event":"media","streamSid":"MZ1","media":{"payload":"","timestamp":Infinity,"chunk":"1"}}')
    assert isinstance(event, tw.MalformedTwilioMessage)


def test_every_key_of_the_keypad_parses_and_the_simulated_keypress_round_trips():
    for seq, key in enumerate("0123456789*#", start=2):
        assert tw.parse(wire.dtmf(seq, SID, key)) == tw.Dtmf(SID, key, seq)
    # a sequence number sent as a number still reads; one left out reads as 0
    assert tw.parse('{"event":"dtmf","streamSid":"MZ1","sequenceNumber":7,"dtmf":{"digit":"#"}}') == \
        tw.Dtmf("MZ1", "#", 7)
    assert tw.parse('{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"0"}}') == \
        tw.Dtmf("MZ1", "0", 0)


def test_a_dtmf_that_is_not_one_key_is_malformed_not_a_crash():
    def dtmf(body) -> str:
        return json.dumps({"event": "dtmf", "streamSid": SID, "sequenceNumber": "5", "dtmf": body})
    cases = [dtmf({"track": "inbound_track"}),                  # no digit
             dtmf({"track": "inbound_track", "digit": ""}),
             dtmf({"track": "inbound_track", "digit": "12"}),    # more than one key
             dtmf({"track": "inbound_track", "digit": "A"}),     # not on a phone's keypad
             dtmf({"track": "inbound_track", "digit": "\u0661"}),   # a digit, but not an ASCII one
             dtmf({"track": "inbound_track", "digit": 1}),       # a number, not a string
             dtmf({"track": "inbound_track", "digit": None}),
             dtmf("1"), dtmf(None), dtmf([]),
             '{"event":"dtmf","streamSid":"MZ1"}',
             '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"x","dtmf":{"digit":"1"}}',
             '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":true,"dtmf":{"digit":"1"}}']
    for text in cases:
        event = tw.parse(text)
        assert isinstance(event, tw.MalformedTwilioMessage), text
        assert event.reason.startswith("bad 'dtmf' message"), event
