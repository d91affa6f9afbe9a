from dataclasses import fields
from pathlib import Path

from server.core.turn_config import TurnConfig

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_documents_every_setting():
    names = ["OPENAI_API_KEY", "OPENAI_REALTIME_URL", "OPENAI_REALTIME_MODEL", "OPENAI_VOICE", "TWILIO_AUTH_TOKEN",
             "PUBLIC_BASE_URL", "PORT", "LOG_LEVEL", "DATABASE_URL", "BUSINESSES_FILE", "UNKNOWN_NUMBER_POLICY",
             "UNKNOWN_NUMBER_MESSAGE", "ADMIN_TOKEN", "METRICS_TOKEN", "OUTBOX_WORKER"] + [f"TURN_{f.name.upper()}" for f in fields(TurnConfig)]
    missing = [n for n in names if f"`{n}`" not in README]
    assert missing == []


def test_readme_has_the_two_commands():
    assert "./scripts/demo" in README and "./scripts/test" in README


def test_the_loop_picture_matches_the_code():
    """The README's picture of one call names real events and verbs, the shell's real threads and
    the core's real interface: renaming one in the code without the picture fails here."""
    import ast
    import re

    from server.core import events
    from tests.test_architecture import CORE_INTERFACE
    section = README.split("## The pipeline: the loop of one call", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b([A-Z][a-z]+(?:[A-Z][a-z]+)+)\b", section))
    classes = {node.name for folder in ("core", "call") for path in (ROOT / "server" / folder).glob("*.py")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.ClassDef)}
    for name in named - {"OpenAI", "Twilio", "WebSocket"}:
        assert hasattr(events, name) or name in classes, \
            f"README names {name}, which is neither a fact or verb of server/core/events.py nor a class of the call"
    tree = ast.parse((ROOT / "server" / "media_ws_ai.py").read_text(encoding="utf-8"))
    spawned = [ast.unparse(elt) for node in ast.walk(tree) if isinstance(node, ast.comprehension)
               and isinstance(node.iter, ast.Tuple) for elt in node.iter.elts if isinstance(elt, ast.Attribute)]
    assert spawned == ["self.model.read", "self.model.send_audio", "self.twilio.tx_loop", "self._timer"]
    assert "One call = five green threads (RX, audio sender, Realtime reader, TX, timer)" in section
    for method in CORE_INTERFACE:
        assert f"`{method}`" in section
