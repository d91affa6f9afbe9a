import pytest

from server.settings import Secret, Settings, SettingsError

BASE = {"OPENAI_API_KEY": "sk-test-123456", "TWILIO_AUTH_TOKEN": "tok-secret-987"}


def test_defaults():
    s = Settings.from_env(BASE)
    assert s.openai_realtime_url == "wss://api.openai.com/v1/realtime"
    assert s.realtime_ws_url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert (s.openai_realtime_model, s.port, s.log_level) == ("gpt-realtime", 5000, "INFO")
    assert s.turn.min_utterance_ms == 300


def test_errors_name_the_variable_and_are_all_reported():
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({"PORT": "abc", "LOG_LEVEL": "loud", "OPENAI_REALTIME_URL": "http://x",
                           "TURN_MIN_UTTERANCE_MS": "abc", "PUBLIC_BASE_URL": "ftp://x"})
    text = str(exc.value)
    for expected in ("OPENAI_API_KEY is not set", "PORT='abc' is not an integer", "LOG_LEVEL='LOUD'",
                     "OPENAI_REALTIME_URL='http://x'", "TURN_MIN_UTTERANCE_MS='abc' is not an integer",
                     "PUBLIC_BASE_URL='ftp://x'"):
        assert expected in text


def test_turn_overrides_and_the_600ms_ceiling():
    assert Settings.from_env({**BASE, "TURN_EOU_SILENCE_MS": "350"}).turn.eou_silence_ms == 350
    with pytest.raises(SettingsError, match="TURN_MIN_UTTERANCE_MS=700 must not exceed 600"):
        Settings.from_env({**BASE, "TURN_MIN_UTTERANCE_MS": "700"})


def test_model_is_appended_to_a_url_with_a_query():
    s = Settings.from_env({**BASE, "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime?x=1",
                           "OPENAI_REALTIME_MODEL": "gpt-realtime-2.1"})
    assert s.realtime_ws_url == "ws://127.0.0.1:9/v1/realtime?x=1&model=gpt-realtime-2.1"


def test_secrets_never_print():
    s = Settings.from_env(BASE)
    assert "sk-test-123456" not in repr(s) and "tok-secret-987" not in repr(s)
    assert str(Secret("abc")) == "Secret(***)"
    assert s.openai_api_key.reveal() == "sk-test-123456"


def test_signature_validation_needs_the_token_or_an_explicit_off():
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN is not set"):
        Settings.from_env({"OPENAI_API_KEY": "sk-x"})
    dev = Settings.from_env({"OPENAI_API_KEY": "sk-x", "TWILIO_SIGNATURE_VALIDATION": "off"})
    assert dev.twilio_signature_validation is False
    assert Settings.from_env(BASE).twilio_signature_validation is True
    with pytest.raises(SettingsError, match="TWILIO_SIGNATURE_VALIDATION='maybe'"):
        Settings.from_env({**BASE, "TWILIO_SIGNATURE_VALIDATION": "maybe"})
