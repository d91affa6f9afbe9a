#!/usr/bin/env python3
"""The call core's cost per caller frame on one fixed input: 60 s of a caller on a handset line
(real Hebrew speech from ../shared/real-speech when present, the espeak clips otherwise), talking
every other 6 s while the AI's greeting plays and echoes. Prints the median of 5 runs and writes
bench/results/core_frame_cost.json.

    .venv/bin/python scripts/bench_core_frame.py [--tree DIR]

``--tree`` times the core of another checkout (e.g. an older commit in a git worktree) on the same
frames, so a before/after comparison runs on one machine in one sitting.
"""
from __future__ import annotations

import argparse
import base64
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import real_corpus  # noqa: E402
from sim import audio as sim_audio  # noqa: E402
from sim import line_model  # noqa: E402

SECONDS = 60


def frames() -> tuple[list[bytes], list[bytes], str]:
    directory = real_corpus.real_speech_dir()
    if directory is not None:
        src = next(s for s in real_corpus.load_sources(directory) if s.stem == "he_shmuelof_exo12")
        caller, what = np.array(src.pcm[: SECONDS * 8000]), "real speech (he_shmuelof_exo12)"
    else:
        clips = [sim_audio.clip(n) for n in ("caller_service", "caller_city", "caller_name", "caller_when")]
        pcm = np.concatenate([line_model.ulaw_decode(c.audio).astype(float) for c in clips])
        caller, what = np.resize(pcm, SECONDS * 8000), "espeak clips"
    ai = line_model.ulaw_decode(sim_audio.clip("ai_greeting").audio).astype(float)
    phone = line_model.PhoneLine(line_model.line("handset"), speech_level_dbfs=line_model.active_level_dbfs(caller))
    inbound, played = [], []
    for k in range(len(caller) // 160):
        j = k % 600
        p = ai[160 * j:160 * j + 160] if j < len(ai) // 160 else np.zeros(160)
        talking = (k // 300) % 2 == 1
        inbound.append(phone.process(caller[160 * k:160 * k + 160] * talking, p))
        played.append(line_model.ulaw_encode(p))
    return inbound, played, what


def time_core(tree: Path, inbound: list[bytes], played: list[bytes]) -> list[float]:
    sys.path.insert(0, str(tree))
    for name in [m for m in sys.modules if m == "server" or m.startswith("server.")]:
        del sys.modules[name]
    core_mod = importlib.import_module("server.core.call_core")
    events = importlib.import_module("server.core.events")
    config = importlib.import_module("server.core.turn_config")
    with_b64 = "payload_b64" in events.CallerFrame.__dataclass_fields__
    runs = []
    for _ in range(5):
        core, spent = core_mod.CallCore(config.TurnConfig()), 0.0
        for k, (frame, ref) in enumerate(zip(inbound, played)):
            now_ms = (k + 1) * 20
            core.handle(events.AssistantFramePlayed("item", now_ms, ref))
            # older trees also carried the frame's base64 text (``payload_b64``)
            fields = (frame, base64.b64encode(frame).decode()) if with_b64 else (frame,)
            t0 = time.perf_counter()
            core.handle(events.CallerFrame(*fields, now_ms, now_ms))
            spent += time.perf_counter() - t0
        runs.append(spent / len(inbound) * 1e6)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(ROOT), help="checkout whose server/core is timed (default: this one)")
    args = parser.parse_args()
    inbound, played, what = frames()
    runs = time_core(Path(args.tree).resolve(), inbound, played)
    result = {"input": what, "frames": len(inbound), "tree": args.tree,
              "us_per_frame_median": round(statistics.median(runs), 1), "runs": [round(r, 1) for r in runs]}
    print(f"{result['us_per_frame_median']} µs per caller frame (median of 5, {len(inbound)} frames of {what}; "
          f"core of {args.tree})")
    if Path(args.tree).resolve() == ROOT:
        out = ROOT / "bench" / "results" / "core_frame_cost.json"
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
