"""Normalising what the model heard into lead fields (pure: no I/O beyond reading the gazetteer).

* Phone numbers -> E.164 with the ``phonenumbers`` library (Israel as the default region). A
  *possible* number is accepted: the library's stricter validity check rejects real mobile ranges
  its metadata does not list yet, and a caller's callback number must not be refused for that.
* Cities -> the official name from a small gazetteer of Israeli localities with common spellings
  (``il_localities.json``: hyphens, abbreviations with gershayim, כתיב מלא/חסר, English). Hebrew
  attaches prepositions to the word («בתל אביב», «לחיפה», «מנתניה»), so one leading ב/ל/מ/ו is
  tried off too. Close misspellings match by similarity.
* Services -> one of the business's own services, by words in common or similarity.

Each function returns the normalised value or ``None`` with a reason the model can act on.
"""
from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import phonenumbers

_GAZETTEER = Path(__file__).with_name("il_localities.json")
_PREFIXES = ("ב", "ל", "מ", "ו", "ה")
_SIMILAR = 0.84


@dataclass(frozen=True)
class Normalised:
    value: str | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def canonical_text(text: str) -> str:
    """Lower-case, no niqqud, geresh/gershayim/quotes and hyphens removed, spaces collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[\"'׳״`´\-–—־_.,!?()]", " ", text.lower())   # ־ is the Hebrew maqaf
    return re.sub(r"\s+", " ", text).strip()


def normalise_phone(raw: str, region: str = "IL") -> Normalised:
    if not raw or not re.search(r"\d", raw):
        return Normalised(None, "no phone number given")
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        return Normalised(None, f"not a phone number ({exc.error_type})")
    if not phonenumbers.is_possible_number(number):
        return Normalised(None, "the phone number has the wrong number of digits")
    return Normalised(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=1)
def _localities() -> dict[str, str]:
    """canonical spelling -> official name."""
    table = json.loads(_GAZETTEER.read_text(encoding="utf-8"))
    index: dict[str, str] = {}
    for official, variants in table.items():
        for name in [official, *variants]:
            index[canonical_text(name)] = official
            index[canonical_text(name).replace(" ", "")] = official
    return index


def _candidates(text: str) -> list[str]:
    words = canonical_text(text)
    out = [words, words.replace(" ", "")]
    if words[:1] in _PREFIXES and len(words) > 2:
        out += [words[1:], words[1:].replace(" ", "")]
    return out


def normalise_city(raw: str) -> Normalised:
    if not raw or not canonical_text(raw):
        return Normalised(None, "no city given")
    index = _localities()
    for candidate in _candidates(raw):
        if candidate in index:
            return Normalised(index[candidate])
    for candidate in _candidates(raw):
        close = difflib.get_close_matches(candidate, list(index), n=1, cutoff=_SIMILAR)
        if close:
            return Normalised(index[close[0]])
    return Normalised(None, f"unknown city «{raw.strip()}»: ask the caller to repeat the city name")


def normalise_service(raw: str, services: list[str]) -> Normalised:
    if not raw or not canonical_text(raw):
        return Normalised(None, "no service given")
    if not services:
        return Normalised(raw.strip())
    wanted = canonical_text(raw)
    wanted_words = {w for c in _candidates(raw) for w in c.split() if len(w) > 1}
    best, best_score = None, 0.0
    for service in services:
        have = canonical_text(service)
        overlap = len(wanted_words & set(have.split())) / max(1, len(set(have.split())))
        score = max(overlap, difflib.SequenceMatcher(None, wanted, have).ratio())
        if score > best_score:
            best, best_score = service, score
    if best is not None and best_score >= 0.6:
        return Normalised(best)
    return Normalised(None, f"«{raw.strip()}» is not one of the services: " + ", ".join(services))


def find_city_in_text(text: str, max_words: int = 3) -> str | None:
    """A city named anywhere in free speech («אני צריך מנעולן בתל אביב דחוף»), exact spellings only:
    similarity on every word run would find towns in ordinary words."""
    words = canonical_text(text).split()
    index = _localities()
    for size in range(min(max_words, len(words)), 0, -1):
        for start in range(len(words) - size + 1):
            for candidate in _candidates(" ".join(words[start:start + size])):
                if candidate in index and len(candidate) > 2:
                    return index[candidate]
    return None
