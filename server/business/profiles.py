"""Business profiles: who answers a called number, and how.

Every phone number ProSaaS answers belongs to one business. Its profile (name, language, voice,
greeting, instructions, the services it offers and the cities it serves, silence settings, CRM
webhook) is read from a TOML file (``config/businesses.toml`` for the demo, ``BUSINESSES_FILE``
otherwise), stored in the database at start, and looked up by the webhook's ``To``.

``parse_profiles`` is pure and reports every problem at once, naming the file, the entry and the
key (``businesses.toml: business #2 (+97235550200): 'services' must be a list of strings``).
A ``[default]`` table answers numbers that are not listed, unless the unknown-number policy is
``refuse``; secrets never live in the file: ``crm_secret_env`` names the environment variable
that holds the business's HMAC key.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from server.leads.normalise import normalise_phone

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "config" / "businesses.toml"
LANGUAGES = {"he": "Hebrew", "en": "English", "ar": "Arabic", "ru": "Russian"}
LEAD_FIELDS = ("service", "city", "name", "phone", "notes")


class ProfileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid business profiles:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BusinessProfile:
    number: str
    """The called number in E.164 (``To``); empty for the default profile."""
    name: str
    language: str = "he"
    voice: str | None = None
    """None: the server's OPENAI_VOICE."""
    greeting: str = ""
    instructions: str = ""
    services: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    """Cities served; empty means everywhere."""
    silence_timeout_ms: int | None = None
    max_silence_warnings: int | None = None
    crm_webhook_url: str | None = None
    crm_secret_env: str | None = None
    required_fields: tuple[str, ...] = ("service", "city", "phone")

    @property
    def is_default(self) -> bool:
        return not self.number

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BusinessProfile":
        raw = json.loads(text)
        for key in ("services", "cities", "required_fields"):
            raw[key] = tuple(raw.get(key) or ())
        return cls(**raw)


@dataclass(frozen=True)
class Profiles:
    businesses: dict[str, BusinessProfile]
    default: BusinessProfile
    source: str = field(default="", compare=False)

    def for_number(self, to_number: str) -> BusinessProfile | None:
        """The profile of a called number (any spelling of it), or None when it is not listed."""
        return self.businesses.get(number_key(to_number))


def number_key(to_number: str) -> str:
    """How a called number is looked up: E.164 when it parses, else as given (trimmed)."""
    return normalise_phone(to_number).value or to_number.strip()


_BUILTIN_DEFAULT = BusinessProfile(
    number="", name="ProSaaS",
    greeting="Greet the caller briefly in Hebrew, say this is a virtual assistant, and ask how you can help.",
    instructions="Take a message: what the caller needs, in which city, and their name.")

_KEYS = {"number", "name", "language", "voice", "greeting", "instructions", "services", "cities",
         "silence_timeout_ms", "max_silence_warnings", "crm_webhook_url", "crm_secret_env", "required_fields"}


def _profile(raw: object, where: str, problems: list[str], default: bool) -> BusinessProfile | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return None
    bad = len(problems)
    for key in sorted(set(raw) - _KEYS):
        problems.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")

    def text(key: str, required: bool = False) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                problems.append(f"{where}: {key!r} is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            problems.append(f"{where}: {key!r} must be a non-empty string")
            return None
        return value.strip()

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            problems.append(f"{where}: {key!r} must be a list of non-empty strings")
            return ()
        return tuple(v.strip() for v in value)

    def integer(key: str, low: int, high: int) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append(f"{where}: {key!r} must be an integer in [{low}, {high}]")
            return None
        return value

    number = ""
    if not default:
        raw_number = text("number", required=True) or ""
        number = normalise_phone(raw_number).value or ""
        if raw_number and not number:
            problems.append(f"{where}: 'number' {raw_number!r} is not a phone number")
    language = text("language") or "he"
    if language not in LANGUAGES:
        problems.append(f"{where}: 'language' {language!r} must be one of {', '.join(LANGUAGES)}")
    required = strings("required_fields") if "required_fields" in raw else ("service", "city", "phone")
    for name in required:
        if name not in LEAD_FIELDS:
            problems.append(f"{where}: required field {name!r} must be one of {', '.join(LEAD_FIELDS)}")
    url = text("crm_webhook_url")
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"{where}: 'crm_webhook_url' must start with http:// or https://")
    profile = BusinessProfile(
        number=number, name=text("name", required=True) or "", language=language, voice=text("voice"),
        greeting=text("greeting") or "", instructions=text("instructions") or "",
        services=strings("services"), cities=strings("cities"),
        silence_timeout_ms=integer("silence_timeout_ms", 1000, 600_000),
        max_silence_warnings=integer("max_silence_warnings", 0, 10),
        crm_webhook_url=url, crm_secret_env=text("crm_secret_env"), required_fields=required)
    return profile if len(problems) == bad else None


def parse_profiles(text: str, source: str = "<string>") -> Profiles:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([f"{source}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    for key in sorted(set(raw) - {"default", "business"}):
        problems.append(f"{source}: unknown top-level key {key!r} (expected [default] and [[business]])")
    default = _BUILTIN_DEFAULT
    if "default" in raw:
        default = _profile(raw["default"], f"{source}: [default]", problems, default=True) or _BUILTIN_DEFAULT
    businesses: dict[str, BusinessProfile] = {}
    entries = raw.get("business", [])
    if not isinstance(entries, list):
        problems.append(f"{source}: 'business' must be an array of tables ([[business]])")
        entries = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, 1):
        label = entry.get("number", "?") if isinstance(entry, dict) else "?"
        number = normalise_phone(label).value if isinstance(label, str) else None
        if number is not None:             # checked even when the entry has other problems
            if number in seen:
                problems.append(f"{source}: business #{i}: number {number} is listed twice")
            seen.add(number)
        profile = _profile(entry, f"{source}: business #{i} ({label})", problems, default=False)
        if profile is not None:
            businesses[profile.number] = profile
    if problems:
        raise ProfileError(problems)
    return Profiles(businesses, default, source)


def load_profiles(path: str | Path = DEFAULT_FILE) -> Profiles:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError([f"BUSINESSES_FILE={str(path)!r} cannot be read: {exc.strerror}"]) from None
    return parse_profiles(text, path.name)


def session_instructions(profile: BusinessProfile, tool_name: str = "save_lead") -> str:
    """The model's instructions for one call: the business's own, plus what it offers and the tool."""
    language = LANGUAGES.get(profile.language, "Hebrew")
    parts = [profile.instructions or _BUILTIN_DEFAULT.instructions,
             f"You speak for {profile.name}. Speak {language} unless the caller speaks another language."]
    if profile.services:
        parts.append("Services offered: " + "; ".join(profile.services) + ".")
    if profile.cities:
        parts.append("Cities served: " + "; ".join(profile.cities) + ".")
    parts.append(f"When the caller has confirmed the service and the city, call the {tool_name} tool with "
                 "what you know (the caller's phone number is known; ask for another one only if the caller "
                 f"wants to be called back elsewhere). If {tool_name} answers 'incomplete', ask the caller for "
                 "what it lists. If it answers 'saved', follow its 'next' instruction.")
    return "\n".join(parts)
