"""Scenarios: one small TOML file describes both peers of a simulated call.

```toml
name = "two_turns"
description = "greeting, two caller utterances, two answers"

[realtime]
replies = [                      # what the model does, response by response, in order
  "ai_greeting",                 # a clip from sim/clips, spoken
  "ai_ask_city",
  { tool = "save_lead", arguments = { service = "מנעול חכם", city = "בתל אביב" } },   # a function call
  "ai_confirm",
]
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
A reply is a clip name or a function call: exactly ``tool`` (the function's name) and ``arguments``
(a table, sent as its JSON text). A function call has no audio; the next reply answers the
``response.create`` that follows the caller's ``function_call_output``.

An optional ``[expect]`` table says what the call must leave behind, judged by the verdict:
``lead = "complete" | "partial" | "none"``, ``service`` and ``city`` (the normalised values), and
``delivered = true`` (the lead reached the simulated CRM exactly once), ``latency_max_ms`` (every
utterance's answer began at most this long after the end of its speech, as the caller heard it).

Step kinds: ``say`` (clip; ``backchannel = true`` marks a short sound over the AI, not a turn: the
AI must not be interrupted by it), ``silence_ms``, ``pause_ms`` (a thinking pause: silence inside a
turn, the next ``say`` continues it; no AI audio may reach the caller inside it), ``noise_ms``
(+ ``noise_dbfs``), ``wait_ai`` (until the AI spoke and went quiet; optional ``quiet_ms``, default
600, and ``timeout_ms``, default 20000), ``wait_ai_audio`` (until AI audio is playing;
``timeout_ms``), ``press`` (one key of the keypad, ``0``-``9``, ``*`` or ``#``: ``{ press = "0" }``
sends Twilio's ``dtmf`` message on the stream and takes one 20 ms frame of silence, a key tone is
not in the audio), ``hangup``. The caller hangs up after
the last step in any case, unless the server hangs up first. ``[realtime] speedup`` (default 8)
is how much faster than real time the model simulator sends its audio.

``[caller] real_speech = true`` says real recordings instead of the clips when ``../shared/real-speech``
(or ``$REAL_SPEECH_DIR``) is there: each ``say`` the next real Hebrew utterance, each backchannel the
next real short sound (``sim.real_voices``); the scenario's clips otherwise.

Instead of ``noise_dbfs`` and ``echo`` (which it excludes), ``[caller] line`` names a telephone-line
preset of ``sim.line_model`` (``LINES``: clean, network, handset, speakerphone, soft_caller,
loud_caller, cafe, street, car, hum, babble_10, lossy, agc_pumping, speakerphone_cafe), and an optional
``[caller.line_overrides]`` table changes fields of its ``LineProfile``, ``echo`` as a sub-table
of ``EchoPath`` fields applied on top of the preset's echo:

```toml
[caller]
line = "speakerphone"
steps = [{ wait_ai = true }, { say = "caller_service" }, { wait_ai = true }, { hangup = true }]

[caller.line_overrides]
noise = "babble"
snr_db = 12
echo = { gain_db = -10, delay_ms = 200 }
```
Every frame the caller sends then goes through one ``PhoneLine``: its voice (scaled from the
active level of the scenario's ``say`` clips to ``caller_level_dbfs``), the echo of what it
played, the line's noise (babble from ``sim.audio.espeak_babble``, or from real voices with
``real_speech``), AGC, band limit, µ-law and
packet loss. Both are checked when the scenario is parsed.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sim import audio as sim_audio
from sim import line_model
from sim.twilio_wire import KEYPAD

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
STEP_KINDS = ("say", "silence_ms", "pause_ms", "noise_ms", "wait_ai", "wait_ai_audio", "press", "hangup")


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
    backchannel: bool = False
    """A ``say`` that is a short sound over the AI («כן», «אהה»): not a turn, must not interrupt."""
    digit: str = ""
    """The key a ``press`` step presses: one of ``0``-``9``, ``*``, ``#``."""


@dataclass(frozen=True)
class Echo:
    delay_ms: int
    gain_db: float


@dataclass(frozen=True)
class ToolReply:
    """A scripted function call: the model calls ``name`` with ``arguments_json`` (a JSON object)."""
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    replies: list[str | ToolReply]
    first_audio_delay_ms: int
    steps: list[Step]
    noise_dbfs: float | None = None
    echo: Echo | None = None
    speedup: float = 8.0
    line: line_model.LineProfile | None = None
    """The caller's telephone line (``[caller] line`` + ``line_overrides``); None: the legacy mix."""
    real_speech: bool = False
    """``[caller] real_speech = true``: say real recordings instead of the clips when they are present
    (``sim.real_voices``), and take the babble from real voices."""
    expect: dict = field(default_factory=dict, compare=False)
    """What the call must leave behind: lead status, service, city, delivered."""
    env: dict = field(default_factory=dict, compare=False)
    """Server settings this scenario needs (e.g. a shorter TURN_SILENCE_TIMEOUT_MS)."""
    calendar: str = ""
    """``calendar = true`` (``up``): the business books visits into a CalDAV calendar (Radicale on
    loopback); ``"slow"``: it never answers (the call's deadline ends each request); ``"down"``:
    it refuses connections. Empty: no calendar."""
    source: str = field(default="", compare=False)

    @property
    def turns(self) -> int:
        """The caller's turns: ``say`` steps that are neither backchannels nor followed by a thinking
        pause (``pause_ms``: the next ``say`` goes on the same turn)."""
        return sum(1 for i, step in enumerate(self.steps)
                   if step.kind == "say" and not step.backchannel
                   and not (i + 1 < len(self.steps) and self.steps[i + 1].kind == "pause_ms"))


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
        backchannel = raw.get("backchannel", False)
        if not isinstance(backchannel, bool):
            raise ScenarioError(f"{where}: backchannel must be true or false")
        return Step("say", clip=raw["say"], backchannel=backchannel)
    if kind in ("silence_ms", "pause_ms", "noise_ms"):
        value = raw[kind]
        if not isinstance(value, int) or value < 0:
            raise ScenarioError(f"{where}: {kind} must be a non-negative integer")
        return Step(kind, duration_ms=value, noise_dbfs=float(raw.get("noise_dbfs", -40.0)))
    if kind == "press":
        digit = raw["press"]
        if not isinstance(digit, str) or len(digit) != 1 or digit not in KEYPAD:
            raise ScenarioError(f"{where}: press must be one key of the keypad (0-9, * or #), got {digit!r}")
        extra = sorted(set(raw) - {"press"})
        if extra:
            raise ScenarioError(f"{where}: a press step takes only the key, not {extra}")
        return Step("press", digit=digit)
    if kind in ("wait_ai", "wait_ai_audio"):
        return Step(kind, quiet_ms=int(raw.get("quiet_ms", 600)), timeout_ms=int(raw.get("timeout_ms", 20000)))
    return Step("hangup")


def _reply(raw: object, where: str) -> str | ToolReply:
    if isinstance(raw, str):
        try:
            sim_audio.clip(raw)
        except KeyError as exc:
            raise ScenarioError(f"{where}: {exc.args[0]}") from None
        return raw
    if not isinstance(raw, dict) or set(raw) != {"tool", "arguments"}:
        got = sorted(raw) if isinstance(raw, dict) else repr(raw)
        raise ScenarioError(f"{where}: a reply is a clip name or a table of exactly 'tool' and 'arguments', got {got}")
    if not isinstance(raw["tool"], str) or not raw["tool"]:
        raise ScenarioError(f"{where}: 'tool' must be a non-empty string, got {raw['tool']!r}")
    if not isinstance(raw["arguments"], dict):
        raise ScenarioError(f"{where}: 'arguments' must be a table, got {raw['arguments']!r}")
    try:   # TOML dates and times have no JSON form
        arguments_json = json.dumps(raw["arguments"], ensure_ascii=False)
    except TypeError as exc:
        raise ScenarioError(f"{where}: 'arguments' must be JSON-serialisable: {exc}") from None
    return ToolReply(raw["tool"], arguments_json)


def _flag(table: dict, key: str, source: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ScenarioError(f"{source}: [caller] {key} must be true or false, got {value!r}")
    return value


def _line(caller: dict, source: str) -> line_model.LineProfile | None:
    name, overrides = caller.get("line"), caller.get("line_overrides")
    where = f"{source}: [caller]"
    if name is None:
        if overrides is not None:
            raise ScenarioError(f"{where} line_overrides needs a 'line' to override")
        return None
    if not isinstance(name, str):
        raise ScenarioError(f"{where} line must be the name of a line preset, got {name!r}")
    clashing = [k for k in ("noise_dbfs", "echo") if k in caller]
    if clashing:
        raise ScenarioError(f"{where} line replaces {' and '.join(clashing)}: set them in [caller.line_overrides] "
                            "(noise_dbfs, echo) or drop 'line'")
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ScenarioError(f"{where} line_overrides must be a table, got {overrides!r}")
    if "echo" in overrides and not isinstance(overrides["echo"], dict):
        raise ScenarioError(f"{where} line_overrides.echo must be a table of EchoPath fields, got "
                            f"{overrides['echo']!r}")
    try:
        return line_model.line(name, **overrides)
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"{where} line {name!r}: {exc}") from None


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
    if not isinstance(replies, list):
        raise ScenarioError(f"{source}: [realtime] replies must be a list")
    echo = caller.get("echo")
    expect = raw.get("expect", {})
    unknown = (sorted(set(expect) - {"lead", "service", "city", "delivered", "transfer", "latency_max_ms", "visit"})
               if isinstance(expect, dict) else ["?"])
    if unknown:
        raise ScenarioError(f"{source}: [expect] knows lead, service, city, delivered, transfer, latency_max_ms and "
                            f"visit, not {unknown}")
    if expect.get("visit", "booked") not in ("booked", "unavailable"):
        raise ScenarioError(f"{source}: [expect] visit must be booked or unavailable")
    calendar = raw.get("calendar", False)
    if calendar not in (True, False, "slow", "down"):
        raise ScenarioError(f"{source}: calendar must be true, false, \"slow\" or \"down\"")
    calendar = "up" if calendar is True else (calendar or "")
    if "visit" in expect and not calendar:
        raise ScenarioError(f"{source}: [expect] visit needs calendar = true")
    if "latency_max_ms" in expect and (not isinstance(expect["latency_max_ms"], int) or isinstance(
            expect["latency_max_ms"], bool) or expect["latency_max_ms"] <= 0):
        raise ScenarioError(f"{source}: [expect] latency_max_ms must be a positive integer (ms)")
    if expect.get("lead", "complete") not in ("complete", "partial", "none"):
        raise ScenarioError(f"{source}: [expect] lead must be complete, partial or none")
    return Scenario(
        name=str(raw.get("name", Path(source).stem)), description=str(raw.get("description", "")),
        replies=[_reply(r, f"{source}: [realtime] reply {i + 1}") for i, r in enumerate(replies)],
        first_audio_delay_ms=int(realtime.get("first_audio_delay_ms", 0)),
        steps=[_step(s, f"{source}: step {i + 1}") for i, s in enumerate(steps)],
        noise_dbfs=caller.get("noise_dbfs"),
        echo=Echo(int(echo["delay_ms"]), float(echo["gain_db"])) if echo else None,
        speedup=float(realtime.get("speedup", 8.0)), real_speech=_flag(caller, "real_speech", source),
        line=_line(caller, source), expect=dict(expect),
        env={str(k): str(v) for k, v in raw.get("server_env", {}).items()}, calendar=calendar, source=source)


def load(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIOS_DIR / f"{name_or_path}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml")))
        raise ScenarioError(f"no scenario {name_or_path!r} (known: {known})")
    return parse(path.read_text(encoding="utf-8"), str(path))
