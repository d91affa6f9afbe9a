"""Check a call log against the behaviour contract, from the log lines alone.

Used by ``scripts/check_call_logs.py LOGFILE [--expect KIND]`` (operators, on production logs) and
by the acceptance tests. The log is split per call by the ``call=CA…`` prefix; each call gets the
generic criteria, and ``--expect`` adds those of one acceptance call:

* ``silent``: the caller never spoke: no end of utterance that could trigger, no end-of-speech
  response, a smart hangup;
* ``normal``: an end of utterance outside the echo block, its trigger, ``response.created`` and AI
  audio after it;
* ``barge_in``: a barge-in, then exactly one end-of-speech response;
* ``quiet_echo``: no response other than the greeting and labelled silence prompts / goodbye, no
  barge-in;
* ``single_pipeline``: one audio pipeline, one ``response.created`` per turn, no duplicate
  responses;
* ``lead``: ``save_lead`` saved the lead, one follow-up response, and the smart hangup with
  ``Lead captured: True``;
* ``thinking_pause``: a reply was held and the caller resumed inside the hold: that reply was
  cancelled unheard, and the turn's real end got a reply that was heard;
* ``backchannel``: a short sound paused the AI and it resumed: no barge-in, no cancelled response;
* ``no_false_barge_in``: the AI was never paused or interrupted (a line whose echo must not pass
  for the caller).

Every call also gets two checks of the hold and the pause: a reply abandoned during its hold never
reached the caller, and every paused playout was resolved (resumed, interrupted or ended).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_CALL = re.compile(r"call=(CA[0-9A-Za-z]+) ")
_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) ")
_UNMASKED_PHONE = re.compile(r"\+\d{9,}")
LABELLED_REASONS = {"greeting", "silence_warning", "goodbye"}
EXPECTATIONS = ("silent", "normal", "barge_in", "quiet_echo", "single_pipeline", "lead", "thinking_pause",
                "backchannel", "no_false_barge_in")
_RESUMED = re.compile(r"\[HOLD\] caller resumed after a \d+ms pause - the unheard reply (\S+) is cancelled")
_PAUSED = "[BARGE-IN] caller sound for"
_PAUSE_RESOLVED = ("[BACKCHANNEL]", "⚡ [BARGE-IN]", "MARK_ACK", "[AUDIO_DRAIN]", "[CALL SUMMARY]")


@dataclass(frozen=True)
class Result:
    call: str
    name: str
    passed: bool
    detail: str


def split_calls(text: str) -> dict[str, list[str]]:
    calls: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = _CALL.search(line)
        if m:
            calls.setdefault(m.group(1), []).append(line)
    return calls


def _ms(line: str) -> int | None:
    m = _TIME.match(line)
    if not m:
        return None
    h, mi, s, ms = (int(g) for g in m.groups())
    return ((h * 60 + mi) * 60 + s) * 1000 + ms


def _reasons(lines: list[str]) -> list[str]:
    return [line.split("reason=", 1)[1].strip() for line in lines if "response.create sent (manual trigger) reason=" in line]


def _generic(call: str, lines: list[str]) -> list[Result]:
    out: list[Result] = []

    def add(name: str, passed: bool, detail: str) -> None:
        out.append(Result(call, name, passed, detail))

    pipelines = sum("[PIPELINE] LIVE AUDIO PIPELINE ACTIVE" in ln for ln in lines)
    add("single audio pipeline", pipelines == 1, f"{pipelines} pipeline line(s)")
    dup = sum("conversation_already_has_active_response" in ln for ln in lines)
    add("no conversation_already_has_active_response", dup == 0, f"{dup}")
    in_flight, worst = 0, 0
    for ln in lines:
        if "response.create sent (manual trigger)" in ln:
            in_flight += 1
            worst = max(worst, in_flight)
        elif "[REALTIME] response.done:" in ln or "[WATCHDOG] no response.created" in ln:
            in_flight = max(0, in_flight - 1)
    add("never two response.create in flight", worst <= 1, f"max in flight {worst}")
    blocked_triggers = 0
    for i, ln in enumerate(lines):
        if re.search(r"END OF UTTERANCE: [\d.]+s, echo_blocked=True", ln):
            follow = lines[i + 1] if i + 1 < len(lines) else ""
            blocked_triggers += "NOT triggering" not in follow
    add("echo-blocked utterances never trigger", blocked_triggers == 0, f"{blocked_triggers} triggered")
    triggers = sum("SPEECH→SILENCE: Triggering AI response" in ln for ln in lines)
    eos_sends = _reasons(lines).count("end_of_speech")
    add("one response.create per triggered utterance", eos_sends <= triggers,
        f"{triggers} triggers, {eos_sends} end-of-speech creates")
    status = [t for t in (_ms(ln) for ln in lines if "[PIPELINE STATUS]" in ln) if t is not None]
    gaps = [b - a for a, b in zip(status, status[1:])]
    add("[PIPELINE STATUS] every 2-3 s, never per frame", all(g >= 2000 for g in gaps),
        f"{len(status)} lines, min gap {min(gaps) if gaps else '-'}ms")
    summary = [ln for ln in lines if "[CALL SUMMARY]" in ln]
    add("call ended with no green thread left", bool(summary) and "green_threads_alive=0" in summary[-1],
        summary[-1].split("[CALL SUMMARY]", 1)[1].strip() if summary else "no call summary (call still running?)")
    phones = sum(bool(_UNMASKED_PHONE.search(ln)) for ln in lines)
    add("caller numbers masked", phones == 0, f"{phones} unmasked")
    abandoned = [m.group(1) for m in (_RESUMED.search(ln) for ln in lines) if m]
    heard = [rid for rid in abandoned if any(f"first audio of {rid}" in ln for ln in lines)]
    add("a reply abandoned in its hold is never heard", not heard, f"{len(abandoned)} abandoned, heard: {heard}")
    unresolved = 0
    for i, ln in enumerate(lines):
        if _PAUSED in ln:
            unresolved += not any(any(mark in later for mark in _PAUSE_RESOLVED) for later in lines[i + 1:])
    add("every paused playout resumed or ended", unresolved == 0, f"{unresolved} unresolved")
    hangups = sum("[SMART HANGUP] Reason:" in ln for ln in lines)
    leads = sum("[SMART HANGUP] Lead captured:" in ln for ln in lines)
    add("smart hangup logs reason and lead", hangups == leads, f"{hangups} reasons, {leads} lead lines")
    return out


def _expected(call: str, lines: list[str], expect: str) -> list[Result]:
    reasons = _reasons(lines)
    free_eou = [ln for ln in lines if re.search(r"END OF UTTERANCE: [\d.]+s, echo_blocked=False", ln)]
    barge = [i for i, ln in enumerate(lines) if "[BARGE-IN]" in ln]
    res: list[tuple[str, bool, str]] = []
    if expect == "silent":
        res.append(("no end of utterance outside the echo block", not free_eou, f"{len(free_eou)}"))
        res.append(("no end-of-speech response", "end_of_speech" not in reasons, f"reasons {reasons}"))
        res.append(("only labelled responses", set(reasons) <= LABELLED_REASONS, f"reasons {reasons}"))
        res.append(("smart hangup", any("[SMART HANGUP] Reason:" in ln for ln in lines), ""))
    elif expect == "normal":
        res.append(("end of utterance outside the echo block", bool(free_eou), f"{len(free_eou)}"))
        first = next((i for i, ln in enumerate(lines) if "response.create queued (end of speech)" in ln), None)
        after = lines[first:] if first is not None else []
        res.append(("trigger queued", first is not None, ""))
        res.append(("response.created after the trigger", any("response.created" in ln for ln in after), ""))
        res.append(("AI audio after the trigger", any("TTS_START" in ln for ln in after), ""))
    elif expect == "barge_in":
        res.append(("barge-in detected", bool(barge), f"{len(barge)}"))
        after = _reasons(lines[barge[0]:]) if barge else []
        res.append(("exactly one response after the barge-in", after.count("end_of_speech") == 1, f"reasons {after}"))
    elif expect == "quiet_echo":
        res.append(("only labelled responses", set(reasons) <= LABELLED_REASONS, f"reasons {reasons}"))
        res.append(("no barge-in from echo", not barge, f"{len(barge)}"))
    elif expect == "single_pipeline":
        created = sum("🔊 [REALTIME] response.created" in ln for ln in lines)
        res.append(("one response.created per response.create", created == len(reasons),
                    f"{created} created, {len(reasons)} creates"))
        turns = sum("SPEECH→SILENCE: Triggering AI response" in ln for ln in lines)
        res.append(("one response per turn", reasons.count("end_of_speech") == turns, f"{turns} turns, reasons {reasons}"))
    elif expect == "lead":
        saved = [ln for ln in lines if "[LEAD] save_lead -> saved" in ln]
        res.append(("save_lead saved the lead", bool(saved), f"{len(saved)}"))
        res.append(("one follow-up per tool answer", reasons.count("tool_result") == sum(
            "[LEAD] save_lead ->" in ln for ln in lines), f"reasons {reasons}"))
        res.append(("smart hangup with the lead", any("[SMART HANGUP] Lead captured: True" in ln for ln in lines), ""))
    elif expect == "thinking_pause":
        resumed = [i for i, ln in enumerate(lines) if _RESUMED.search(ln)]
        res.append(("the caller resumed inside a hold", bool(resumed), f"{len(resumed)}"))
        later = lines[resumed[0]:] if resumed else []
        res.append(("a reply heard after the real end of the turn",
                    any("[HOLD] releasing reply" in ln for ln in later) and any("TTS_START" in ln for ln in later), ""))
    elif expect == "backchannel":
        resumed = sum("▶ [BACKCHANNEL]" in ln for ln in lines)
        interrupted = sum("⚡ [BARGE-IN]" in ln for ln in lines)
        res.append(("a sound over the AI paused it and it resumed", resumed >= 1, f"{resumed}"))
        res.append(("no barge-in from a backchannel", interrupted == 0, f"{interrupted}"))
    elif expect == "no_false_barge_in":
        res.append(("the AI was never paused or interrupted", not barge, f"{len(barge)}"))
    else:
        raise ValueError(f"unknown expectation {expect!r}; one of {', '.join(EXPECTATIONS)}")
    return [Result(call, f"[{expect}] {name}", ok, detail) for name, ok, detail in res]


def check(text: str, expect: str | None = None) -> list[Result]:
    calls = split_calls(text)
    if not calls:
        return [Result("-", "the log contains calls", False, "no line with call=CA…")]
    tracebacks = text.count("Traceback (most recent call last)")
    results = [Result("(all)", "no exception in the log", tracebacks == 0, f"{tracebacks} tracebacks")]
    for call, lines in calls.items():
        results += _generic(call, lines)
        if expect:
            results += _expected(call, lines, expect)
    return results
