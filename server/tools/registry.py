"""Which tools a business's calls get: every module of ``server.tools`` that exposes ``TOOL``.

``tools_for(profile)`` gives a call its tools in a stable order (the default ones first); ``check``
runs at start over every profile, so a misspelt tool name or bad options stop the server with the
other profile problems rather than surface in a call. Tests register a tool of their own with
``register`` (and ``unregister``) instead of adding a module.
"""
from __future__ import annotations

import importlib
import pkgutil

import server.tools as package
from server.tools import CallFacts, Tool, ToolDef

_extra: dict[str, ToolDef] = {}


def known() -> dict[str, ToolDef]:
    """Every tool: the package's modules, then any registered in-process."""
    found: dict[str, ToolDef] = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name == "registry":
            continue
        tool = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "TOOL", None)
        if isinstance(tool, ToolDef):
            found[tool.name] = tool
    return {**found, **_extra}


def register(tool: ToolDef) -> None:
    _extra[tool.name] = tool


def unregister(name: str) -> None:
    _extra.pop(name, None)


def _listed(profile) -> dict[str, dict]:
    return {name: profile.tool_options(name) or {} for name, _ in profile.tools}


def defs_for(profile) -> list[ToolDef]:
    """The tool definitions a call of this business gets, in their order."""
    listed = _listed(profile)
    chosen = [d for d in known().values()
              if (d.default or d.name in listed) and (d.offered is None or d.offered(profile))]
    return sorted(chosen, key=lambda d: (d.order, d.name))


def tools_for(profile, call: CallFacts | None = None) -> tuple[list[Tool], list[str]]:
    """(the call's tool objects, the sentences they add to the instructions), in order."""
    listed = _listed(profile)
    defs = defs_for(profile)
    call = call or CallFacts()
    return ([d.make(profile, listed.get(d.name, {}), call) for d in defs],
            [d.instructions for d in defs if d.instructions])


def check(profiles) -> list[str]:
    """Problems with the tools the profiles list: unknown names, bad options."""
    tools = known()
    problems: list[str] = []
    for profile in profiles:
        where = f"business {profile.number or '(default)'}"
        for name, options in _listed(profile).items():
            tool = tools.get(name)
            if tool is None:
                problems.append(f"{where}: unknown tool {name!r} (known: {', '.join(sorted(tools))})")
                continue
            problems.extend(f"{where}: tool {name}: {problem}" for problem in tool.check(options))
    return problems
