"""The called number's business shapes the call: instructions, greeting, voice, language, silence
settings, the save_lead tool and the lead's services; unknown numbers get the default profile."""
import json

import pytest

from server.business.directory import BusinessDirectory
from server.business.profiles import load_profiles
from server.call.records import CallRecords
from server.call.registry import CallRegistry
from server.core import realtime_protocol as rt
from server.media_ws_ai import MediaCall
from server.settings import Settings
from server.storage.db import Store


def media_call(tmp_path, business_time: str) -> MediaCall:
    settings = Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_AUTH_TOKEN": "tok",
                                  "TURN_SILENCE_TIMEOUT_MS": "8000", "OPENAI_VOICE": "alloy",
                                  "BUSINESS_TIME": business_time})
    store = Store(f"sqlite:///{tmp_path}/calls.sqlite3")
    store.create_schema()
    profiles = load_profiles()
    media = MediaCall(ws=None, settings=settings, registry=CallRegistry(),
                      records=CallRecords(store, BusinessDirectory(profiles, store.sync_businesses(profiles))))
    media.call_sid, media.twilio.stream_sid = "CA0001", "MZ0001"
    return media


@pytest.fixture()
def call(tmp_path) -> MediaCall:
    return media_call(tmp_path, "2026-12-01T10:00:00+02:00")     # a Tuesday morning: open


def session_of(call: MediaCall) -> dict:
    return json.loads(rt.session_update(call.model.setup.instructions, call.model.setup.voice, "gpt-4o-mini-transcribe", call.model.setup.tools,
                                        call.model.setup.language))["session"]


def test_the_locksmith_number_gets_its_profile_and_lead_capture(call):
    call._set_up_business({"To": "+97235550100", "From": "+972501234567"})
    session = session_of(call)
    assert "מנעולן השרון" in session["instructions"] and "התקנת מנעול חכם" in session["instructions"]
    assert session["tools"][0]["name"] == "save_lead" and session["tool_choice"] == "auto"
    assert session["audio"]["output"]["voice"] == "marin"                  # the profile's, not OPENAI_VOICE
    assert session["audio"]["input"]["transcription"]["language"] == "he"
    assert "מנעולן השרון" in call.core.prompts["greeting"]
    assert call.core.cfg.silence_timeout_ms == 8000                        # no override: TURN_* applies
    assert call.core.lead.services[0] == "התקנת מנעול חכם"
    assert call.core.lead.fields == {"phone": "+972501234567"}
    calls = call.records.store.recent_calls()
    assert [(c["call_sid"], c["business"], c["caller"]) for c in calls] == [("CA0001", "מנעולן השרון", "+97******4567")]


def test_a_business_with_its_own_silence_settings_overrides_turn_defaults(call):
    call._set_up_business({"To": "+97235550200", "From": "+972501234567"})
    assert (call.core.cfg.silence_timeout_ms, call.core.cfg.max_silence_warnings) == (7000, 2)
    assert call.model.setup.language == "en" and "Clean & Shine" in call.model.setup.instructions


def test_an_unknown_number_gets_the_default_profile_and_still_captures_a_lead(call):
    call._set_up_business({"To": "+97239999999", "From": "+972501234567"})
    assert "ProSaaS" in call.model.setup.instructions
    assert call.answering.business_id is None and call.core.lead is not None
    assert call.records.store.recent_calls()[0]["business"] is None


def test_after_hours_the_call_gets_the_after_hours_greeting_and_no_transfer(tmp_path):
    media = media_call(tmp_path, "2026-12-05T11:00:00+02:00")          # a Saturday: closed
    profiles = load_profiles()
    media._set_up_business({"To": "+97235550100", "From": "+972501234567"})
    profile = profiles.for_number("+97235550100")
    assert session_of(media)["instructions"].startswith(profile.after_hours_instructions)
    assert [t["name"] for t in session_of(media)["tools"]] == ["save_lead", "transfer_to_human"]
    # the tool is offered, but it answers "unavailable": the core was told no one can take the call
    from server.core.events import CallerDigit, QueueTrigger
    assert QueueTrigger("transfer_unavailable") in media.core.handle(CallerDigit("0", 1000))
