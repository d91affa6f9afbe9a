from dataclasses import fields
from pathlib import Path

from server.core.turn_config import TurnConfig

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_documents_every_setting():
    names = ["OPENAI_API_KEY", "OPENAI_REALTIME_URL", "OPENAI_REALTIME_MODEL", "OPENAI_VOICE", "TWILIO_AUTH_TOKEN",
             "PUBLIC_BASE_URL", "PORT", "LOG_LEVEL", "DATABASE_URL", "BUSINESSES_FILE", "UNKNOWN_NUMBER_POLICY",
             "UNKNOWN_NUMBER_MESSAGE", "ADMIN_TOKEN", "OUTBOX_WORKER"] + [f"TURN_{f.name.upper()}" for f in fields(TurnConfig)]
    missing = [n for n in names if f"`{n}`" not in README]
    assert missing == []


def test_readme_has_the_two_commands():
    assert "./scripts/demo" in README and "./scripts/test" in README
