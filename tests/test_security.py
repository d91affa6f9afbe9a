"""Signed requests only: the webhook and the media WebSocket upgrade (before it is accepted)."""
import logging

import pytest
from twilio.request_validator import RequestValidator

from server.app import create_app
from server.settings import Settings

TOKEN = "tok-secret-987"
PUBLIC = "https://agent.example.com"
FORM = {"CallSid": "CA" + "1" * 32, "From": "+972501234567", "To": "+97235550100", "AccountSid": "AC" + "2" * 32}


@pytest.fixture()
def client():
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "DATABASE_URL": "sqlite://", "TWILIO_AUTH_TOKEN": TOKEN,
                                  "PUBLIC_BASE_URL": PUBLIC})
    return create_app(settings).test_client()


def sign(url: str, params: dict) -> str:
    return RequestValidator(TOKEN).compute_signature(url, params)


def test_signed_webhook_gets_twiml(client):
    sig = sign(f"{PUBLIC}/webhook/incoming_call", FORM)
    resp = client.post("/webhook/incoming_call", data=FORM, headers={"X-Twilio-Signature": sig})
    assert resp.status_code == 200
    assert b'<Stream url="wss://agent.example.com/ws/twilio-media">' in resp.data


def test_unsigned_or_wrongly_signed_webhook_is_403(client, caplog):
    caplog.set_level(logging.WARNING)
    assert client.post("/webhook/incoming_call", data=FORM).status_code == 403
    wrong = sign(f"{PUBLIC}/webhook/incoming_call", {**FORM, "To": "+15550000000"})
    assert client.post("/webhook/incoming_call", data=FORM, headers={"X-Twilio-Signature": wrong}).status_code == 403
    other_host = sign("https://evil.example.com/webhook/incoming_call", FORM)
    assert client.post("/webhook/incoming_call", data=FORM,
                       headers={"X-Twilio-Signature": other_host}).status_code == 403
    text = caplog.text
    assert "[SECURITY] rejected webhook" in text and "missing" in text and "invalid" in text
    assert TOKEN not in text and "+972501234567" not in text


def test_media_upgrade_without_a_valid_signature_is_refused_before_accepting(client):
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert client.get("/ws/twilio-media", headers=headers).status_code == 403
    https_signed = sign(f"{PUBLIC}/ws/twilio-media", {})           # Twilio signs the wss:// URL, not https://
    assert client.get("/ws/twilio-media", headers={**headers, "X-Twilio-Signature": https_signed}).status_code == 403


def test_validation_off_is_explicit_and_loud(caplog):
    caplog.set_level(logging.WARNING)
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "DATABASE_URL": "sqlite://", "TWILIO_SIGNATURE_VALIDATION": "off"})
    client = create_app(settings).test_client()
    assert "TWILIO_SIGNATURE_VALIDATION=off" in caplog.text and "never in production" in caplog.text
    assert client.post("/webhook/incoming_call", data=FORM).status_code == 200
