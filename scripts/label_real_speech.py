#!/usr/bin/env python3
"""Label the real speech recordings and summarise the benchmark cases built from them.

    .venv/bin/python scripts/label_real_speech.py [DIR]

DIR defaults to $REAL_SPEECH_DIR, else ../shared/real-speech (it must hold audio/*.wav or *.wav).
Per file (labelled whole, by ``sim/speech_labeller.py``): duration, speech segments, speech %,
median pause and noise floor; then the cases of ``bench/real_corpus.py`` per condition with their
seconds of audio. Without the recordings it prints "real speech not found: not run" and exits 0.
Nothing is written: the recordings' licences vary, so no audio or labels leave this process.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import real_corpus, speech_labeller  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", default=None)
    args = parser.parse_args()
    directory = real_corpus.real_speech_dir(args.directory)
    if directory is None:
        print("real speech not found: not run")
        return 0
    print(f"{directory}\n")
    print(f"{'file':34s} {'dur s':>7s} {'segs':>5s} {'speech':>7s} {'med pause':>10s} {'noise dBFS':>11s}")
    for path in real_corpus._wav_files(directory):
        try:
            with wave.open(str(path), "rb") as w:
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
                    print(f"{path.name:34s} skipped: not 8 kHz mono 16-bit")
                    continue
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        except (OSError, wave.Error, EOFError) as exc:
            print(f"{path.name:34s} unreadable: {exc}")
            continue
        lab = speech_labeller.label(pcm)
        pauses = [e - s for s, e in lab.pauses]
        share = 100.0 * lab.speech_ms / lab.duration_ms if lab.duration_ms else 0.0
        median = f"{statistics.median(pauses):.0f} ms" if pauses else "-"
        print(f"{path.name:34s} {len(pcm) / 8000:7.1f} {len(lab.segments):5d} {share:6.1f}% {median:>10s} "
              f"{lab.noise_dbfs:11.1f}")

    cases = real_corpus.build(directory)
    per = defaultdict(lambda: [0, 0])
    for case in cases:
        per[case.condition][0] += 1
        per[case.condition][1] += case.duration_ms
    print(f"\n{'condition':22s} {'cases':>6s} {'audio s':>8s}")
    for condition, (count, ms) in per.items():
        print(f"{condition:22s} {count:6d} {ms / 1000:8.1f}")
    total_ms = sum(ms for _, ms in per.values())
    print(f"{'total':22s} {len(cases):6d} {total_ms / 1000:8.1f}  ({total_ms / 60000:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
