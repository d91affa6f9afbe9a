#!/usr/bin/env python3
"""Turn-taking benchmark on the labelled corpus: our core vs webrtcvad and Silero VAD driving the
same end-of-utterance rules. Prints the table and writes bench/results/vad_benchmark.{md,json}.

    scripts/bench_vad          # installs the reference detectors into .venv first
    .venv/bin/python scripts/bench_vad.py [--only ours]

Per detector: missed utterances (>= 0.5 s), short backchannels missed, false triggers by source,
utterances split by an internal pause, end-of-utterance delay (labelled end of speech -> trigger)
median and p95, barge-ins caught and their latency from the speech onset, false barge-ins from
echo, and the core's cost in µs per 20 ms frame.
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

from bench.harness import run_case  # noqa: E402
from bench.vad_corpus import build  # noqa: E402
from server.core.call_core import CallCore  # noqa: E402
from server.core.turn_config import TurnConfig  # noqa: E402

NON_SPEECH = ("silence", "noise", "music", "hum", "echo")


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
    s = defaultdict(int)
    delays, barge_lat = [], []
    per_condition = defaultdict(lambda: defaultdict(int))
    frames = sum(r.frames for r in results)
    for r in results:
        c = r.case
        cond = per_condition[c.condition]
        cond["cases"] += 1
        false = r.false_triggers()
        cond["false_triggers"] += len(false)
        if c.condition in NON_SPEECH:
            s[f"false_{c.condition}"] += len(false)
        else:
            s["false_other"] += len(false)
        for (start, end), matched in zip(c.utterances, r.matched()):
            long_enough = end - start >= 500
            if not matched:
                cond["missed"] += 1
                s["missed_long" if long_enough else "missed_short"] += 1
                continue
            delays.append(matched[0] - end)
            cond.setdefault("delays", [])
            cond["delays"].append(matched[0] - end)
            if len(matched) > 1:
                cond["split"] += 1
                if c.internal_pause_ms is not None and c.internal_pause_ms <= 250:
                    s["split_le_250"] += 1
                elif c.internal_pause_ms is not None:
                    s["split_gt_250"] += 1
                else:
                    s["split_other"] += 1
        s["utterances_long"] += sum(1 for a, b in c.utterances if b - a >= 500)
        s["utterances_short"] += sum(1 for a, b in c.utterances if b - a < 500)
        if c.barge_in_onset_ms is not None:
            s["barge_expected"] += 1
            caught = [t for t in r.barge_ins_ms if t >= c.barge_in_onset_ms - 100]
            if caught:
                s["barge_caught"] += 1
                barge_lat.append(caught[0] - c.barge_in_onset_ms)
            else:
                cond["missed_barge_in"] += 1
            early = [t for t in r.barge_ins_ms if t < c.barge_in_onset_ms - 100]
            s["false_barge_in"] += len(early)
        elif c.condition == "echo":
            s["false_barge_in"] += len(r.barge_ins_ms)
            cond["false_barge_in"] += len(r.barge_ins_ms)
    return {
        **s, "eou_delay_median_ms": statistics.median(delays) if delays else None,
        "eou_delay_p95_ms": pct(delays, 95), "barge_in_latency_median_ms": statistics.median(barge_lat) if barge_lat else None,
        "barge_in_latency_max_ms": max(barge_lat) if barge_lat else None,
        "us_per_frame": round(sum(r.core_seconds for r in results) / frames * 1e6, 1),
        "per_condition": {k: {kk: (round(statistics.median(vv)) if kk == "delays" else vv) for kk, vv in v.items()}
                          for k, v in per_condition.items()},
    }


ROWS = [
    ("missed utterances >= 0.5 s", lambda s: f"{s.get('missed_long', 0)} / {s.get('utterances_long', 0)}"),
    ("missed backchannels < 0.5 s", lambda s: f"{s.get('missed_short', 0)} / {s.get('utterances_short', 0)}"),
    ("false triggers: echo", lambda s: s.get("false_echo", 0)),
    ("false triggers: noise", lambda s: s.get("false_noise", 0)),
    ("false triggers: music", lambda s: s.get("false_music", 0)),
    ("false triggers: hum", lambda s: s.get("false_hum", 0)),
    ("false triggers: silence", lambda s: s.get("false_silence", 0)),
    ("extra triggers inside speech cases", lambda s: s.get("false_other", 0)),
    ("split by a pause <= 250 ms", lambda s: s.get("split_le_250", 0)),
    ("split by a 400 ms pause (expected)", lambda s: s.get("split_gt_250", 0)),
    ("end-of-utterance delay median (ms)", lambda s: s["eou_delay_median_ms"]),
    ("end-of-utterance delay p95 (ms)", lambda s: s["eou_delay_p95_ms"]),
    ("barge-ins caught", lambda s: f"{s.get('barge_caught', 0)} / {s.get('barge_expected', 0)}"),
    ("barge-in latency median / max (ms)", lambda s: f"{s['barge_in_latency_median_ms']} / {s['barge_in_latency_max_ms']}"),
    ("false barge-ins (echo)", lambda s: s.get("false_barge_in", 0)),
    ("core cost (µs per 20 ms frame)", lambda s: s["us_per_frame"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("ours", "webrtcvad", "silero"), action="append")
    parser.add_argument("--out", default=None,
                        help="file stem for .md/.json (default bench/results/vad_benchmark; with --only, "
                             "nothing is written unless --out is given, so a partial run never replaces the table)")
    args = parser.parse_args()
    if args.out is None and not args.only:
        args.out = str(ROOT / "bench" / "results" / "vad_benchmark")
    names = args.only or ["ours", "webrtcvad", "silero"]
    t0 = time.perf_counter()
    cases = build()
    print(f"corpus: {len(cases)} cases, {sum(c.duration_ms for c in cases) / 1000:.0f} s of audio, "
          f"built in {time.perf_counter() - t0:.2f} s", flush=True)
    scores = {}
    for name in names:
        try:
            factory = make_factory(name)
            factory()
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        t1 = time.perf_counter()
        results = []
        for i, case in enumerate(cases, 1):
            results.append(run_case(case, factory()))
            if i % 10 == 0 or i == len(cases):
                print(f"  {name}: {i}/{len(cases)} cases ({time.perf_counter() - t1:.1f} s)", flush=True)
        scores[name] = score(results)
    header = "| metric | " + " | ".join(scores) + " |"
    lines = [header, "|---|" + "---|" * len(scores)]
    lines += [f"| {label} | " + " | ".join(str(fn(s)) for s in scores.values()) + " |" for label, fn in ROWS]
    table = "\n".join(lines)
    cfg = TurnConfig()
    md = (f"# Turn-taking benchmark\n\nGenerated by `scripts/bench_vad.py` on {len(cases)} corpus cases "
          f"({sum(c.duration_ms for c in cases) / 1000:.0f} s of audio; `bench/vad_corpus.py`). All detectors drive the "
          f"same rules: speech confirm {cfg.speech_confirm_ms} ms, end of utterance after {cfg.eou_silence_ms} ms of "
          f"silence, minimum utterance {cfg.min_utterance_ms} ms, echo window {cfg.echo_window_ms} ms, barge-in after "
          f"{cfg.barge_in_min_ms} ms of sustained speech. *ours* adds the echo detector (played-reference envelope "
          f"model) and its own energy VAD; webrtcvad (mode 3) and Silero (ONNX, threshold 0.5) replace the voiced "
          f"decision and count every voiced frame over the AI as the caller.\n\n{table}\n\n"
          "Per condition (ours, then the others in the JSON file): see `vad_benchmark.json`.\n")
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text(md, encoding="utf-8")
        Path(args.out + ".json").write_text(json.dumps(scores, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
