"""The core speaks in codes with fields; the operators' lines live in one vocabulary."""
import ast
import re
from pathlib import Path

from server.core.events import note
from server.core.log_lines import LINES

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "reference" / "call-behaviour.md"


NOTING = sorted((ROOT / "server" / "core").glob("*.py")) + sorted((ROOT / "server" / "tools").glob("*.py"))
"""The modules that speak in notes: the core's parts and the tools."""


def _note_calls():
    for path in NOTING:
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "note":
                yield n


def _codes_used() -> set[str]:
    return {n.args[1].value for n in _note_calls() if isinstance(n.args[1], ast.Constant)}


def test_every_code_has_a_line_and_every_line_is_used():
    used = _codes_used()
    assert used == set(LINES), (used - set(LINES), set(LINES) - used)


def test_the_core_builds_no_log_text_itself():
    for n in _note_calls():
        assert isinstance(n.args[1], ast.Constant) and len(n.args) == 2, ast.unparse(n)


def test_a_note_renders_its_line_from_its_fields():
    n = note("INFO", "utterance_end", seconds=1.04, blocked=False)
    assert n.text == "🎤 END OF UTTERANCE: 1.0s, echo_blocked=False"
    assert n.get("seconds") == 1.04 and n.code == "utterance_end"


def test_the_contract_markers_are_in_the_vocabulary():
    """Every line of the contract's log vocabulary that the core emits keeps its fixed leading text:
    the contract line and one template agree up to the first variable part of either."""
    if not CONTRACT.exists():
        return                       # the shared reference is not beside this checkout
    block = CONTRACT.read_text(encoding="utf-8").split("## Log vocabulary", 1)[1].split("```")[1]
    heads = [line.split("<", 1)[0].rstrip() for line in block.strip().splitlines()]
    fixed = [t.split("{", 1)[0] for t in LINES.values()]
    for head in heads:
        if head.startswith("[PIPELINE] LIVE AUDIO PIPELINE"):
            continue                 # the shell's own line (tests/test_e2e_call.py)
        assert any(f and (head.startswith(f) or f.startswith(head)) for f in fixed), head
