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

Each profile also says when the business is open (``timezone``, an ``[business.hours]`` table and
``closed_dates``, read by ``server.business.hours``; no table means always open) and what the agent
does about it: an ``after_hours_greeting`` and ``after_hours_instructions`` when closed, a
``transfer_number`` the caller can be put through to (``transfer_when`` open hours, always or
never; ring timeout, caller id and fallback), ``keypad`` digits the caller can press (``0`` a
person, ``9`` repeat), an SMS to the caller when a lead is saved, call recording with its
retention, and ``tools``: the agent's tools beyond the ones every call has (a list of names, or a
table of each tool's options; ``server.tools.registry`` knows the names and checks the options).
The decisions that need the time (``is_open``, ``transfer_allowed``) take the instant as an
argument: the profile never reads a clock. Tables are stored as sorted pairs so the profile stays
frozen and hashable; ``to_json`` writes them as JSON objects.
"""
from __future__ import annotations

import json
import re
import string
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from server.business.hours import DEFAULT_EVE_HOURS, DEFAULT_TIMEZONE, ISRAEL, WEEK_ORDER, OpeningHours
from server.leads.normalise import normalise_phone

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "config" / "businesses.toml"
LANGUAGES = {"he": "Hebrew", "en": "English", "ar": "Arabic", "ru": "Russian"}
LEAD_FIELDS = ("service", "city", "name", "phone", "notes")
TRANSFER_WHEN = ("open_hours", "always", "never")
TRANSFER_CALLER_IDS = ("business", "caller")
TRANSFER_FALLBACKS = ("agent", "voicemail")
KEYPAD_DIGITS = "0123456789*#"
KEYPAD_ACTIONS = ("person", "repeat")
SMS_PLACEHOLDERS = ("business", "service", "city", "visit")
DEFAULT_KEYPAD = (("0", "person"), ("9", "repeat"))
DEFAULT_AFTER_HOURS_GREETING = (
    "Greet the caller briefly in Hebrew: say this is the virtual assistant, that the business is closed now, "
    "and that you will take their details so the business can call them back.")
DEFAULT_AFTER_HOURS_INSTRUCTIONS = (
    "The business is closed now. Speak Hebrew unless the caller speaks another language. Take the caller's "
    "details: what they need, in which city, and their name; confirm the number to call back. Promise that "
    "the business will call them back when it opens, without promising an exact time.")
VISIT_SMS = "הביקור נקבע ל{visit}."
DEFAULT_SMS_TEXT = "תודה שפנית ל{business}! קיבלנו את פנייתך ({service}, {city}) ונחזור אליך בהקדם."


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
    model: str | None = None
    """The Realtime model of this business's calls (e.g. ``gpt-realtime-mini`` for plain
    message-taking); None: the server's OPENAI_REALTIME_MODEL."""
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
    timezone: str = DEFAULT_TIMEZONE
    """IANA name of the zone the opening hours are written in."""
    hours: tuple[tuple[str, str], ...] = ()
    """(day, ranges) pairs, Sunday first, e.g. ("fri", "08:00-13:00"); ranges may be "closed".
    Empty: open around the clock. Days left out of a non-empty table are closed."""
    closed_dates: tuple[str, ...] = ()
    """Local dates the business is closed (ISO, sorted)."""
    after_hours_greeting: str = DEFAULT_AFTER_HOURS_GREETING
    after_hours_instructions: str = DEFAULT_AFTER_HOURS_INSTRUCTIONS
    transfer_number: str = ""
    """E.164 number a caller can be put through to; empty: no transfers."""
    transfer_when: str = "open_hours"
    """open_hours | always | never."""
    transfer_ring_timeout_s: int = 20
    """How long the transfer number rings before the fallback (Twilio's <Dial timeout> is in seconds)."""
    transfer_caller_id: str = "business"
    """business: the transfer shows the called number; caller: the caller's own number."""
    transfer_fallback: str = "agent"
    """What happens when nobody answers: agent (back to the assistant) | voicemail."""
    keypad: tuple[tuple[str, str], ...] = DEFAULT_KEYPAD
    """(digit, action) pairs sorted by digit; actions: person | repeat."""
    sms_on_lead: bool = False
    sms_text: str = DEFAULT_SMS_TEXT
    """The SMS sent to the caller when a lead is saved: {business}, {service} and {city} are filled in."""
    recording: bool = False
    recording_retention_days: int = 30
    tools: tuple[tuple[str, str], ...] = ()
    """(tool name, its options as JSON) pairs sorted by name: the tools offered beyond the defaults."""
    holidays: str = "israel"
    """israel: closed on Israel's holidays, short days on their eves (with an hours table); none."""
    holiday_eve_hours: str = DEFAULT_EVE_HOURS
    chol_hamoed: str = "open"
    """open (the usual hours), short (the eve hours) or closed."""
    calendar_url: str = ""
    """The CalDAV collection visits are booked into; empty: no booking (the lead only)."""
    calendar_username_env: str | None = None
    calendar_password_env: str | None = None
    """The names of the environment variables holding the calendar's credentials (never the secrets)."""
    visit_minutes: int = 60
    visit_buffer_minutes: int = 0
    booking_days_ahead: int = 14
    booking_notice_minutes: int = 120
    calendar_timeout_ms: int = 2000

    @property
    def is_default(self) -> bool:
        return not self.number

    def to_json(self) -> str:
        raw = asdict(self)
        raw["hours"], raw["keypad"] = dict(self.hours), dict(self.keypad)
        raw["tools"] = {name: json.loads(options) for name, options in self.tools}
        return json.dumps(raw, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BusinessProfile":
        """A profile stored by this release or an older one (keys it lacks take their defaults)."""
        raw = json.loads(text)
        for key in ("services", "cities", "required_fields", "closed_dates"):
            if key in raw:
                raw[key] = tuple(raw[key] or ())
        if "hours" in raw:
            hours = raw["hours"] or {}
            raw["hours"] = tuple((day, hours[day]) for day in WEEK_ORDER if day in hours)
        if "keypad" in raw:
            raw["keypad"] = tuple(sorted((raw["keypad"] or {}).items()))
        if "tools" in raw:
            raw["tools"] = tuple(sorted((name, json.dumps(options or {}, sort_keys=True, ensure_ascii=False))
                                        for name, options in (raw["tools"] or {}).items()))
        return cls(**raw)

    # --- opening hours, transfers, keypad, SMS ---------------------------------------------------

    def opening_hours(self) -> OpeningHours:
        hours, problems = OpeningHours.parse(dict(self.hours), self.timezone, list(self.closed_dates), self.holidays,
                                             self.holiday_eve_hours, self.chol_hamoed)
        if hours is None:
            raise ValueError(f"profile {self.number or '[default]'}: " + "; ".join(problems))
        return hours

    def is_open(self, now_utc: datetime) -> bool:
        return self.opening_hours().is_open(now_utc)

    def transfer_allowed(self, now_utc: datetime) -> bool:
        """Whether the caller may be put through to a person at this instant."""
        if not self.transfer_number or self.transfer_when == "never":
            return False
        return self.transfer_when == "always" or self.is_open(now_utc)

    def keypad_action(self, digit: str) -> str | None:
        return dict(self.keypad).get(digit)

    def tool_options(self, name: str) -> dict | None:
        """The options of a tool the profile lists (None: not listed)."""
        options = dict(self.tools).get(name)
        return None if options is None else json.loads(options)

    def sms_for(self, service: str, city: str, visit: str = "") -> str:
        """The caller's SMS; with a booked visit and a text that does not place it, the visit is added."""
        text = self.sms_text.format(business=self.name, service=service, city=city, visit=visit)
        if visit and "{visit}" not in self.sms_text:
            text += f" {VISIT_SMS.format(visit=visit)}"
        return text


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

_KEYS = {"number", "name", "language", "voice", "model", "greeting", "instructions", "services", "cities",
         "silence_timeout_ms", "max_silence_warnings", "crm_webhook_url", "crm_secret_env", "required_fields",
         "timezone", "hours", "closed_dates", "after_hours_greeting", "after_hours_instructions",
         "transfer_number", "transfer_when", "transfer_ring_timeout_s", "transfer_caller_id", "transfer_fallback",
         "keypad", "sms_on_lead", "sms_text", "recording", "recording_retention_days", "tools", "holidays",
         "holiday_eve_hours", "chol_hamoed", "calendar_url", "calendar_username_env", "calendar_password_env",
         "visit_minutes", "visit_buffer_minutes", "booking_days_ahead", "booking_notice_minutes", "calendar_timeout_ms"}


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

    def integer(key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append(f"{where}: {key!r} must be an integer in [{low}, {high}]")
            return default
        return value

    def choice(key: str, options: tuple[str, ...]) -> str:
        value = raw.get(key, options[0])
        if value not in options:
            problems.append(f"{where}: {key!r} {value!r} must be one of {', '.join(options)}")
            return options[0]
        return value

    def flag(key: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            problems.append(f"{where}: {key!r} must be true or false")
            return False
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
    known = dict(
        number=number, name=text("name", required=True) or "", language=language, voice=text("voice"),
        model=_model(text("model"), where, problems),
        greeting=text("greeting") or "", instructions=text("instructions") or "",
        services=strings("services"), cities=strings("cities"),
        silence_timeout_ms=integer("silence_timeout_ms", 1000, 600_000),
        max_silence_warnings=integer("max_silence_warnings", 0, 10),
        crm_webhook_url=url, crm_secret_env=text("crm_secret_env"), required_fields=required)
    hours, hour_problems = OpeningHours.parse(raw.get("hours"), raw.get("timezone", DEFAULT_TIMEZONE),
                                              raw.get("closed_dates"), raw.get("holidays", ISRAEL),
                                              raw.get("holiday_eve_hours", DEFAULT_EVE_HOURS),
                                              raw.get("chol_hamoed", "open"))
    problems.extend(f"{where}: {problem}" for problem in hour_problems)
    transfer = _transfer_number(text("transfer_number") or "", number, where, problems)
    profile = BusinessProfile(
        **known,
        timezone=hours.timezone if hours else DEFAULT_TIMEZONE,
        hours=tuple(hours.table().items()) if hours else (),
        closed_dates=tuple(sorted(d.isoformat() for d in hours.closed_dates)) if hours else (),
        after_hours_greeting=text("after_hours_greeting") or DEFAULT_AFTER_HOURS_GREETING,
        after_hours_instructions=text("after_hours_instructions") or DEFAULT_AFTER_HOURS_INSTRUCTIONS,
        transfer_number=transfer, transfer_when=choice("transfer_when", TRANSFER_WHEN),
        transfer_ring_timeout_s=integer("transfer_ring_timeout_s", 5, 60, default=20),
        transfer_caller_id=choice("transfer_caller_id", TRANSFER_CALLER_IDS),
        transfer_fallback=choice("transfer_fallback", TRANSFER_FALLBACKS),
        keypad=_keypad(raw.get("keypad"), where, problems),
        sms_on_lead=flag("sms_on_lead"), sms_text=_sms_text(text("sms_text"), where, problems),
        recording=flag("recording"),
        recording_retention_days=integer("recording_retention_days", 1, 3650, default=30),
        tools=_tools(raw.get("tools"), where, problems),
        holidays=hours.holidays if hours else ISRAEL,
        holiday_eve_hours=",".join(map(str, hours.eve_hours)) or "closed" if hours else DEFAULT_EVE_HOURS,
        chol_hamoed=hours.chol_hamoed if hours else "open",
        **_calendar(raw, where, problems, integer, text))
    return profile if len(problems) == bad else None


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _calendar(raw: dict, where: str, problems: list[str], integer, text) -> dict:
    """The booking keys: the CalDAV calendar, its credentials' variable names, the visit's rules."""
    url = text("calendar_url") or ""
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"{where}: 'calendar_url' must start with http:// or https://")
    names = {}
    for key in ("calendar_username_env", "calendar_password_env"):
        name = text(key)
        if name is not None and not _ENV_NAME.fullmatch(name):
            problems.append(f"{where}: {key!r} must name an environment variable (letters, digits, '_'), "
                            "never hold the secret itself")
        names[key] = name
    return dict(calendar_url=url, **names,
                visit_minutes=integer("visit_minutes", 10, 480, default=60),
                visit_buffer_minutes=integer("visit_buffer_minutes", 0, 240, default=0),
                booking_days_ahead=integer("booking_days_ahead", 1, 90, default=14),
                booking_notice_minutes=integer("booking_notice_minutes", 0, 10_080, default=120),
                calendar_timeout_ms=integer("calendar_timeout_ms", 200, 5000, default=2000))


def _model(raw: str | None, where: str, problems: list[str]) -> str | None:
    """A model name as the Realtime URL takes it (``gpt-realtime-mini``); one with no price in the
    table is allowed (its calls' cost is "unknown"), a malformed one is refused at start."""
    if raw is not None and not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", raw):
        problems.append(f"{where}: 'model' {raw!r} must be a model name such as gpt-realtime-mini")
        return None
    return raw


def _transfer_number(raw: str, own: str, where: str, problems: list[str]) -> str:
    if not raw:
        return ""
    number = normalise_phone(raw).value
    if number is None:
        problems.append(f"{where}: 'transfer_number' {raw!r} is not a phone number")
        return ""
    if number == own:       # the transfer would ring straight back into this line
        problems.append(f"{where}: 'transfer_number' {number} is the business's own number")
    return number


def _keypad(raw: object, where: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return DEFAULT_KEYPAD
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'keypad' must be a table of digit = action ({{ 0 = \"person\" }})")
        return DEFAULT_KEYPAD
    for digit, action in raw.items():
        if len(digit) != 1 or digit not in KEYPAD_DIGITS:
            problems.append(f"{where}: 'keypad.{digit}': not a key of the keypad (0-9, * or #)")
        elif action not in KEYPAD_ACTIONS:
            problems.append(f"{where}: 'keypad.{digit}' {action!r} must be one of {', '.join(KEYPAD_ACTIONS)}")
    return tuple(sorted((d, a) for d, a in raw.items() if isinstance(a, str)))


def _tools(raw: object, where: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """``tools = ["name", ...]`` or ``[business.tools.name]`` tables of options."""
    if raw is None:
        return ()
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        problems.append(f"{where}: 'tools' must be a list of tool names or a table of tool option tables")
        return ()
    for name in raw:
        if not name.replace("_", "a").isalnum() or not name[:1].isalpha() or not name.islower():
            problems.append(f"{where}: tool name {name!r} must be lower-case letters, digits and '_'")
    return tuple(sorted((name, json.dumps(options, sort_keys=True, ensure_ascii=False, default=str))
                        for name, options in raw.items()))


def _sms_text(raw: str | None, where: str, problems: list[str]) -> str:
    if raw is None:
        return DEFAULT_SMS_TEXT
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(raw) if name is not None]
    except ValueError as exc:
        problems.append(f"{where}: 'sms_text' is not a valid template ({exc}); write a literal brace as {{{{ or }}}}")
        return raw
    for name in names:
        if name not in SMS_PLACEHOLDERS:
            known = ", ".join(f"{{{p}}}" for p in SMS_PLACEHOLDERS)
            problems.append(f"{where}: 'sms_text' has an unknown placeholder {{{name}}} (known: {known})")
    return raw


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


def session_instructions(profile: BusinessProfile) -> str:
    """The model's instructions for one call: the business's own, and what it offers (each tool of
    the call adds its own sentence: ``server.tools``)."""
    language = LANGUAGES.get(profile.language, "Hebrew")
    parts = [profile.instructions or _BUILTIN_DEFAULT.instructions,
             f"You speak for {profile.name}. Speak {language} unless the caller speaks another language."]
    if profile.services:
        parts.append("Services offered: " + "; ".join(profile.services) + ".")
    if profile.cities:
        parts.append("Cities served: " + "; ".join(profile.cities) + ".")
    return "\n".join(parts)
