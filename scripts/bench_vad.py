#!/usr/bin/env python3
"""Turn-taking benchmark: whole simulated calls on the labelled corpora, our core vs webrtcvad and
Silero VAD driving the same rules. Prints the tables and writes bench/results/vad_benchmark.{md,json}.

    scripts/bench_vad          # installs the reference detectors into .venv first
    .venv/bin/python scripts/bench_vad.py [--only ours] [--real-speech DIR]

Two corpora: the committed espeak-ng speech (``bench/vad_corpus.py``), and real human recordings
(``bench/real_corpus.py``) read from --real-speech, $REAL_SPEECH_DIR or ../shared/real-speech;
without them that part is reported as not run. Per detector: missed utterances, AI audio heard
inside thinking pauses, end of speech -> first AI audio heard (p50/p95), backchannels that
cancelled or paused the AI, barge-ins caught and how fast the AI was audibly stopped, false
barge-ins and pauses from echo, false triggers by source, soft callers and the café answered,
utterances split by packet loss, caller audio sent to the model per second of speech, and the
core's cost per 20 ms frame.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import real_corpus  # noqa: E402
from bench.harness import FIRST_AUDIO_MS, run_case  # noqa: E402
from bench.vad_corpus import build  # noqa: E402
from server.core.call_core import CallCore  # noqa: E402
from server.core.turn_config import TurnConfig  # noqa: E402

NON_SPEECH = ("silence", "noise", "music", "hum", "echo", "speakerphone_echo", "line_noise", "babble_only",
              "silence_only")
ECHO_ONLY = ("echo", "speakerphone_echo")
SOFT_OR_CAFE = ("soft_caller", "cafe")
LATENCY_TARGET_P50_MS, LATENCY_TARGET_P95_MS = 750, 900


def pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def make_factory(name: str):
    cfg = TurnConfig()
    if name == "ours":
        return lambda: CallCore(cfg)
    from bench import detectors
    cls = {"webrtcvad": detectors.WebRtcVad, "silero": detectors.SileroVad}[name]
    return lambda: CallCore(cfg, voice_decider=cls(), echo_detection=False)


def score(results) -> dict:
    """The issue's metrics over a list of ``CaseResult`` (see the module docstring)."""
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
            if c.condition in SOFT_OR_CAFE:
                s["soft_cafe_utterances"] += 1
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
        elif c.condition in ECHO_ONLY:
            s["false_barge_in"] += len(r.barge_ins_ms)
            s["false_pause"] += len(r.pauses_ms)
            cond["false_barge_in"] += len(r.barge_ins_ms)
            cond["false_pause"] += len(r.pauses_ms)
        if c.backchannels:
            s["backchannels"] += 1
            cancelled = bool(r.barge_ins_ms) or "resp_ai" in r.cancels
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
    ("false barge-ins / false pauses (echo only, incl. speakerphone)",
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


def run(name: str, cases, label: str) -> dict:
    factory = make_factory(name)
    t1 = time.perf_counter()
    results = []
    for i, case in enumerate(cases, 1):
        results.append(run_case(case, factory()))
        if i % 20 == 0 or i == len(cases):
            print(f"  {label} / {name}: {i}/{len(cases)} cases ({time.perf_counter() - t1:.1f} s)", flush=True)
    return score(results)


def table(scores: dict) -> str:
    lines = ["| metric | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    lines += [f"| {label} | " + " | ".join(str(fn(s)) for s in scores.values()) + " |" for label, fn in ROWS]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("ours", "webrtcvad", "silero"), action="append")
    parser.add_argument("--real-speech", default=None, metavar="DIR",
                        help="directory of the real recordings (default: $REAL_SPEECH_DIR, else ../shared/real-speech)")
    parser.add_argument("--out", default=None,
                        help="file stem for .md/.json (default bench/results/vad_benchmark; with --only, "
                             "nothing is written unless --out is given, so a partial run never replaces the table)")
    args = parser.parse_args()
    if args.out is None and not args.only:
        args.out = str(ROOT / "bench" / "results" / "vad_benchmark")
    names = args.only or ["ours", "webrtcvad", "silero"]
    t0 = time.perf_counter()
    corpora = {"espeak": build()}
    directory = real_corpus.real_speech_dir(args.real_speech)
    if directory is None:
        print("real speech: not run (no recordings at --real-speech, $REAL_SPEECH_DIR or ../shared/real-speech)")
    else:
        corpora["real"] = real_corpus.build(directory)
    for label, cases in corpora.items():
        print(f"{label} corpus: {len(cases)} cases, {sum(c.duration_ms for c in cases) / 1000:.0f} s of audio",
              flush=True)
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    scores: dict[str, dict] = {label: {} for label in corpora}
    for name in names:
        try:
            make_factory(name)()
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        for label, cases in corpora.items():
            scores[label][name] = run(name, cases, label)
    cfg = TurnConfig()
    sections = []
    for label in ("real", "espeak"):
        if label not in corpora:
            sections.append("## Real speech\n\nNot run: the recordings were not found.\n")
            continue
        cases = corpora[label]
        title = ("Real speech (../shared/real-speech, labelled by bench/speech_labeller.py)" if label == "real"
                 else "Committed espeak-ng speech (bench/vad_corpus.py)")
        sections.append(f"## {title}\n\n{len(cases)} cases, {sum(c.duration_ms for c in cases) / 1000:.0f} s of audio, "
                        f"conditions: {', '.join(sorted({c.condition for c in cases}))}.\n\n{table(scores[label])}\n")
        print(f"\n{title}\n{table(scores[label])}")
    md = (f"# Turn-taking benchmark\n\nGenerated by `scripts/bench_vad.py`. Every case is a whole simulated call on "
          f"fake time (`bench/harness.py`): the caller's audio through the phone-line model (`sim/line_model.py`), "
          f"a model that answers {FIRST_AUDIO_MS} ms after each `response.create`, a playout that can be paused. All "
          f"detectors drive the same rules: speech confirm {cfg.speech_confirm_ms} ms, end of utterance after "
          f"{cfg.eou_silence_ms} ms of silence, reply held until {cfg.reply_hold_ms} ms of caller silence, "
          f"minimum utterance {cfg.min_utterance_ms} ms, echo window {cfg.echo_window_ms} ms, pause after "
          f"{cfg.barge_in_min_ms} ms of caller sound over the AI, barge-in at {cfg.barge_in_confirm_ms} ms, resume "
          f"after {cfg.backchannel_resume_ms} ms of quiet. *ours* adds the echo detector (played-reference envelope "
          f"model) and its own energy VAD; webrtcvad (mode 3) and Silero (ONNX, threshold 0.5) replace the voiced "
          f"decision and count every voiced frame over the AI as the caller.\n\n" + "\n".join(sections)
          + "\nPer condition and the latency histogram: `vad_benchmark.json`.\n")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text(md, encoding="utf-8")
        Path(args.out + ".json").write_text(json.dumps(scores, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
