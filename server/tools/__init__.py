"""The agent's tools, one module each.

A tool module exposes ``TOOL``, a ``ToolDef``: its name, the sentence it adds to the model's
instructions, whether a business gets it without asking (``default``) or when (``offered``), how
its options in the profiles file are checked, and ``make``, which builds the call's tool object
(the ``Tool`` protocol of ``server.core.tool_desk``: its Realtime spec, ``call``, and for a tool
that needs I/O ``run_io`` and ``answer_io``). ``server.tools.registry`` finds the modules; a
business lists the extra tools it wants under ``tools`` in the profiles file. A new tool is a new
module here, its profile key, and a line in the README: nothing in the core or the shell changes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from server.core.tool_desk import LeadUpdated, Tool, ToolContext, ToolReply, WantsPerson

__all__ = ["CallFacts", "LeadUpdated", "Tool", "ToolBase", "ToolContext", "ToolDef", "ToolReply", "WantsPerson",
           "arguments_of", "reply_json"]


def reply_json(obj: dict) -> str:
    """A tool's answer for the model: compact JSON that keeps Hebrew readable."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def arguments_of(text: str) -> dict | None:
    """A call's arguments as the model gave them (a JSON object), or None when they are not one."""
    try:
        args = json.loads(text or "{}")
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


class ToolBase:
    """What a tool without I/O inherits: ``run_io`` and ``answer_io`` are never called for it."""
    name = ""
    spec: dict = {}

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply:
        raise NotImplementedError

    def answer_io(self, request: object, result: object, error: str | None, ctx: ToolContext) -> ToolReply:
        raise NotImplementedError(f"{self.name} asks for no I/O")

    def run_io(self, request: object) -> object:
        raise NotImplementedError(f"{self.name} asks for no I/O")


@dataclass(frozen=True)
class CallFacts:
    """What a tool may know of its call beyond the core's context (its id, who is calling)."""
    call_sid: str = ""
    caller: str = ""
    business_time: datetime | None = None
    """A fixed time of the business (``BUSINESS_TIME``: the demo and the tests); None: the clock."""


@dataclass(frozen=True)
class ToolDef:
    name: str
    make: Callable[[object, dict, object], Tool]
    """(the business's profile, the tool's options from the profiles file, the call's ``CallFacts``)
    -> the call's tool."""
    instructions: str = ""
    """The sentence the tool adds to the model's instructions when a call has it."""
    default: bool = False
    """Every business has it (unless ``offered`` says no)."""
    offered: Callable[[object], bool] | None = None
    """(profile) -> whether a business that lists it, or has it by default, gets it now."""
    check: Callable[[dict], list[str]] = field(default=lambda options: [])
    """Problems with the tool's options (an empty list when they are fine)."""
    order: int = 100
    """Where its instructions and spec go among the call's tools (lower first)."""
