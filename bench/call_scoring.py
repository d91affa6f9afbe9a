"""Verdicts and rates for the whole calls of ``bench.noisy_calls``, with 95 % intervals.

A noisy call (``cafe_call``, ``street_call``, ``car_call``) *passes* when every utterance was
answered exactly once, heard (one reply started between the utterance's end and
``MATCH_AFTER_END_MS`` after it, none while the caller spoke), and nothing was asked of the model
for the noise (no ``response.create`` outside the utterances' windows, no reply heard there).
A ``noise_alone`` call passes with no request at all. A backchannel passes when the reply it was
said over was neither cancelled nor answered (no request), and at least ``HEARD_TARGET`` of the
reply was played.

Rates carry Wilson score intervals (95 %): with 36 calls, 36/36 reads "100 % (90-100)", which says
how much (and how little) a clean sheet proves.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict

from bench.harness import MATCH_AFTER_END_MS, SCRIPTED, CaseResult
from sim import line_model

HEARD_TARGET = 0.95
NOISY_CALLS = ("cafe_call", "street_call", "car_call")
BACKCHANNELS = ("backchannel_reply", "backchannel_synthetic")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of k successes in n trials, as fractions."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = wilson(k, n)
    return f"{k} / {n} ({100 * k / n:.0f} %, {100 * lo:.0f}-{100 * hi:.0f})"


def _windows(r: CaseResult) -> list[tuple[int, int]]:
    return [(s, e + MATCH_AFTER_END_MS) for s, e in r.case.utterances]


def _outside(times: list[int], windows: list[tuple[int, int]]) -> list[int]:
    return [t for t in times if not any(a <= t <= b for a, b in windows)]


def has_echo(r: CaseResult) -> bool:
    profile = line_model.line(r.case.line, **r.case.line_overrides)
    return profile.echo.kind != "none" or r.case.echo_gain_db > -100


def call_verdict(r: CaseResult) -> dict:
    windows = _windows(r)
    per_utterance, latencies = [], []
    for (start, end), (a, b) in zip(r.case.utterances, windows):
        starts = [t for t in r.reply_starts_ms if a <= t <= b]
        once = len(starts) == 1 and starts[0] >= end
        per_utterance.append(once)
        after = [t for t in starts if t >= end]
        if after:
            latencies.append(after[0] - end)
    noise_requests = _outside(r.triggers_ms, windows)
    noise_replies = _outside(r.reply_starts_ms, windows)
    false_echo = not has_echo(r) and any(lag is not None for _, lag, _ in r.echo_paths)
    return {"passed": all(per_utterance) and not noise_requests and not noise_replies,
            "answered_once": per_utterance, "latencies_ms": latencies,
            "noise_requests": len(noise_requests), "noise_replies": len(noise_replies),
            "requests": len(r.triggers_ms), "talked_over": bool(r.talked_over()), "false_echo_path": false_echo}


def backchannel_verdict(r: CaseResult) -> dict:
    cancelled = bool(r.barge_ins_ms) or SCRIPTED[1] in r.cancels
    heard = r.reference_played_ms / r.reference_ms if r.reference_ms else 0.0
    answered = bool(r.triggers_ms)
    return {"passed": not cancelled and not answered and heard >= HEARD_TARGET, "cancelled": cancelled,
            "answered": answered, "paused": bool(r.pauses_ms), "heard": heard,
            "false_echo_path": not has_echo(r) and any(lag is not None for _, lag, _ in r.echo_paths)}


def _pct(values: list[int], q: float):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(math.ceil(q / 100 * len(ordered))) - 1)]


def _calls(results: list[CaseResult]) -> dict:
    verdicts = [(r, call_verdict(r)) for r in results]
    lat = [x for _, v in verdicts for x in v["latencies_ms"]]
    utts = [u for _, v in verdicts for u in v["answered_once"]]
    no_echo = [v for r, v in verdicts if not has_echo(r)]
    return {
        "calls": len(results), "passed": sum(v["passed"] for _, v in verdicts),
        "utterances": len(utts), "answered_once": sum(utts),
        "latency_p50_ms": _pct(lat, 50), "latency_p95_ms": _pct(lat, 95), "latency_max_ms": max(lat, default=None),
        "noise_requests": sum(v["noise_requests"] for _, v in verdicts),
        "noise_replies": sum(v["noise_replies"] for _, v in verdicts),
        "calls_with_noise_requests": sum(1 for _, v in verdicts if v["noise_requests"] or v["noise_replies"]),
        "requests_per_utterance": round(sum(v["requests"] for _, v in verdicts) / max(1, len(utts)), 2),
        "talked_over": sum(v["talked_over"] for _, v in verdicts),
        "no_echo_calls": len(no_echo), "false_echo_paths": sum(v["false_echo_path"] for v in no_echo),
        "failed": sorted(r.case.name for r, v in verdicts if not v["passed"]),
    }


def _backchannels(results: list[CaseResult]) -> dict:
    verdicts = [(r, backchannel_verdict(r)) for r in results]
    return {
        "cases": len(results), "passed": sum(v["passed"] for _, v in verdicts),
        "real": sum(1 for r in results if r.case.condition == "backchannel_reply"),
        "cancelled": sum(v["cancelled"] for _, v in verdicts), "answered": sum(v["answered"] for _, v in verdicts),
        "paused": sum(v["paused"] for _, v in verdicts),
        "heard_95": sum(v["heard"] >= HEARD_TARGET for _, v in verdicts),
        "heard_min": round(min(v["heard"] for _, v in verdicts), 3),
        "false_echo_paths": sum(v["false_echo_path"] for _, v in verdicts),
        "no_echo_cases": sum(1 for r in results if not has_echo(r)),
        "failed": sorted(r.case.name for r, v in verdicts if not v["passed"]),
    }


GROUPS = (("cafe", ("cafe_call",), _calls), ("street_car", ("street_call", "car_call"), _calls),
          ("alone", ("noise_alone",), _calls), ("backchannels", BACKCHANNELS, _backchannels))


def score_calls(results: list[CaseResult]) -> dict:
    """Figures per group (``cafe``, ``street_car``, ``alone``, ``backchannels``) and per
    condition/line cell (``cells``), JSON-ready."""
    out: dict = {}
    for name, conditions, fn in GROUPS:
        chosen = [r for r in results if r.case.condition in conditions]
        if chosen:
            out[name] = fn(chosen)
    cells: dict = defaultdict(list)
    for r in results:
        parts = r.case.name.split("/")
        depth = {"cafe_call": 3, "noise_alone": 2}.get(r.case.condition, 2)
        cells["/".join(parts[:depth])].append(r)
    out["cells"] = {}
    for key, rs in sorted(cells.items()):
        if rs[0].case.condition in BACKCHANNELS:
            b = _backchannels(rs)
            out["cells"][key] = {"cases": b["cases"], "passed": b["passed"]}
        else:
            c = _calls(rs)
            out["cells"][key] = {"calls": c["calls"], "passed": c["passed"], "latency_p95_ms": c["latency_p95_ms"]}
    return out


def rows(s: dict) -> list[tuple[str, str]]:
    """(metric, value) lines of the table for one detector's ``score_calls``."""
    out = []
    for name, label in (("cafe", "café/crowd calls"), ("street_car", "street/car calls")):
        c = s.get(name)
        if not c:
            continue
        out += [
            (f"{label}: passed (every utterance answered once, heard; nothing asked for the noise)",
             rate(c["passed"], c["calls"])),
            (f"{label}: utterances answered exactly once, heard", rate(c["answered_once"], c["utterances"])),
            (f"{label}: end of speech -> first AI audio, p50 / p95 / max (ms)",
             f"{c['latency_p50_ms']} / {c['latency_p95_ms']} / {c['latency_max_ms']}"),
            (f"{label}: requests for the noise alone / replies heard to it",
             f"{c['noise_requests']} / {c['noise_replies']}"),
            (f"{label}: requests per utterance (1.00: none abandoned)", f"{c['requests_per_utterance']:.2f}"),
            (f"{label}: AI heard while the caller spoke (calls)", rate(c["talked_over"], c["calls"])),
            (f"{label}: false echo paths on lines without echo (calls)", rate(c["false_echo_paths"], c["no_echo_calls"])),
        ]
    a = s.get("alone")
    if a:
        out += [("babble / crowd / street / car alone: calls with no request", rate(a["passed"], a["calls"])),
                ("babble / crowd / street / car alone: requests", str(a["noise_requests"])),
                ("babble / crowd / street / car alone: false echo paths", rate(a["false_echo_paths"], a["no_echo_calls"]))]
    b = s.get("backchannels")
    if b:
        out += [
            ("backchannels passed (not cancelled, not answered, >= 95 % heard)", rate(b["passed"], b["cases"])),
            ("backchannels that cancelled the reply", rate(b["cancelled"], b["cases"])),
            ("backchannels answered (a request)", rate(b["answered"], b["cases"])),
            ("backchannels that paused the reply (then resumed)", rate(b["paused"], b["cases"])),
            ("reply heard >= 95 % / least heard", f"{rate(b['heard_95'], b['cases'])} / {100 * b['heard_min']:.0f} %"),
        ]
    return out
