"""The simulators are independent witnesses: their own Twilio wire format, request signatures,
µ-law and CRM signature check, each pinned by a known-answer vector from outside this project."""
import json

from twilio.request_validator import RequestValidator

from server.core import twilio_codec as tw
from server.core import ulaw as server_ulaw
from server.delivery import signing
from sim import crm_receiver, line_model
from sim import twilio_wire as wire

# Twilio's "Webhooks security" page: this request, signed with auth token 12345.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_request_signature_matches_twilios_documented_example():
    assert wire.signature("12345", DOC_URL, DOC_PARAMS) == DOC_SIGNATURE
    assert RequestValidator("12345").validate(DOC_URL, DOC_PARAMS, DOC_SIGNATURE)   # and Twilio's own library


def test_crm_signature_check_known_answer():
    # openssl dgst -sha256 -hmac 'crm-known-answer-secret' over '1767225600.' + body
    body = b'{"lead":{"service":"locksmith","city":"Haifa"}}'
    mac = "91e298bc68f1a6078c3f07c9060f412895cbad94beac6b93f5bbc2a1de64674a"
    header = f"t=1767225600,v1={mac}"
    assert crm_receiver.verify_signature("crm-known-answer-secret", body, header, now_s=1767225600 + 299)
    assert not crm_receiver.verify_signature("crm-known-answer-secret", body, header, now_s=1767225600 + 301)
    assert not crm_receiver.verify_signature("other-secret", body, header, now_s=1767225600)
    assert not crm_receiver.verify_signature("crm-known-answer-secret", body + b" ", header, now_s=1767225600)
    assert crm_receiver.verify_signature("crm-known-answer-secret", body, f"t=1767225600,v1=00,v1={mac}", 1767225600)
    # the server signs what the witness accepts
    assert signing.sign("crm-known-answer-secret", body, 1767225600) == header


def test_the_simulators_ulaw_agrees_with_the_g711_reference_values():
    # ITU-T G.711 µ-law: code 0x00 is the most negative sample, 0x80 the most positive, 0xFF/0x7F zero
    assert list(line_model.ulaw_decode(bytes([0x00, 0x80, 0xFF, 0x7F]))) == [-32124, 32124, 0, 0]
    every_code = bytes(range(256))
    assert list(line_model.ulaw_decode(every_code)) == list(server_ulaw.decode(every_code))


def test_the_server_reads_what_the_simulated_twilio_sends():
    start = tw.parse(wire.start(1, "AC1", "MZ1", "CA1", {"From": "+972501234567"}))
    assert isinstance(start, tw.Start) and start.custom_parameters == {"From": "+972501234567"}
    media = tw.parse(wire.media(2, "MZ1", 1, 0, b"\x01\x02"))
    assert isinstance(media, tw.Media) and media.audio() == b"\x01\x02"


def test_the_simulated_twilio_reads_what_the_server_sends_and_refuses_the_rest():
    assert wire.parse_outbound(tw.media_message("MZ1", b"\xff\x7f")) == wire.Outbound("media", "MZ1", audio=b"\xff\x7f")
    assert wire.parse_outbound(tw.mark_message("MZ1", "assistant_tts_end")).name == "assistant_tts_end"
    assert wire.parse_outbound(tw.clear_message("MZ1")).kind == "clear"
    bad = [json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "not base64!"}}),
           json.dumps({"event": "speak", "streamSid": "MZ1"}), json.dumps({"event": "clear"}), "{", b"\x00"]
    assert [wire.parse_outbound(b).kind for b in bad] == ["invalid"] * len(bad)
