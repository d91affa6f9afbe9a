#!/usr/bin/env python3
"""What each part of "whose voice is it" brings: the noisy calls of ``bench/noisy_calls.py`` (one
part) with our core whole, and with one part switched off at a time. Prints one line per variant
and writes bench/results/vad_ablation_<part>.json.

    .venv/bin/python scripts/bench_vad_ablation.py [--part tune|held_out] [--real-speech DIR]

Variants (each turns one thing off, the rest as shipped):
  no_room_threshold  the room's level does not raise the VAD's threshold, the hold's quiet level
                     or the barge-in level (the utterance tests still see it)
  no_sound_test      every sound is the caller's (no room or caller-level test)
  no_hostage_rule    a sound that is not the caller's still keeps a held reply back
  no_echo_contrast   an echo path needs no contrast, a busy line learns no bound (as before)
  no_sound_measure   a sound over the AI counted with stray frames and its soft tail (as before)
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import call_scoring, noisy_calls, real_corpus  # noqa: E402
from bench.harness import run_case  # noqa: E402
from server.core import barge_in, call_core, caller_turn, caller_voice, echo_detector  # noqa: E402
from server.core.energy_vad import VadState  # noqa: E402
from server.core.turn_config import TurnConfig  # noqa: E402


@contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _never_contrast(self, slot):
    import numpy as np
    return np.full(self.max_lag + 1, 100.0)


VARIANTS = {
    "shipped": [],
    "no_room_threshold": [(caller_voice.CallerVoice, "room_loud_rms", lambda self, floor: 0.0)],
    "no_sound_test": [(caller_voice.CallerVoice, "is_callers", lambda self, *a, **k: True)],
    "no_hostage_rule": [(caller_turn.CallerTurn, "quiet",        # as it was: any sound keeps the reply back
                         lambda self, holding: self.vad.state is VadState.SILENCE)],
    "no_echo_contrast": [(echo_detector.EchoDetector, "_contrast_db", _never_contrast)],
    "no_sound_measure": [(barge_in, "PEAK_RANGE_DB", 1e9), (barge_in, "GAP_FRAMES", 10**9)],
}


def run(cases, variant: str) -> dict:
    patches = VARIANTS[variant]
    stack = [patched(*p) for p in patches]
    for p in stack:
        p.__enter__()
    try:
        if variant == "no_room_threshold":
            # the tests of a sound still see the room: give them its level back
            def is_callers(self, sound_db, floor, within_turn=False):
                with patched(caller_voice.CallerVoice, "room_loud_rms", _room_loud):
                    return _is_callers(self, sound_db, floor, within_turn)
            with patched(caller_voice.CallerVoice, "is_callers", is_callers):
                results = [run_case(c, call_core.CallCore(TurnConfig())) for c in cases]
        else:
            results = [run_case(c, call_core.CallCore(TurnConfig())) for c in cases]
    finally:
        for p in reversed(stack):
            p.__exit__(None, None, None)
    return call_scoring.score_calls(results)


_room_loud = caller_voice.CallerVoice.room_loud_rms
_is_callers = caller_voice.CallerVoice.is_callers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="tune", choices=tuple(noisy_calls.PARTS))
    parser.add_argument("--real-speech", default=None, metavar="DIR")
    args = parser.parse_args()
    directory = real_corpus.real_speech_dir(args.real_speech)
    if directory is None:
        print("not run: the real recordings were not found")
        return 0
    cases = noisy_calls.build(directory, args.part)
    out = {}
    for variant in VARIANTS:
        s = run(cases, variant)
        c, b = s["cafe"], s["backchannels"]
        noise = c["noise_requests"] + s["street_car"]["noise_requests"] + s["alone"]["noise_requests"]
        echo = sum(s[g]["false_echo_paths"] for g in ("cafe", "street_car", "alone", "backchannels"))
        out[variant] = {"cafe_passed": c["passed"], "cafe_calls": c["calls"], "answered_once": c["answered_once"],
                        "utterances": c["utterances"], "latency_p95_ms": c["latency_p95_ms"],
                        "latency_max_ms": c["latency_max_ms"], "noise_requests": noise, "false_echo_paths": echo,
                        "street_car_passed": s["street_car"]["passed"], "backchannels_passed": b["passed"],
                        "backchannels": b["cases"]}
        o = out[variant]
        print(f"{variant:18s} café calls {o['cafe_passed']}/{o['cafe_calls']}, utterances {o['answered_once']}/"
              f"{o['utterances']}, latency p95/max {o['latency_p95_ms']}/{o['latency_max_ms']} ms, requests for the "
              f"noise {noise}, false echo paths {echo}, street/car {o['street_car_passed']}/24, backchannels "
              f"{o['backchannels_passed']}/{o['backchannels']}", flush=True)
    path = ROOT / "bench" / "results" / f"vad_ablation_{args.part}.json"
    path.write_text(json.dumps({"part": args.part, "variants": out}, indent=1) + "\n", encoding="utf-8")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
