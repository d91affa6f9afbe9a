#!/usr/bin/env python3
"""Write the labelled turn-taking corpus to files, for listening or for other tools.

    .venv/bin/python scripts/make_vad_corpus.py [--out bench/corpus]

Each case becomes ``<name>.caller.ulaw`` (what the line brings in before echo), plus for echo
cases ``<name>.ai.ulaw`` (what the server plays); ``labels.json`` holds the ground truth (utterance
spans, barge-in onsets, echo delay and level, internal pauses). Everything is 8 kHz µ-law,
playable with ``sox -t raw -r 8000 -e mu-law -c 1 FILE -d``. Generated in about a second from
the committed clips; the files are not committed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vad_corpus import build  # noqa: E402
from server.core import ulaw  # noqa: E402


def _ulaw(pcm: np.ndarray) -> bytes:
    return ulaw.encode(np.clip(np.round(pcm), -32768, 32767).astype(np.int16))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "corpus"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    labels = []
    for case in build():
        stem = case.name.replace("/", "__")
        (out / f"{stem}.caller.ulaw").write_bytes(_ulaw(case.caller))
        if case.reference is not None:
            (out / f"{stem}.ai.ulaw").write_bytes(_ulaw(case.reference))
        labels.append({"name": case.name, "file": stem, "condition": case.condition, "duration_ms": case.duration_ms,
                       "utterances_ms": case.utterances, "barge_in_onset_ms": case.barge_in_onset_ms,
                       "internal_pause_ms": case.internal_pause_ms,
                       "ai_starts_at_ms": case.reference_start_ms if case.reference is not None else None,
                       "echo_delay_ms": case.echo_delay_ms if case.reference is not None else None,
                       "echo_gain_db": case.echo_gain_db if case.reference is not None else None})
    (out / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(labels)} cases written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
