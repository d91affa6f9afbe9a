#!/usr/bin/env python3
"""Regenerate the README's table of TURN_* settings from server/core/turn_config.py."""
from __future__ import annotations

import ast
import inspect
import re
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.core.turn_config import TurnConfig  # noqa: E402

START, END = "<!-- turn-config:start -->", "<!-- turn-config:end -->"


def table() -> str:
    body = ast.parse(inspect.getsource(TurnConfig)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `TURN_{f.name.upper()}` | {f.default} | {docs.get(f.name, '')} |" for f in fields(TurnConfig)]
    return "\n".join(rows)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table()}\n{END}", text, flags=re.S)
    if START not in text:
        print("error: README.md has no turn-config markers", file=sys.stderr)
        return 1
    readme.write_text(new, encoding="utf-8")
    print("README.md turn-config table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
