"""Settings from the environment (and ``.env`` through python-dotenv), validated at start.

``Settings.from_env(environ)`` collects every problem and raises one ``SettingsError`` whose
lines name the variable, e.g. ``PORT='abc' is not an integer``. The variable names are a public
interface (README "Configuration"); turn-taking thresholds are ``TURN_<FIELD>`` (see
``server.core.turn_config``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Mapping
from urllib.parse import quote, urlsplit

from server.business.pricing import DEFAULT_TWILIO_MINUTE_USD, parse_overrides
from server.core.turn_config import TurnConfig

DEFAULT_INSTRUCTIONS = (
    "You are the phone assistant of a small business served by ProSaaS. Speak Hebrew unless the "
    "caller speaks another language. Be brief: one or two short sentences per turn. Find out which "
    "service the caller needs, in which city, and the caller's name, then confirm and say goodbye."
)
DEFAULT_GREETING = (
    "Greet the caller briefly in Hebrew, say this is the business's virtual assistant, "
    "and ask how you can help."
)
DEFAULT_SILENCE_PROMPT = (
    "The caller has been silent. Ask once, briefly and kindly in Hebrew, whether they are still on the line."
)
DEFAULT_FALLBACK_MESSAGE = "מצטערים, יש לנו תקלה זמנית. אנא נסו להתקשר שוב בעוד כמה דקות. תודה."
DEFAULT_REFUSAL_MESSAGE = "מצטערים, המספר שחייגתם אינו פעיל כרגע. תודה ולהתראות."
UNKNOWN_NUMBER_POLICIES = ("default", "refuse")
DEFAULT_GOODBYE = "Say a short, polite goodbye in Hebrew and thank the caller. Do not ask anything."
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_TWILIO_API_BASE_URL = "https://api.twilio.com"


class SettingsError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


class Secret:
    """A secret that never prints: repr/str show only whether it is set."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(<empty>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    openai_api_key: Secret
    openai_realtime_url: str
    openai_realtime_model: str
    openai_voice: str
    openai_transcription_model: str
    twilio_auth_token: Secret
    twilio_signature_validation: bool
    twilio_start_timeout_ms: int
    openai_connect_timeout_ms: int
    openai_session_renew_ms: int
    public_base_url: str | None
    port: int
    log_level: str
    instructions: str
    greeting_instructions: str
    silence_prompt_instructions: str
    goodbye_instructions: str
    fallback_message: str
    turn: TurnConfig
    database_url: str = ""
    """SQLAlchemy URL; empty: the SQLite file ``data/prosaas.sqlite3``."""
    businesses_file: str = ""
    """Business profiles (TOML); empty: ``config/businesses.toml``."""
    unknown_number_policy: str = "default"
    """``default``: numbers not listed get the default profile; ``refuse``: a polite message, then hangup."""
    refusal_message: str = DEFAULT_REFUSAL_MESSAGE
    admin_token: Secret = Secret("")
    """Bearer token of the read-only /admin listings; empty disables them."""
    metrics_token: Secret = Secret("")
    """Bearer token /metrics requires; empty leaves it open (it holds no personal data)."""
    outbox_worker: bool = True
    outbox_idle_poll_ms: int = 30000
    recordings_dir: str = ""
    """``RECORDINGS_DIR``: where businesses that record keep their calls' WAV files (default ``data/``)."""
    business_time: datetime | None = None
    """``BUSINESS_TIME``: a fixed "now" for opening-hours decisions (tests, demos); None: the real clock."""
    """How often an idle delivery worker looks for leads another instance left undelivered."""
    max_request_body_bytes: int = 64 * 1024
    """Largest HTTP request body accepted; a larger one gets 413 and its connection closed unread
    (``server.web.body_limit``). Twilio's webhooks are a few KB."""
    twilio_account_sid: str = ""
    """Account SID (``AC`` + 32 hex) for Twilio's REST API (end or redirect calls, SMS); empty: none."""
    twilio_api_base_url: str = DEFAULT_TWILIO_API_BASE_URL
    """Base URL of Twilio's REST API (the simulator's on loopback)."""
    records_journal_dir: str = ""
    """``RECORDS_JOURNAL_DIR``: the record writer's journal on this instance's disk (default
    ``data/journal``; ``off``: none, a restart then loses the writes the database had not taken)."""
    records_retry_max_ms: int = 10000
    """A write the database refused is tried again after 0.5 s, doubling up to this."""
    database_connect_timeout_ms: int = 3000
    """PostgreSQL: a connection not made by then fails (the write is tried again later)."""
    database_statement_timeout_ms: int = 5000
    """PostgreSQL: a statement running longer is cancelled by the server (the write is tried again)."""
    model_prices: dict = field(default_factory=dict)
    """``MODEL_PRICES``: prices per model beyond (or instead of) the shipped table (``server.business.pricing``)."""
    twilio_minute_usd: float = DEFAULT_TWILIO_MINUTE_USD
    """``TWILIO_MINUTE_USD``: the phone line's cost per minute, an estimate for the call's cost."""

    @property
    def prompts(self) -> dict[str, str]:
        """Instructions of the labelled responses, by trigger reason."""
        return {"greeting": self.greeting_instructions, "silence_warning": self.silence_prompt_instructions,
                "goodbye": self.goodbye_instructions}

    @property
    def realtime_ws_url(self) -> str:
        return self.realtime_ws_url_for(None)

    def realtime_ws_url_for(self, model: str | None) -> str:
        """The Realtime URL for a session of ``model`` (None: ``OPENAI_REALTIME_MODEL``)."""
        sep = "&" if "?" in self.openai_realtime_url else "?"
        return f"{self.openai_realtime_url}{sep}model={quote(model or self.openai_realtime_model, safe='')}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        problems: list[str] = []

        def get(name: str, default: str = "") -> str:
            return environ.get(name, default).strip()

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = environ.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = int(raw.strip())
            except ValueError:
                problems.append(f"{name}={raw!r} is not an integer")
                return default
            if not low <= value <= high:
                problems.append(f"{name}={value} is out of range [{low}, {high}]")
            return value

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            value = get(name, default).lower()
            if value not in allowed:
                problems.append(f"{name}={value!r} must be one of {', '.join(allowed)}")
            return value

        def switch(name: str, default: str) -> bool:
            value = get(name, default).lower()
            if value not in ("on", "off"):
                problems.append(f"{name}={value!r} must be 'on' or 'off'")
            return value != "off"

        api_key = get("OPENAI_API_KEY")
        if not api_key:
            problems.append("OPENAI_API_KEY is not set (any non-empty value works with the simulator)")
        url = get("OPENAI_REALTIME_URL", "wss://api.openai.com/v1/realtime")
        if not url.startswith(("ws://", "wss://")):
            problems.append(f"OPENAI_REALTIME_URL={url!r} must start with ws:// or wss://")
        public = get("PUBLIC_BASE_URL") or None
        if public is not None:
            if not public.startswith(("http://", "https://")):
                problems.append(f"PUBLIC_BASE_URL={public!r} must start with http:// or https://")
            public = public.rstrip("/")
        log_level = get("LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            problems.append(f"LOG_LEVEL={log_level!r} must be one of {', '.join(LOG_LEVELS)}")
        validation = switch("TWILIO_SIGNATURE_VALIDATION", "on")
        if validation and not get("TWILIO_AUTH_TOKEN"):
            problems.append("TWILIO_AUTH_TOKEN is not set: Twilio request signatures cannot be validated "
                            "(for local development without Twilio, set TWILIO_SIGNATURE_VALIDATION=off)")
        turn = TurnConfig()
        overrides = {}
        for f in fields(TurnConfig):
            name = f"TURN_{f.name.upper()}"
            if name in environ:
                overrides[f.name] = integer(name, getattr(turn, f.name), 0, 3_600_000)
        if overrides:
            turn = replace(turn, **overrides)
        if turn.min_utterance_ms > 600:
            problems.append(f"TURN_MIN_UTTERANCE_MS={turn.min_utterance_ms} must not exceed 600")
        database_url = get("DATABASE_URL")
        if database_url and "://" not in database_url:
            problems.append(f"DATABASE_URL={database_url!r} is not a database URL (e.g. sqlite:///data/prosaas.sqlite3 "
                            "or postgresql+psycopg://user:pass@host/db)")
        business_time = None
        if get("BUSINESS_TIME"):
            try:
                business_time = datetime.fromisoformat(get("BUSINESS_TIME"))
            except ValueError:
                business_time = None
            if business_time is None or business_time.tzinfo is None:
                problems.append(f"BUSINESS_TIME={get('BUSINESS_TIME')!r} is not an ISO date and time with its UTC "
                                "offset (e.g. 2026-12-01T10:00:00+02:00)")
                business_time = None
        account_sid = get("TWILIO_ACCOUNT_SID")
        if account_sid and not re.fullmatch(r"AC[0-9a-fA-F]{32}", account_sid):
            problems.append(f"TWILIO_ACCOUNT_SID={account_sid!r} is not an account SID (AC and 32 hex digits)")
        if account_sid and not get("TWILIO_AUTH_TOKEN"):
            problems.append("TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not: Twilio's REST API needs both")
        api_base = get("TWILIO_API_BASE_URL", DEFAULT_TWILIO_API_BASE_URL).rstrip("/")
        api_parts = urlsplit(api_base)
        if api_parts.scheme not in ("http", "https") or not api_parts.netloc or api_parts.path or api_parts.query:
            problems.append(f"TWILIO_API_BASE_URL={api_base!r} must be http(s)://host[:port], without a path")
        model_prices, price_problems = parse_overrides(get("MODEL_PRICES"))
        problems.extend(price_problems)
        minute_usd = DEFAULT_TWILIO_MINUTE_USD
        if get("TWILIO_MINUTE_USD"):
            try:
                minute_usd = float(get("TWILIO_MINUTE_USD"))
            except ValueError:
                minute_usd = -1.0
            if not 0 <= minute_usd <= 10:
                problems.append(f"TWILIO_MINUTE_USD={get('TWILIO_MINUTE_USD')!r} must be a price in USD per minute (0-10)")
                minute_usd = DEFAULT_TWILIO_MINUTE_USD
        settings = cls(
            openai_api_key=Secret(api_key), openai_realtime_url=url,
            openai_realtime_model=get("OPENAI_REALTIME_MODEL", "gpt-realtime"),
            openai_voice=get("OPENAI_VOICE", "marin"),
            openai_transcription_model=get("OPENAI_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe"),
            twilio_auth_token=Secret(get("TWILIO_AUTH_TOKEN")), twilio_signature_validation=validation,
            twilio_start_timeout_ms=integer("TWILIO_START_TIMEOUT_MS", 5000, 100, 60000),
            openai_connect_timeout_ms=integer("OPENAI_CONNECT_TIMEOUT_MS", 5000, 100, 60000),
            openai_session_renew_ms=integer("OPENAI_SESSION_RENEW_MS", 55 * 60 * 1000, 1000, 60 * 60 * 1000),
            public_base_url=public,
            port=integer("PORT", 5000, 1, 65535), log_level=log_level,
            instructions=get("AGENT_INSTRUCTIONS") or DEFAULT_INSTRUCTIONS,
            greeting_instructions=get("AGENT_GREETING") or DEFAULT_GREETING,
            silence_prompt_instructions=get("AGENT_SILENCE_PROMPT") or DEFAULT_SILENCE_PROMPT,
            goodbye_instructions=get("AGENT_GOODBYE") or DEFAULT_GOODBYE,
            fallback_message=get("AGENT_FALLBACK_MESSAGE") or DEFAULT_FALLBACK_MESSAGE, turn=turn,
            database_url=database_url, businesses_file=get("BUSINESSES_FILE"),
            unknown_number_policy=choice("UNKNOWN_NUMBER_POLICY", "default", UNKNOWN_NUMBER_POLICIES),
            refusal_message=get("UNKNOWN_NUMBER_MESSAGE") or DEFAULT_REFUSAL_MESSAGE,
            admin_token=Secret(get("ADMIN_TOKEN")), metrics_token=Secret(get("METRICS_TOKEN")),
            twilio_account_sid=account_sid, twilio_api_base_url=api_base,
            outbox_worker=switch("OUTBOX_WORKER", "on"),
            outbox_idle_poll_ms=integer("OUTBOX_IDLE_POLL_MS", 30000, 200, 3_600_000),
            business_time=business_time, recordings_dir=get("RECORDINGS_DIR"),
            max_request_body_bytes=integer("MAX_REQUEST_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
            records_journal_dir=get("RECORDS_JOURNAL_DIR"),
            records_retry_max_ms=integer("RECORDS_RETRY_MAX_MS", 10000, 100, 600_000),
            database_connect_timeout_ms=integer("DATABASE_CONNECT_TIMEOUT_MS", 3000, 500, 60_000),
            database_statement_timeout_ms=integer("DATABASE_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000),
            model_prices=model_prices, twilio_minute_usd=minute_usd)
        if problems:
            raise SettingsError(problems)
        return settings
