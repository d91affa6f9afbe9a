"""Business profiles: the repo's TOML file, validation that reports every problem at once, the lookup of
a called number in any spelling, and the directory that answers a number from the database."""
import json
import re
from dataclasses import fields
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from server.business.directory import Answering, BusinessDirectory
from server.business.hours import OpeningHours
from server.business.profiles import (DEFAULT_AFTER_HOURS_GREETING, DEFAULT_AFTER_HOURS_INSTRUCTIONS, DEFAULT_FILE,
                                      DEFAULT_SMS_TEXT, BusinessProfile, ProfileError, Profiles, load_profiles,
                                      parse_profiles, session_instructions)
from server.storage.db import Store
from server.storage.models import Business
from tests.store_helpers import profiles, store  # noqa: F401 - shared fixtures

LOCKSMITH = "+97235550100"
CLEANER = "+97235550200"
LOCKSMITH_SERVICES = ("התקנת מנעול חכם", "פריצת דלת", "החלפת צילינדר", "שכפול מפתחות", "תיקון דלת")
LOCKSMITH_CITIES = ("תל אביב-יפו", "רמת גן", "גבעתיים", "חולון", "בת ים", "הרצליה", "רעננה", "כפר סבא", "נתניה",
                    "פתח תקווה")
KNOWN_KEYS = ("after_hours_greeting, after_hours_instructions, booking_days_ahead, booking_notice_minutes, "
              "calendar_password_env, calendar_timeout_ms, calendar_url, calendar_username_env, chol_hamoed, cities, "
              "closed_dates, crm_secret_env, crm_webhook_url, greeting, holiday_eve_hours, holidays, hours, "
              "instructions, keypad, language, max_silence_warnings, model, name, number, recording, "
              "recording_retention_days, required_fields, services, silence_timeout_ms, sms_on_lead, sms_text, "
              "timezone, tools, transfer_caller_id, transfer_fallback, transfer_number, transfer_ring_timeout_s, "
              "transfer_when, visit_buffer_minutes, visit_minutes, voice")
ISRAELI_WEEK = (("sun", "08:00-18:00"), ("mon", "08:00-18:00"), ("tue", "08:00-18:00"), ("wed", "08:00-18:00"),
                ("thu", "08:00-18:00"), ("fri", "08:00-13:00"), ("sat", "closed"))
ONE = '[[business]]\nnumber = "+97235550100"\nname = "A"\n'


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        parse_profiles(text, "b.toml")
    return info.value.problems


# --- the repo's file ------------------------------------------------------------------------------

def test_repo_file_is_the_default_and_lists_two_businesses_in_e164():
    assert DEFAULT_FILE == Path(__file__).resolve().parents[1] / "config" / "businesses.toml"
    profiles = load_profiles()
    assert profiles.source == "businesses.toml"
    assert sorted(profiles.businesses) == [LOCKSMITH, CLEANER]
    for number, profile in profiles.businesses.items():
        assert profile.number == number
        assert re.fullmatch(r"\+[1-9]\d{7,14}", number)
        assert not profile.is_default
    assert profiles.default.is_default and profiles.default.name == "ProSaaS"


def test_repo_file_locksmith_profile():
    locksmith = load_profiles().businesses[LOCKSMITH]
    assert locksmith.name == "מנעולן השרון"
    assert "התקנת מנעול חכם" in locksmith.services
    assert locksmith.services == LOCKSMITH_SERVICES
    assert locksmith.cities == LOCKSMITH_CITIES
    assert (locksmith.language, locksmith.voice) == ("he", "marin")
    assert (locksmith.silence_timeout_ms, locksmith.max_silence_warnings) == (None, None)   # the TURN_* defaults
    assert (locksmith.crm_webhook_url, locksmith.crm_secret_env) == ("http://127.0.0.1:8765/leads", "CRM_SECRET_LOCKSMITH")
    assert locksmith.required_fields == ("service", "city", "phone")
    assert locksmith.instructions.startswith("You answer the phone of מנעולן השרון, a locksmith.")


def test_repo_file_cleaner_profile():
    cleaner = load_profiles().businesses[CLEANER]
    assert (cleaner.name, cleaner.language) == ("Clean & Shine", "en")
    assert cleaner.services == ("home cleaning", "office cleaning", "window cleaning", "post-renovation cleaning")
    assert cleaner.cities == ("תל אביב-יפו", "ירושלים", "חיפה")
    assert cleaner.crm_webhook_url is None
    assert (cleaner.silence_timeout_ms, cleaner.max_silence_warnings) == (7000, 2)


def test_repo_file_every_profile_has_a_transfer_number_and_the_israeli_week():
    profiles = load_profiles()
    transfers = {}
    for profile in [profiles.default, *profiles.businesses.values()]:
        assert profile.timezone == "Asia/Jerusalem"
        assert profile.hours == ISRAELI_WEEK
        assert profile.closed_dates == ()
        assert re.fullmatch(r"\+972355501\d\d", profile.transfer_number)      # fictional 03-555-01xx
        assert profile.transfer_number != profile.number
        assert (profile.transfer_when, profile.transfer_ring_timeout_s) == ("open_hours", 20)
        assert profile.keypad == (("0", "person"), ("9", "repeat"))
        transfers[profile.number] = profile.transfer_number
    assert transfers == {"": "+97235550199", LOCKSMITH: "+97235550101", CLEANER: "+97235550102"}
    cleaner = profiles.businesses[CLEANER]
    assert "in English" in cleaner.after_hours_greeting and "closed now" in cleaner.after_hours_greeting
    locksmith = profiles.businesses[LOCKSMITH]
    assert "מנעולן השרון" in locksmith.after_hours_greeting and "closed now" in locksmith.after_hours_greeting
    assert locksmith.after_hours_instructions == DEFAULT_AFTER_HOURS_INSTRUCTIONS
    assert profiles.default.after_hours_greeting == DEFAULT_AFTER_HOURS_GREETING


def test_repo_file_hours_answer_in_jerusalem_time():
    locksmith = load_profiles().businesses[LOCKSMITH]
    sunday_0800 = datetime(2026, 6, 7, 5, 0, tzinfo=timezone.utc)              # UTC+3 in June
    assert locksmith.is_open(sunday_0800) and not locksmith.is_open(datetime(2026, 6, 7, 4, 59, tzinfo=timezone.utc))
    saturday = datetime(2026, 6, 13, 9, 0, tzinfo=timezone.utc)
    assert not locksmith.is_open(saturday)
    assert locksmith.opening_hours().next_opening(saturday) == datetime(2026, 6, 14, 5, 0, tzinfo=timezone.utc)


# --- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    (ONE + "favourite = 1\n",
     f"b.toml: business #1 (+97235550100): unknown key 'favourite' (known: {KNOWN_KEYS})"),
    ('[[business]]\nnumber = "+97235550100"\n',
     "b.toml: business #1 (+97235550100): 'name' is required"),
    ('[[business]]\nnumber = "+97235550100"\nname = "  "\n',
     "b.toml: business #1 (+97235550100): 'name' must be a non-empty string"),
    ('[[business]]\nname = "A"\n',
     "b.toml: business #1 (?): 'number' is required"),
    ('[[business]]\nnumber = "not-a-number"\nname = "A"\n',
     "b.toml: business #1 (not-a-number): 'number' 'not-a-number' is not a phone number"),
    ('[[business]]\nnumber = "12"\nname = "A"\n',
     "b.toml: business #1 (12): 'number' '12' is not a phone number"),
    (ONE + '[[business]]\nnumber = "03-555-0100"\nname = "B"\n',
     "b.toml: business #2: number +97235550100 is listed twice"),
    (ONE + 'language = "fr"\n',
     "b.toml: business #1 (+97235550100): 'language' 'fr' must be one of he, en, ar, ru"),
    (ONE + 'required_fields = ["service", "email"]\n',
     "b.toml: business #1 (+97235550100): required field 'email' must be one of service, city, name, phone, notes"),
    (ONE + 'services = "פריצת דלת"\n',
     "b.toml: business #1 (+97235550100): 'services' must be a list of non-empty strings"),
    (ONE + 'cities = ["רמת גן", ""]\n',
     "b.toml: business #1 (+97235550100): 'cities' must be a list of non-empty strings"),
    (ONE + "silence_timeout_ms = 999\n",
     "b.toml: business #1 (+97235550100): 'silence_timeout_ms' must be an integer in [1000, 600000]"),
    (ONE + "silence_timeout_ms = 600001\n",
     "b.toml: business #1 (+97235550100): 'silence_timeout_ms' must be an integer in [1000, 600000]"),
    (ONE + "silence_timeout_ms = 7000.0\n",
     "b.toml: business #1 (+97235550100): 'silence_timeout_ms' must be an integer in [1000, 600000]"),
    (ONE + "max_silence_warnings = 11\n",
     "b.toml: business #1 (+97235550100): 'max_silence_warnings' must be an integer in [0, 10]"),
    (ONE + 'crm_webhook_url = "ftp://crm.example.com/leads"\n',
     "b.toml: business #1 (+97235550100): 'crm_webhook_url' must start with http:// or https://"),
    (ONE + 'timezone = "Asia/Jerusalam"\n',
     "b.toml: business #1 (+97235550100): 'timezone' 'Asia/Jerusalam' is not a known time zone "
     "(an IANA name such as Asia/Jerusalem)"),
    (ONE + '[business.hours]\nmonday = "08:00-18:00"\n',
     "b.toml: business #1 (+97235550100): 'hours.monday': unknown day (days: sun, mon, tue, wed, thu, fri, sat)"),
    (ONE + '[business.hours]\nmon = "08:00-25:00"\n',
     "b.toml: business #1 (+97235550100): 'hours.mon' '08:00-25:00': '25:00' is not a time of day "
     "(HH:MM from 00:00 to 24:00)"),
    (ONE + '[business.hours]\nfri = "13:00-08:00"\n',
     "b.toml: business #1 (+97235550100): 'hours.fri' '13:00-08:00': 13:00-08:00 ends before it starts "
     "(a range past midnight is written as two: \"22:00-24:00\" and next day \"00:00-02:00\")"),
    (ONE + 'hours = "08:00-18:00"\n',
     "b.toml: business #1 (+97235550100): 'hours' must be a table of days (sun = \"08:00-18:00\", ...)"),
    (ONE + 'closed_dates = ["2026-12-32"]\n',
     "b.toml: business #1 (+97235550100): 'closed_dates' '2026-12-32' is not a date (YYYY-MM-DD)"),
    (ONE + 'closed_dates = ["2026-12-25"]\n[business.hours]\nclosed_dates = ["2026-12-24"]\n',
     "b.toml: business #1 (+97235550100): 'closed_dates' is given twice (in 'hours' and beside it): keep one"),
    (ONE + 'transfer_number = "call Dana"\n',
     "b.toml: business #1 (+97235550100): 'transfer_number' 'call Dana' is not a phone number"),
    (ONE + 'transfer_number = "03-555-0100"\n',
     "b.toml: business #1 (+97235550100): 'transfer_number' +97235550100 is the business's own number"),
    (ONE + 'transfer_when = "weekdays"\n',
     "b.toml: business #1 (+97235550100): 'transfer_when' 'weekdays' must be one of open_hours, always, never"),
    (ONE + "transfer_ring_timeout_s = 4\n",
     "b.toml: business #1 (+97235550100): 'transfer_ring_timeout_s' must be an integer in [5, 60]"),
    (ONE + "transfer_ring_timeout_s = 61\n",
     "b.toml: business #1 (+97235550100): 'transfer_ring_timeout_s' must be an integer in [5, 60]"),
    (ONE + 'transfer_caller_id = "withheld"\n',
     "b.toml: business #1 (+97235550100): 'transfer_caller_id' 'withheld' must be one of business, caller"),
    (ONE + 'transfer_fallback = "hangup"\n',
     "b.toml: business #1 (+97235550100): 'transfer_fallback' 'hangup' must be one of agent, voicemail"),
    (ONE + 'keypad = { 5 = "transfer" }\n',
     "b.toml: business #1 (+97235550100): 'keypad.5' 'transfer' must be one of person, repeat"),
    (ONE + 'keypad = { 10 = "person" }\n',
     "b.toml: business #1 (+97235550100): 'keypad.10': not a key of the keypad (0-9, * or #)"),
    (ONE + 'keypad = "0"\n',
     "b.toml: business #1 (+97235550100): 'keypad' must be a table of digit = action ({ 0 = \"person\" })"),
    (ONE + 'sms_on_lead = "yes"\n',
     "b.toml: business #1 (+97235550100): 'sms_on_lead' must be true or false"),
    (ONE + 'sms_text = "Thanks {name}, {business} will call"\n',
     "b.toml: business #1 (+97235550100): 'sms_text' has an unknown placeholder {name} "
     "(known: {business}, {service}, {city}, {visit})"),
    (ONE + 'sms_text = "{business.__class__}"\n',
     "b.toml: business #1 (+97235550100): 'sms_text' has an unknown placeholder {business.__class__} "
     "(known: {business}, {service}, {city}, {visit})"),
    (ONE + 'sms_text = "Thanks {business"\n',
     "b.toml: business #1 (+97235550100): 'sms_text' is not a valid template (expected '}' before end of "
     "string); write a literal brace as {{ or }}"),
    (ONE + "recording = 1\n",
     "b.toml: business #1 (+97235550100): 'recording' must be true or false"),
    (ONE + "recording_retention_days = 0\n",
     "b.toml: business #1 (+97235550100): 'recording_retention_days' must be an integer in [1, 3650]"),
    (ONE + "recording_retention_days = 3651\n",
     "b.toml: business #1 (+97235550100): 'recording_retention_days' must be an integer in [1, 3650]"),
    ('[default]\nname = "D"\n[default.hours]\nsat = "24:00-25:00"\n',
     "b.toml: [default]: 'hours.sat' '24:00-25:00': '25:00' is not a time of day (HH:MM from 00:00 to 24:00)"),
    ('colour = "red"\n' + ONE,
     "b.toml: unknown top-level key 'colour' (expected [default] and [[business]])"),
    ('[business]\nnumber = "+97235550100"\nname = "A"\n',
     "b.toml: 'business' must be an array of tables ([[business]])"),
    ('[default]\nname = "D"\nlanguage = "xx"\n',
     "b.toml: [default]: 'language' 'xx' must be one of he, en, ar, ru"),
], ids=["unknown-key", "missing-name", "blank-name", "missing-number", "number-no-digits", "number-too-short",
        "duplicate-number", "bad-language", "bad-required-field", "services-not-a-list", "blank-city",
        "silence-too-low", "silence-too-high", "silence-float", "warnings-too-many", "crm-url-scheme",
        "bad-timezone", "bad-day", "hour-25", "end-before-start", "hours-not-a-table", "bad-closed-date",
        "closed-dates-twice", "transfer-not-a-number", "transfer-to-itself", "bad-transfer-when", "ring-too-short",
        "ring-too-long", "bad-caller-id", "bad-fallback", "bad-keypad-action", "bad-keypad-digit",
        "keypad-not-a-table", "sms-flag-not-bool", "sms-unknown-placeholder", "sms-attribute-placeholder",
        "sms-unclosed-brace", "recording-not-bool", "retention-too-short", "retention-too-long",
        "bad-default-hours", "unknown-top-level-key", "business-not-an-array", "bad-default"])
def test_one_problem_is_reported_naming_file_entry_and_key(text, problem):
    assert problems_of(text) == [problem]


def test_a_business_may_choose_its_model_and_a_malformed_name_is_refused():
    parsed = parse_profiles(ONE + 'model = "gpt-realtime-mini"\n', "b.toml")
    assert [b.model for b in parsed.businesses.values()] == ["gpt-realtime-mini"]
    assert parsed.default.model is None                    # the server's OPENAI_REALTIME_MODEL
    assert problems_of(ONE + 'model = "gpt realtime?x=1"\n') == [
        "b.toml: business #1 (+97235550100): 'model' 'gpt realtime?x=1' must be a model name such as gpt-realtime-mini"]


def test_invalid_toml_is_one_problem_naming_the_file():
    problems = problems_of('[[business]\nnumber = "+97235550100"\n')
    assert len(problems) == 1
    assert problems[0].startswith("b.toml: not valid TOML: ")


def test_every_problem_in_the_file_is_reported_at_once():
    text = ('colour = "red"\n'
            '[default]\nname = "D"\nlanguage = "xx"\n'
            '[[business]]\nnumber = "+97235550100"\nname = "A"\nfavourite = 1\nservices = "locks"\n'
            '[[business]]\nnumber = "+97235550200"\nname = "B"\nrequired_fields = ["email"]\n'
            '[[business]]\nnumber = "12"\nsilence_timeout_ms = 5\ncrm_webhook_url = "ftp://x"\n'
            '[[business]]\nnumber = "+97235550300"\nname = "C"\n'
            '[[business]]\nnumber = "035550300"\nname = "D"\n')
    with pytest.raises(ProfileError) as info:
        parse_profiles(text, "b.toml")
    expected = [
        "b.toml: unknown top-level key 'colour' (expected [default] and [[business]])",
        "b.toml: [default]: 'language' 'xx' must be one of he, en, ar, ru",
        f"b.toml: business #1 (+97235550100): unknown key 'favourite' (known: {KNOWN_KEYS})",
        "b.toml: business #1 (+97235550100): 'services' must be a list of non-empty strings",
        "b.toml: business #2 (+97235550200): required field 'email' must be one of service, city, name, phone, notes",
        "b.toml: business #3 (12): 'number' '12' is not a phone number",
        "b.toml: business #3 (12): 'crm_webhook_url' must start with http:// or https://",
        "b.toml: business #3 (12): 'name' is required",
        "b.toml: business #3 (12): 'silence_timeout_ms' must be an integer in [1000, 600000]",
        "b.toml: business #5: number +97235550300 is listed twice",
    ]
    assert info.value.problems == expected
    assert str(info.value) == "invalid business profiles:\n  " + "\n  ".join(expected)


def test_problems_of_the_new_keys_come_together_with_the_others():
    text = ('[[business]]\nnumber = "+97235550100"\nlanguage = "fr"\ntimezone = "Mars/Olympus"\n'
            'transfer_number = "nobody"\nkeypad = { 0 = "operator" }\nrecording = "on"\n'
            '[business.hours]\nsat = "10:00-09:00"\n')
    where = "b.toml: business #1 (+97235550100)"
    assert problems_of(text) == [
        f"{where}: 'language' 'fr' must be one of he, en, ar, ru",
        f"{where}: 'name' is required",
        f"{where}: 'timezone' 'Mars/Olympus' is not a known time zone (an IANA name such as Asia/Jerusalem)",
        f"{where}: 'hours.sat' '10:00-09:00': 10:00-09:00 ends before it starts (a range past midnight is written "
        "as two: \"22:00-24:00\" and next day \"00:00-02:00\")",
        f"{where}: 'transfer_number' 'nobody' is not a phone number",
        f"{where}: 'keypad.0' 'operator' must be one of person, repeat",
        f"{where}: 'recording' must be true or false"]


def test_duplicate_number_is_reported_even_when_the_first_entry_has_another_problem():
    # Every problem at once: a duplicate must not wait until the entry's other problem is fixed.
    problems = problems_of(ONE + 'language = "fr"\n' + '[[business]]\nnumber = "035550100"\nname = "B"\n')
    assert problems == ["b.toml: business #1 (+97235550100): 'language' 'fr' must be one of he, en, ar, ru",
                        "b.toml: business #2: number +97235550100 is listed twice"]


def test_optional_keys_take_their_defaults_and_a_missing_default_table_uses_the_builtin():
    profiles = parse_profiles(ONE, "b.toml")
    assert profiles.businesses == {LOCKSMITH: BusinessProfile(number=LOCKSMITH, name="A")}
    assert profiles.default.is_default and profiles.default.name == "ProSaaS"
    assert profiles.source == "b.toml"


def test_new_keys_take_their_defaults():
    profile = parse_profiles(ONE, "b.toml").businesses[LOCKSMITH]
    assert (profile.timezone, profile.hours, profile.closed_dates) == ("Asia/Jerusalem", (), ())
    assert (profile.after_hours_greeting, profile.after_hours_instructions) == (
        DEFAULT_AFTER_HOURS_GREETING, DEFAULT_AFTER_HOURS_INSTRUCTIONS)
    assert "Hebrew" in DEFAULT_AFTER_HOURS_GREETING and "closed now" in DEFAULT_AFTER_HOURS_GREETING
    assert "closed now" in DEFAULT_AFTER_HOURS_INSTRUCTIONS and "call them back" in DEFAULT_AFTER_HOURS_INSTRUCTIONS
    assert (profile.transfer_number, profile.transfer_when, profile.transfer_ring_timeout_s) == ("", "open_hours", 20)
    assert (profile.transfer_caller_id, profile.transfer_fallback) == ("business", "agent")
    assert profile.keypad == (("0", "person"), ("9", "repeat"))
    assert (profile.sms_on_lead, profile.sms_text) == (False, DEFAULT_SMS_TEXT)
    assert (profile.recording, profile.recording_retention_days) == (False, 30)
    assert profile.opening_hours() == OpeningHours()                        # no table: always open


def test_new_keys_are_read_and_normalised():
    text = (ONE + 'timezone = "Asia/Jerusalem"\ntransfer_number = "03-555-0101"\ntransfer_when = "always"\n'
            'transfer_ring_timeout_s = 5\ntransfer_caller_id = "caller"\ntransfer_fallback = "voicemail"\n'
            'keypad = { "#" = "repeat", 1 = "person" }\nsms_on_lead = true\n'
            'sms_text = "{business}: {service} / {city} {{ok}}"\nrecording = true\nrecording_retention_days = 3650\n'
            'after_hours_greeting = "ערב טוב"\n'
            '[business.hours]\nfri = "8:00-13:00"\nsun = "16:00-19:00,08:00-12:00"\n'
            'closed_dates = [2026-12-25, "2026-12-24"]\n')
    profile = parse_profiles(text, "b.toml").businesses[LOCKSMITH]
    assert profile.hours == (("sun", "08:00-12:00,16:00-19:00"), ("mon", "closed"), ("tue", "closed"),
                             ("wed", "closed"), ("thu", "closed"), ("fri", "08:00-13:00"), ("sat", "closed"))
    assert profile.closed_dates == ("2026-12-24", "2026-12-25")
    assert profile.opening_hours().closed_dates == frozenset({date(2026, 12, 24), date(2026, 12, 25)})
    assert (profile.transfer_number, profile.transfer_when, profile.transfer_ring_timeout_s) == (
        "+97235550101", "always", 5)
    assert (profile.transfer_caller_id, profile.transfer_fallback) == ("caller", "voicemail")
    assert profile.keypad == (("#", "repeat"), ("1", "person"))             # replaces the default keypad
    assert profile.keypad_action("1") == "person" and profile.keypad_action("0") is None
    assert (profile.sms_on_lead, profile.recording, profile.recording_retention_days) == (True, True, 3650)
    assert profile.sms_for("פריצת דלת", "חולון") == "A: פריצת דלת / חולון {ok}"
    assert profile.after_hours_greeting == "ערב טוב"
    assert profile.after_hours_instructions == DEFAULT_AFTER_HOURS_INSTRUCTIONS


def test_closed_dates_may_also_stand_beside_the_hours_table():
    text = ONE + 'closed_dates = ["2026-12-25"]\n[business.hours]\nfri = "08:00-13:00"\n'
    profile = parse_profiles(text, "b.toml").businesses[LOCKSMITH]
    assert profile.closed_dates == ("2026-12-25",)
    assert not profile.is_open(datetime(2026, 12, 25, 8, 0, tzinfo=timezone.utc))    # a Friday, 10:00 local
    assert profile.is_open(datetime(2026, 12, 18, 8, 0, tzinfo=timezone.utc))


def test_the_default_sms_text_fills_its_placeholders():
    locksmith = load_profiles().businesses[LOCKSMITH]
    assert locksmith.sms_for("פריצת דלת", "חולון") == ("תודה שפנית למנעולן השרון! קיבלנו את פנייתך "
                                                       "(פריצת דלת, חולון) ונחזור אליך בהקדם.")


def test_a_booked_visit_goes_into_the_sms_placed_or_added():
    locksmith = load_profiles().businesses[LOCKSMITH]
    assert locksmith.sms_for("פריצת דלת", "חולון", "מחר, יום רביעי, בעשר בבוקר").endswith(
        "ונחזור אליך בהקדם. הביקור נקבע למחר, יום רביעי, בעשר בבוקר.")
    placed = parse_profiles(ONE + 'sms_text = "{business}: נתראה {visit}"\n', "b.toml").businesses[LOCKSMITH]
    assert placed.sms_for("פריצת דלת", "חולון", "מחר בעשר") == f"{placed.name}: נתראה מחר בעשר"


# Jerusalem in June is UTC+3: 05:00 UTC is Sunday 08:00, 15:00 UTC is 18:00; 2026-06-13 is a Saturday.
SUNDAY_OPEN = datetime(2026, 6, 7, 9, 0, tzinfo=timezone.utc)
SUNDAY_EVENING = datetime(2026, 6, 7, 15, 0, tzinfo=timezone.utc)
SATURDAY = datetime(2026, 6, 13, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("number, when, allowed", [
    ("+97235550101", "open_hours", (True, False, False)),
    ("+97235550101", "always", (True, True, True)),
    ("+97235550101", "never", (False, False, False)),
    ("", "open_hours", (False, False, False)),
    ("", "always", (False, False, False)),
])
def test_transfer_allowed_follows_the_number_the_rule_and_the_hours(number, when, allowed):
    profile = BusinessProfile(number=LOCKSMITH, name="A", hours=ISRAELI_WEEK, transfer_number=number,
                              transfer_when=when)
    assert tuple(profile.transfer_allowed(t) for t in (SUNDAY_OPEN, SUNDAY_EVENING, SATURDAY)) == allowed
    assert [profile.is_open(t) for t in (SUNDAY_OPEN, SUNDAY_EVENING, SATURDAY)] == [True, False, False]


def test_transfer_in_open_hours_without_an_hours_table_is_always_allowed():
    profile = BusinessProfile(number=LOCKSMITH, name="A", transfer_number="+97235550101")
    assert profile.transfer_allowed(SATURDAY) and profile.is_open(SATURDAY)


def test_opening_hours_of_a_hand_built_bad_profile_raise_naming_the_key():
    with pytest.raises(ValueError, match=r"profile \+97235550100: 'hours.mon' '9-5'"):
        BusinessProfile(number=LOCKSMITH, name="A", hours=(("mon", "9-5"),)).opening_hours()


# --- lookup by called number ------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["+97235550100", "035550100", "+972-3-555-0100", "03-555-0100",
                                      " +972 3 555 0100 ", "97235550100"])
def test_for_number_accepts_other_spellings(spelling):
    profiles = load_profiles()
    assert profiles.for_number(spelling) is profiles.businesses[LOCKSMITH]


@pytest.mark.parametrize("to", ["+97235550999", "+15550001111", "anonymous", ""])
def test_for_number_of_an_unlisted_number_is_none(to):
    assert load_profiles().for_number(to) is None


# --- JSON round trip and instructions -----------------------------------------------------------------

def test_profile_json_round_trip():
    profiles = load_profiles()
    for profile in [*profiles.businesses.values(), profiles.default]:
        assert BusinessProfile.from_json(profile.to_json()) == profile
    full = BusinessProfile(number=LOCKSMITH, name="A", language="ar", voice="cedar", greeting="g", instructions="i",
                           services=("s",), cities=("חיפה",), silence_timeout_ms=5000, max_silence_warnings=0,
                           crm_webhook_url="https://crm.example.com/x", crm_secret_env="K", required_fields=("name",))
    assert BusinessProfile.from_json(full.to_json()) == full


def test_profile_json_round_trip_of_every_new_key():
    full = BusinessProfile(number=LOCKSMITH, name="A", timezone="Europe/London", hours=ISRAELI_WEEK,
                           closed_dates=("2026-12-24", "2026-12-25"), after_hours_greeting="g2",
                           after_hours_instructions="i2", transfer_number="+97235550101", transfer_when="always",
                           transfer_ring_timeout_s=45, transfer_caller_id="caller", transfer_fallback="voicemail",
                           keypad=(("#", "repeat"), ("0", "person")), sms_on_lead=True, sms_text="{city}",
                           recording=True, recording_retention_days=365)
    assert BusinessProfile.from_json(full.to_json()) == full
    raw = json.loads(full.to_json())
    assert raw["hours"] == dict(ISRAELI_WEEK) and raw["keypad"] == {"#": "repeat", "0": "person"}   # JSON objects
    assert raw["closed_dates"] == ["2026-12-24", "2026-12-25"]
    assert {f.name for f in fields(BusinessProfile)} == set(raw)


def test_profile_json_of_the_previous_release_takes_the_new_defaults():
    # A row stored before these keys existed (businesses.profile_json) still loads.
    old = json.loads(BusinessProfile(number=LOCKSMITH, name="A").to_json())
    old = {key: old[key] for key in ("cities", "crm_secret_env", "crm_webhook_url", "greeting", "instructions",
                                     "language", "max_silence_warnings", "name", "number", "required_fields",
                                     "services", "silence_timeout_ms", "voice")}
    profile = BusinessProfile.from_json(json.dumps(old))
    assert profile == BusinessProfile(number=LOCKSMITH, name="A")
    assert (profile.hours, profile.transfer_number, profile.keypad) == ((), "", (("0", "person"), ("9", "repeat")))


def test_profile_json_keeps_hebrew_readable_and_lists_as_arrays():
    text = load_profiles().businesses[LOCKSMITH].to_json()
    assert "מנעולן השרון" in text
    raw = json.loads(text)
    assert raw["services"] == list(LOCKSMITH_SERVICES)
    assert raw["number"] == LOCKSMITH


def test_session_instructions_mention_services_cities_and_language():
    locksmith = load_profiles().businesses[LOCKSMITH]
    text = session_instructions(locksmith)
    assert text.startswith(locksmith.instructions + "\n")
    assert "You speak for מנעולן השרון. Speak Hebrew unless the caller speaks another language." in text
    assert "Services offered: " + "; ".join(LOCKSMITH_SERVICES) + "." in text
    assert "Cities served: " + "; ".join(LOCKSMITH_CITIES) + "." in text
    assert "save_lead" not in text          # each tool adds its own sentence (server.tools)


def test_session_instructions_follow_the_profile_language():
    cleaner = load_profiles().businesses[CLEANER]
    assert "Speak English unless" in session_instructions(cleaner)


def test_session_instructions_without_services_or_cities_fall_back_to_the_default_instructions():
    text = session_instructions(BusinessProfile(number="", name="Bare"))
    assert text.splitlines()[0] == "Take a message: what the caller needs, in which city, and their name."
    assert "Services offered" not in text and "Cities served" not in text
    assert "You speak for Bare. Speak Hebrew" in text


# --- loading a file -----------------------------------------------------------------------------------

def test_load_profiles_of_a_missing_file_names_businesses_file(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(ProfileError) as info:
        load_profiles(path)
    assert info.value.problems == [f"BUSINESSES_FILE={str(path)!r} cannot be read: No such file or directory"]
    assert "BUSINESSES_FILE=" in str(info.value)


def test_load_profiles_names_problems_after_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[business]]\nnumber = "+97235550100"\n', encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profiles(path)
    assert info.value.problems == ["mine.toml: business #1 (+97235550100): 'name' is required"]


# --- the directory -------------------------------------------------------------------------------------



def business_id(store: Store, number: str) -> int:
    with store.session() as s:
        return s.scalar(select(Business.id).where(Business.number == number))


@pytest.mark.parametrize("policy", ["default", "refuse"])
@pytest.mark.parametrize("to", ["+97235550100", "035550100", "+972-3-555-0100"])
def test_directory_answers_a_listed_number_with_its_business(store, profiles, policy, to):
    directory = BusinessDirectory(profiles, store.sync_businesses(profiles), policy)
    assert directory.answering(to) == Answering(business_id(store, LOCKSMITH), profiles.businesses[LOCKSMITH])


def test_directory_tells_the_two_businesses_apart(store, profiles):
    directory = BusinessDirectory(profiles, store.sync_businesses(profiles))
    locksmith, cleaner = directory.answering(LOCKSMITH), directory.answering(CLEANER)
    assert locksmith.business_id != cleaner.business_id
    assert cleaner == Answering(business_id(store, CLEANER), profiles.businesses[CLEANER])


def test_directory_answers_an_unknown_number_with_the_default_profile(store, profiles):
    directory = BusinessDirectory(profiles, store.sync_businesses(profiles), "default")
    assert directory.answering("+97235550999") == Answering(None, profiles.default)


def test_directory_refuses_an_unknown_number_under_policy_refuse(store, profiles):
    directory = BusinessDirectory(profiles, store.sync_businesses(profiles), "refuse")
    assert directory.answering("+97235550999") is None


def test_a_number_removed_from_the_file_answers_no_more(store, profiles):
    # The row stays for the old calls, marked inactive: it must not answer (and is refused under policy refuse).
    only_cleaner = Profiles({CLEANER: profiles.businesses[CLEANER]}, profiles.default, "b.toml")
    directory = BusinessDirectory(only_cleaner, store.sync_businesses(only_cleaner), "refuse")
    assert directory.answering(LOCKSMITH) is None


def test_the_directory_answers_from_memory_when_the_database_is_gone(store, profiles):
    """A database that is down or slow never changes what a caller gets: the profiles and their row
    ids are this process's own once loaded."""
    ids = store.sync_businesses(profiles)
    expected = Answering(business_id(store, LOCKSMITH), profiles.businesses[LOCKSMITH])
    store.close()
    directory = BusinessDirectory(profiles, ids)
    assert directory.answering(LOCKSMITH) == expected
