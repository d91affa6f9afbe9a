"""Scenarios: one small TOML file describes both peers of a simulated call.

```toml
name = "two_turns"
description = "greeting, two caller utterances, two answers"

[realtime]
replies = ["ai_greeting", "ai_ask_city", "ai_confirm"]   # clips, in order
first_audio_delay_ms = 0

[caller]
noise_dbfs = -60                 # white noise under everything the caller sends (optional)
echo = { delay_ms = 120, gain_db = -20 }   # line echo of what the caller hears (optional)
steps = [
  { wait_ai = true },            # until the AI has spoken and gone quiet
  { say = "caller_service" },    # a clip from sim/clips
  { silence_ms = 300 },
  { wait_ai = true },
  { say = "caller_city" },
  { wait_ai = true },
  { hangup = true },
]
```
Step kinds: ``say`` (clip), ``silence_ms``, ``noise_ms`` (+ ``noise_dbfs``), ``wait_ai`` (until the
AI spoke and went quiet; optional ``quiet_ms``, default 600, and ``timeout_ms``, default 20000),
``wait_ai_audio`` (until AI audio is playing; ``timeout_ms``), ``hangup``. The caller hangs up after
the last step in any case, unless the server hangs up first. ``[realtime] speedup`` (default 8)
is how much faster than real time the model simulator sends its audio.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sim import audio as sim_audio

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
STEP_KINDS = ("say", "silence_ms", "noise_ms", "wait_ai", "wait_ai_audio", "hangup")


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    kind: str
    clip: str | None = None
    duration_ms: int = 0
    noise_dbfs: float = -40.0
    quiet_ms: int = 600
    timeout_ms: int = 20000


@dataclass(frozen=True)
class Echo:
    delay_ms: int
    gain_db: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    replies: list[str]
    first_audio_delay_ms: int
    steps: list[Step]
    noise_dbfs: float | None = None
    echo: Echo | None = None
    speedup: float = 8.0
    env: dict = field(default_factory=dict, compare=False)
    """Server settings this scenario needs (e.g. a shorter TURN_SILENCE_TIMEOUT_MS)."""
    source: str = field(default="", compare=False)


def _step(raw: dict, where: str) -> Step:
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: a step needs exactly one of {', '.join(STEP_KINDS)}, got {sorted(raw)}")
    kind = kinds[0]
    if kind == "say":
        try:
            sim_audio.clip(raw["say"])
        except KeyError as exc:
            raise ScenarioError(f"{where}: {exc.args[0]}") from None
        return Step("say", clip=raw["say"])
    if kind in ("silence_ms", "noise_ms"):
        value = raw[kind]
        if not isinstance(value, int) or value < 0:
            raise ScenarioError(f"{where}: {kind} must be a non-negative integer")
        return Step(kind, duration_ms=value, noise_dbfs=float(raw.get("noise_dbfs", -40.0)))
    if kind in ("wait_ai", "wait_ai_audio"):
        return Step(kind, quiet_ms=int(raw.get("quiet_ms", 600)), timeout_ms=int(raw.get("timeout_ms", 20000)))
    return Step("hangup")


def parse(text: str, source: str = "<string>") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    realtime, caller = raw.get("realtime", {}), raw.get("caller", {})
    steps = caller.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{source}: [caller] needs a non-empty 'steps' list")
    replies = realtime.get("replies", ["ai_greeting", "ai_ask_city", "ai_confirm", "ai_goodbye"])
    for name in replies:
        try:
            sim_audio.clip(name)
        except KeyError as exc:
            raise ScenarioError(f"{source}: [realtime] replies: {exc.args[0]}") from None
    echo = caller.get("echo")
    return Scenario(
        name=str(raw.get("name", Path(source).stem)), description=str(raw.get("description", "")),
        replies=list(replies), first_audio_delay_ms=int(realtime.get("first_audio_delay_ms", 0)),
        steps=[_step(s, f"{source}: step {i + 1}") for i, s in enumerate(steps)],
        noise_dbfs=caller.get("noise_dbfs"),
        echo=Echo(int(echo["delay_ms"]), float(echo["gain_db"])) if echo else None,
        speedup=float(realtime.get("speedup", 8.0)),
        env={str(k): str(v) for k, v in raw.get("server_env", {}).items()}, source=source)


def load(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIOS_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (known: {known})")
    return parse(path.read_text(encoding="utf-8"), str(path))
