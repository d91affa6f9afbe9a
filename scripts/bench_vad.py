#!/usr/bin/env python3
"""Turn-taking benchmark: whole simulated calls on the labelled corpora, our core vs webrtcvad and
Silero VAD driving the same rules. Prints the tables and writes bench/results/vad_benchmark.{md,json}.

    scripts/bench_vad          # installs the reference detectors into .venv first
    .venv/bin/python scripts/bench_vad.py [--only ours] [--real-speech DIR]

Three corpora: the committed espeak-ng speech (``bench/vad_corpus.py``), real human recordings
(``bench/real_corpus.py``) and whole calls in cafés, crowds, streets and cars with backchannels
over the AI's replies, built from the same recordings (``bench/noisy_calls.py``: a part tuned on
and a part held out, with disjoint callers and seeds; rates with 95 % intervals,
``bench/call_scoring.py``). The recordings are read from --real-speech, $REAL_SPEECH_DIR or
../shared/real-speech; without them those parts are reported as not run. Per detector: missed utterances, AI audio heard
inside thinking pauses, end of speech -> first AI audio heard (p50/p95), backchannels that
cancelled or paused the AI, barge-ins caught and how fast the AI was audibly stopped, false
barge-ins and pauses from echo, false triggers by source, soft callers and the café answered,
utterances split by packet loss, caller audio sent to the model per second of speech, and the
core's cost per 20 ms frame.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import call_scoring, noisy_calls, real_corpus  # noqa: E402
from bench.harness import FIRST_AUDIO_MS, run_case  # noqa: E402
from bench.scoring import ROWS, score  # noqa: E402
from bench.vad_corpus import build  # noqa: E402
from server.core.call_core import CallCore  # noqa: E402
from server.core.turn_config import TurnConfig  # noqa: E402

def make_factory(name: str, cfg: TurnConfig):
    if name == "ours":
        return lambda: CallCore(cfg)
    from bench import detectors
    cls = {"webrtcvad": detectors.WebRtcVad, "silero": detectors.SileroVad}[name]
    return lambda: CallCore(cfg, voice_decider=cls(), echo_detection=False)


def run(name: str, cases, label: str, cfg: TurnConfig) -> dict:
    factory = make_factory(name, cfg)
    t1 = time.perf_counter()
    results = []
    for i, case in enumerate(cases, 1):
        results.append(run_case(case, factory()))
        if i % 20 == 0 or i == len(cases):
            print(f"  {label} / {name}: {i}/{len(cases)} cases ({time.perf_counter() - t1:.1f} s)", flush=True)
    return call_scoring.score_calls(results) if label in NOISY_PARTS else score(results)


NOISY_PARTS = {"noisy_tune": "tune", "noisy_held_out": "held_out"}
TITLES = {
    "noisy_tune": "Real calls in cafés, crowds, streets and cars, backchannels over the reply: the part tuned on",
    "noisy_held_out": "The same, held out: other callers, other random draws, never looked at while tuning",
    "real": "Real speech (../shared/real-speech, labelled by sim/speech_labeller.py)",
    "espeak": "Committed espeak-ng speech (bench/vad_corpus.py)",
}


def noisy_table(scores: dict) -> str:
    rows = {name: dict(call_scoring.rows(s)) for name, s in scores.items()}
    labels = list(next(iter(rows.values())))
    lines = ["| metric | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    lines += [f"| {label} | " + " | ".join(rows[name].get(label, "-") for name in scores) + " |" for label in labels]
    return "\n".join(lines)


def targets_table(parts: dict[str, dict], real: dict | None, espeak: dict | None) -> str:
    """The issue's targets for *ours*, one column per part of the noisy calls."""
    def check(ok: bool) -> str:
        return "met" if ok else "**missed**"
    lines = ["| target | " + " | ".join(parts) + " |", "|---|" + "---|" * len(parts)]
    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(s) for s in parts.values()) + " |")
    row("café/crowd calls, babble 10-20 dB under the caller: every utterance answered exactly once, heard (100 %)",
        lambda s: f"{call_scoring.rate(s['cafe']['answered_once'], s['cafe']['utterances'])}; calls "
                  f"{s['cafe']['passed']}/{s['cafe']['calls']} {check(s['cafe']['passed'] == s['cafe']['calls'])}")
    row("café/crowd calls: end of speech -> first AI audio, p95 <= 1200 ms, max <= 1500 ms",
        lambda s: f"{s['cafe']['latency_p95_ms']} / {s['cafe']['latency_max_ms']} ms "
                  f"{check(s['cafe']['latency_p95_ms'] <= 1200 and s['cafe']['latency_max_ms'] <= 1500)}")
    row("babble / crowd / street / car alone (no caller speech): responses 0",
        lambda s: (lambda n: f"{n} {check(n == 0)}")(s['alone']['noise_requests'] + s['cafe']['noise_requests']
                                                     + s['street_car']['noise_requests']))
    row("backchannels <= 400 ms, all lines: replies cancelled or answered 0; >= 95 % of the reply heard",
        lambda s: f"{s['backchannels']['cancelled']} cancelled, {s['backchannels']['answered']} answered, "
                  f"{s['backchannels']['heard_95']}/{s['backchannels']['cases']} heard >= 95 % "
                  f"{check(not s['backchannels']['cancelled'] and not s['backchannels']['answered'] and s['backchannels']['heard_95'] == s['backchannels']['cases'])}")
    row("false echo paths learnt on lines without echo: 0",
        lambda s: (lambda n, d: f"{n} of {d} calls {check(n == 0)}")(
            s['cafe']['false_echo_paths'] + s['street_car']['false_echo_paths'] + s['alone']['false_echo_paths']
            + s['backchannels']['false_echo_paths'],
            s['cafe']['no_echo_calls'] + s['street_car']['no_echo_calls'] + s['alone']['no_echo_calls']
            + s['backchannels']['no_echo_cases']))
    extra = []
    for label, sc in (("real speech", real), ("espeak", espeak)):
        if sc:
            extra.append(f"{label}: latency p50 {sc['latency_median_ms']} ms (target <= 750), core cost "
                         f"{sc['us_per_frame']} µs per frame (target <= 24)")
    return "\n".join(lines) + ("\n\n" + "; ".join(extra) + "." if extra else "")


def table(scores: dict) -> str:
    lines = ["| metric | " + " | ".join(scores) + " |", "|---|" + "---|" * len(scores)]
    lines += [f"| {label} | " + " | ".join(str(fn(s)) for s in scores.values()) + " |" for label, fn in ROWS]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("ours", "webrtcvad", "silero"), action="append")
    parser.add_argument("--real-speech", default=None, metavar="DIR",
                        help="directory of the real recordings (default: $REAL_SPEECH_DIR, else ../shared/real-speech)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=MS",
                        help="override a TurnConfig field for this run, e.g. --set reply_hold_ms=0 (nothing is "
                             "written unless --out is given)")
    parser.add_argument("--out", default=None,
                        help="file stem for .md/.json (default bench/results/vad_benchmark; with --only, "
                             "nothing is written unless --out is given, so a partial run never replaces the table)")
    args = parser.parse_args()
    try:
        overrides = {k: int(v) for k, v in (item.split("=", 1) for item in args.set)}
        cfg = replace(TurnConfig(), **overrides)
    except (ValueError, TypeError) as exc:
        parser.error(f"--set takes FIELD=integer with a TurnConfig field: {exc}")
    if args.out is None and not args.only and not args.set:
        args.out = str(ROOT / "bench" / "results" / "vad_benchmark")
    names = args.only or ["ours", "webrtcvad", "silero"]
    t0 = time.perf_counter()
    corpora = {"espeak": build()}
    directory = real_corpus.real_speech_dir(args.real_speech)
    if directory is None:
        print("real speech: not run (no recordings at --real-speech, $REAL_SPEECH_DIR or ../shared/real-speech)")
    else:
        corpora["real"] = real_corpus.build(directory)
        for label, part in NOISY_PARTS.items():
            corpora[label] = noisy_calls.build(directory, part)
    for label, cases in corpora.items():
        print(f"{label} corpus: {len(cases)} cases, {sum(c.duration_ms for c in cases) / 1000:.0f} s of audio",
              flush=True)
    print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    scores: dict[str, dict] = {label: {} for label in corpora}
    for name in names:
        try:
            make_factory(name, cfg)()
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        for label, cases in corpora.items():
            scores[label][name] = run(name, cases, label, cfg)
    sections = []
    if "ours" in scores.get("noisy_tune", {}):
        parts = {"tuned on": scores["noisy_tune"]["ours"], "held out": scores["noisy_held_out"]["ours"]}
        text = targets_table(parts, scores.get("real", {}).get("ours"), scores["espeak"].get("ours"))
        sections.append(f"## The targets of turn-taking in noisy places (ours)\n\n{text}\n")
        print(f"\nTargets (ours)\n{text}")
    for label in ("noisy_tune", "noisy_held_out", "real", "espeak"):
        if label not in corpora:
            if label != "noisy_held_out":
                sections.append(f"## {TITLES[label].split(':')[0]}\n\nNot run: the recordings were not found.\n")
            continue
        cases = corpora[label]
        body = noisy_table(scores[label]) if label in NOISY_PARTS else table(scores[label])
        speakers = ""
        if label in NOISY_PARTS:
            speakers = f"Callers: {', '.join(noisy_calls.PARTS[NOISY_PARTS[label]][0])}; seeds {noisy_calls.PARTS[NOISY_PARTS[label]][1]}. "
        sections.append(f"## {TITLES[label]}\n\n{speakers}{len(cases)} cases, {sum(c.duration_ms for c in cases) / 1000:.0f} s "
                        f"of audio, conditions: {', '.join(sorted({c.condition for c in cases}))}.\n\n{body}\n")
        print(f"\n{TITLES[label]}\n{body}")
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
          + "\nPer condition, per line and SNR cell, the failed cases and the latency histogram: `vad_benchmark.json`. "
            "Rates are k / n (share, Wilson 95 % interval).\n")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".md").write_text(md, encoding="utf-8")
        Path(args.out + ".json").write_text(json.dumps(scores, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwritten to {args.out}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
