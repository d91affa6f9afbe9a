"""Business profiles: the repo's TOML file, validation that reports every problem at once, the lookup of
a called number in any spelling, and the directory that answers a number from the database."""
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from server.business.directory import Answering, BusinessDirectory
from server.business.profiles import (DEFAULT_FILE, BusinessProfile, ProfileError, Profiles, load_profiles,
                                      parse_profiles, session_instructions)
from server.storage.db import Store
from server.storage.models import Business
from tests.store_helpers import profiles, store  # noqa: F401 - shared fixtures

LOCKSMITH = "+97235550100"
CLEANER = "+97235550200"
LOCKSMITH_SERVICES = ("התקנת מנעול חכם", "פריצת דלת", "החלפת צילינדר", "שכפול מפתחות", "תיקון דלת")
LOCKSMITH_CITIES = ("תל אביב-יפו", "רמת גן", "גבעתיים", "חולון", "בת ים", "הרצליה", "רעננה", "כפר סבא", "נתניה",
                    "פתח תקווה")
KNOWN_KEYS = ("cities, crm_secret_env, crm_webhook_url, greeting, instructions, language, max_silence_warnings, "
              "name, number, required_fields, services, silence_timeout_ms, voice")
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
    ('colour = "red"\n' + ONE,
     "b.toml: unknown top-level key 'colour' (expected [default] and [[business]])"),
    ('[business]\nnumber = "+97235550100"\nname = "A"\n',
     "b.toml: 'business' must be an array of tables ([[business]])"),
    ('[default]\nname = "D"\nlanguage = "xx"\n',
     "b.toml: [default]: 'language' 'xx' must be one of he, en, ar, ru"),
], ids=["unknown-key", "missing-name", "blank-name", "missing-number", "number-no-digits", "number-too-short",
        "duplicate-number", "bad-language", "bad-required-field", "services-not-a-list", "blank-city",
        "silence-too-low", "silence-too-high", "silence-float", "warnings-too-many", "crm-url-scheme",
        "unknown-top-level-key", "business-not-an-array", "bad-default"])
def test_one_problem_is_reported_naming_file_entry_and_key(text, problem):
    assert problems_of(text) == [problem]


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


def test_profile_json_keeps_hebrew_readable_and_lists_as_arrays():
    text = load_profiles().businesses[LOCKSMITH].to_json()
    assert "מנעולן השרון" in text
    raw = json.loads(text)
    assert raw["services"] == list(LOCKSMITH_SERVICES)
    assert raw["number"] == LOCKSMITH


def test_session_instructions_mention_services_cities_tool_and_language():
    locksmith = load_profiles().businesses[LOCKSMITH]
    text = session_instructions(locksmith)
    assert text.startswith(locksmith.instructions + "\n")
    assert "You speak for מנעולן השרון. Speak Hebrew unless the caller speaks another language." in text
    assert "Services offered: " + "; ".join(LOCKSMITH_SERVICES) + "." in text
    assert "Cities served: " + "; ".join(LOCKSMITH_CITIES) + "." in text
    assert "call the save_lead tool" in text and "If save_lead answers 'incomplete'" in text


def test_session_instructions_follow_the_profile_language_and_tool_name():
    cleaner = load_profiles().businesses[CLEANER]
    text = session_instructions(cleaner, tool_name="record_lead")
    assert "Speak English unless" in text
    assert "call the record_lead tool" in text and "save_lead" not in text


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
    directory = BusinessDirectory(store, profiles, policy)
    assert directory.answering(to) == Answering(business_id(store, LOCKSMITH), profiles.businesses[LOCKSMITH])


def test_directory_tells_the_two_businesses_apart(store, profiles):
    directory = BusinessDirectory(store, profiles)
    locksmith, cleaner = directory.answering(LOCKSMITH), directory.answering(CLEANER)
    assert locksmith.business_id != cleaner.business_id
    assert cleaner == Answering(business_id(store, CLEANER), profiles.businesses[CLEANER])


def test_directory_answers_an_unknown_number_with_the_default_profile(store, profiles):
    directory = BusinessDirectory(store, profiles, "default")
    assert directory.answering("+97235550999") == Answering(None, profiles.default)


def test_directory_refuses_an_unknown_number_under_policy_refuse(store, profiles):
    directory = BusinessDirectory(store, profiles, "refuse")
    assert directory.answering("+97235550999") is None


def test_a_number_removed_from_the_file_answers_no_more(store, profiles):
    # The row stays for the old calls, marked inactive: it must not answer (and is refused under policy refuse).
    only_cleaner = Profiles({CLEANER: profiles.businesses[CLEANER]}, profiles.default, "b.toml")
    store.sync_businesses(only_cleaner)
    directory = BusinessDirectory(store, only_cleaner, "refuse")
    assert directory.answering(LOCKSMITH) is None
