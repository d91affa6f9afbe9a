"""The issue's turn-taking metrics over the results of ``bench.harness.run_case``: one place, used
by ``scripts/bench_vad.py`` (the tables) and by the corpus tests (the targets)."""
from __future__ import annotations

import statistics
from collections import defaultdict

from bench.harness import SCRIPTED

NON_SPEECH = ("silence", "noise", "music", "hum", "echo", "speakerphone_echo", "line_noise", "babble_only",
              "silence_only")
SOFT_OR_CAFE = ("soft_caller", "cafe")
LATENCY_TARGET_P50_MS, LATENCY_TARGET_P95_MS = 750, 900


def pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def score(results) -> dict:
    """Counts, latencies and per-condition figures over a list of ``CaseResult``; ``ROWS`` names them."""
    s = defaultdict(int)
    latencies, barge_lat, hold_cost = [], [], []
    per_condition = defaultdict(lambda: defaultdict(int))
    frames = sum(r.frames for r in results)
    speech_ms = forwarded_ms = 0
    for r in results:
        c = r.case
        cond = per_condition[c.source + ":" + c.condition]
        cond["cases"] += 1
        false = r.false_triggers()
        cond["false_triggers"] += len(false)
        s[f"false_{c.condition}" if c.condition in NON_SPEECH else "false_other"] += len(false)
        if c.pauses:
            heard = bool(r.heard_in_pauses())
            key = "pause_le_700" if c.internal_pause_ms <= 700 else "pause_gt_700"
            s[key + "_cases"] += 1
            s[key + "_heard"] += heard
            cond["heard_in_pause"] += heard
        if r.talked_over():
            s["talked_over_cases"] += 1
            cond["talked_over"] += 1
        s["abandoned_replies"] += max(0, len(r.triggers_ms) - len(r.reply_starts_ms))
        for (start, end), matched, answers in zip(c.utterances, r.matched(), r.answers()):
            long_enough = end - start >= 500
            speech_ms += end - start
            s["utterances_long" if long_enough else "utterances_short"] += 1
            if c.condition in SOFT_OR_CAFE:
                s["soft_cafe_utterances"] += 1
            if not matched:
                cond["missed"] += 1
                s["missed_long" if long_enough else "missed_short"] += 1
                continue
            later = [t for t in answers if t >= end]
            if later:
                latency = later[0] - end
                latencies.append(latency)
                cond.setdefault("latencies", []).append(latency)
                hold_cost.append(later[0] - matched[-1])
                if c.condition in SOFT_OR_CAFE:
                    s["soft_cafe_answered"] += latency <= LATENCY_TARGET_P95_MS
            elif c.barge_in_onset_ms is None:
                cond["unanswered"] += 1
            if len(answers) > 1 or any(t < end for t in answers):
                cond["split"] += 1
                s["split_lossy" if c.condition == "lossy" else "split_other"] += 1
        forwarded_ms += r.forwarded_ms if c.utterances else 0
        stops = sorted(r.pauses_ms + r.barge_ins_ms)
        if c.barge_in_onset_ms is not None:
            s["barge_expected"] += 1
            caught = [t for t in stops if t >= c.barge_in_onset_ms - 100]
            if caught and r.barge_ins_ms:
                s["barge_caught"] += 1
                barge_lat.append(caught[0] - c.barge_in_onset_ms)
            else:
                cond["missed_barge_in"] += 1
            s["false_barge_in"] += len([t for t in stops if t < c.barge_in_onset_ms - 100])
        elif c.condition in NON_SPEECH:
            s["false_barge_in"] += len(r.barge_ins_ms)
            s["false_pause"] += len(r.pauses_ms)
            cond["false_barge_in"] += len(r.barge_ins_ms)
            cond["false_pause"] += len(r.pauses_ms)
        if c.backchannels:
            s["backchannels"] += 1
            cancelled = bool(r.barge_ins_ms) or SCRIPTED[1] in r.cancels
            s["backchannels_cancelled"] += cancelled
            s["backchannels_paused"] += bool(r.pauses_ms)
            cond["cancelled"] += cancelled
    return {
        **s, "latency_median_ms": statistics.median(latencies) if latencies else None,
        "latency_p95_ms": pct(latencies, 95), "latency_max_ms": max(latencies) if latencies else None,
        "latency_histogram_ms": _histogram(latencies),
        "hold_after_trigger_median_ms": statistics.median(hold_cost) if hold_cost else None,
        "barge_in_latency_median_ms": statistics.median(barge_lat) if barge_lat else None,
        "barge_in_latency_max_ms": max(barge_lat) if barge_lat else None,
        "forwarded_per_speech": round(forwarded_ms / speech_ms, 2) if speech_ms else None,
        "us_per_frame": round(sum(r.core_seconds for r in results) / max(1, frames) * 1e6, 1),
        "per_condition": {k: {kk: (round(statistics.median(vv)) if kk == "latencies" else vv) for kk, vv in v.items()}
                          for k, v in sorted(per_condition.items())},
    }


def _histogram(values: list[int], step_ms: int = 50) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in sorted(values):
        lo = v // step_ms * step_ms
        out[f"{lo}-{lo + step_ms}"] = out.get(f"{lo}-{lo + step_ms}", 0) + 1
    return out


ROWS = [
    ("missed utterances >= 0.5 s", lambda s: f"{s.get('missed_long', 0)} / {s.get('utterances_long', 0)}"),
    ("missed short utterances < 0.5 s", lambda s: f"{s.get('missed_short', 0)} / {s.get('utterances_short', 0)}"),
    ("AI heard inside a thinking pause <= 700 ms (cases)",
     lambda s: f"{s.get('pause_le_700_heard', 0)} / {s.get('pause_le_700_cases', 0)}"),
    ("AI heard inside a 900 ms pause (cases; longer than the hold)",
     lambda s: f"{s.get('pause_gt_700_heard', 0)} / {s.get('pause_gt_700_cases', 0)}"),
    ("cases where the AI was heard while the caller spoke", lambda s: s.get("talked_over_cases", 0)),
    ("end of speech -> first AI audio heard, p50 / p95 (ms)",
     lambda s: f"{s['latency_median_ms']} / {s['latency_p95_ms']}"),
    ("replies asked early and abandoned unheard", lambda s: s.get("abandoned_replies", 0)),
    ("backchannels over the AI that cancelled it", lambda s: f"{s.get('backchannels_cancelled', 0)} / {s.get('backchannels', 0)}"),
    ("backchannels that paused the AI (then resumed)", lambda s: f"{s.get('backchannels_paused', 0)} / {s.get('backchannels', 0)}"),
    ("barge-ins caught (paused, then cancelled)", lambda s: f"{s.get('barge_caught', 0)} / {s.get('barge_expected', 0)}"),
    ("onset -> AI audibly stopped, median / max (ms)",
     lambda s: f"{s['barge_in_latency_median_ms']} / {s['barge_in_latency_max_ms']}"),
    ("false barge-ins / false pauses (echo, noise, babble, silence only)",
     lambda s: f"{s.get('false_barge_in', 0)} / {s.get('false_pause', 0)}"),
    ("false triggers: echo, speakerphone echo", lambda s: s.get("false_echo", 0) + s.get("false_speakerphone_echo", 0)),
    ("false triggers: noise, music, hum", lambda s: s.get("false_noise", 0) + s.get("false_music", 0) + s.get("false_hum", 0)),
    ("false triggers: babble / street / car / hum lines", lambda s: s.get("false_line_noise", 0) + s.get("false_babble_only", 0)),
    ("false triggers: silence, silence-only sections", lambda s: s.get("false_silence", 0) + s.get("false_silence_only", 0)),
    ("extra triggers inside speech cases", lambda s: s.get("false_other", 0)),
    ("soft caller and cafe: answered within 900 ms", lambda s: f"{s.get('soft_cafe_answered', 0)} / {s.get('soft_cafe_utterances', 0)}"),
    ("utterances split at 3 % packet loss", lambda s: s.get("split_lossy", 0)),
    ("caller audio sent to the model / speech", lambda s: s["forwarded_per_speech"]),
    ("core cost (µs per 20 ms frame)", lambda s: s["us_per_frame"]),
]
