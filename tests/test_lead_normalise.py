import pytest

from server.leads.normalise import canonical_text, normalise_city, normalise_phone, normalise_service


@pytest.mark.parametrize("raw", ["050-123-4567", "0501234567", "+972 50 123 4567", "972501234567",
                                 "+972-50-1234567", "050 123 4567"])
def test_israeli_mobile_numbers_become_e164(raw):
    assert normalise_phone(raw).value == "+972501234567"


def test_landline_and_foreign_numbers():
    assert normalise_phone("03-555-1234").value == "+97235551234"
    assert normalise_phone("+1 212 555 0100").value == "+12125550100"


@pytest.mark.parametrize("raw,problem", [("", "no phone number given"), ("אין לי", "no phone number given"),
                                         ("12", "wrong number of digits"), ("050-12", "wrong number of digits")])
def test_malformed_phone_numbers_say_why(raw, problem):
    result = normalise_phone(raw)
    assert not result.ok and problem in result.problem


@pytest.mark.parametrize("raw", ["תל אביב", "תל-אביב", "בתל אביב", "ת\"א", "ת״א", "תל אביב יפו", "Tel Aviv", "תל אבייב"])
def test_tel_aviv_spellings(raw):
    assert normalise_city(raw).value == "תל אביב-יפו"


@pytest.mark.parametrize("raw,official", [("פתח תקוה", "פתח תקווה"), ("בפתח תקווה", "פתח תקווה"),
                                          ("לחיפה", "חיפה"), ("קרית אתא", "קריית אתא"), ("ראשל\"צ", "ראשון לציון"),
                                          ("ירושלים", "ירושלים"), ("מנתניה", "נתניה")])
def test_common_variants(raw, official):
    assert normalise_city(raw).value == official


def test_unknown_city_is_reported_for_the_model_to_ask_again():
    result = normalise_city("עיר שלא קיימת")
    assert not result.ok and "ask the caller to repeat" in result.problem
    assert not normalise_city("").ok


def test_service_matches_the_business_services():
    services = ["התקנת מנעול חכם", "פריצת דלת", "החלפת צילינדר"]
    assert normalise_service("התקנת מנעול חכם", services).value == "התקנת מנעול חכם"
    assert normalise_service("אני צריך התקנה של מנעול חכם", services).value == "התקנת מנעול חכם"
    assert normalise_service("פריצת דלתות", services).value == "פריצת דלת"
    unknown = normalise_service("צביעת קירות", services)
    assert not unknown.ok and "פריצת דלת" in unknown.problem


def test_canonical_text_strips_niqqud_and_punctuation():
    assert canonical_text("תֵּל־אָבִיב") == "תל אביב"          # niqqud and the Hebrew maqaf
    assert canonical_text("  ת\"א, ") == "ת א"
