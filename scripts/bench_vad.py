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
from dataclasses import replace
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import real_corpus  # noqa: E402
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
