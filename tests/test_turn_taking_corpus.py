"""The issue's turn-taking targets on the labelled corpus, with our core (deterministic: audio time
and a fake clock; ~1.5 s). Speed is measured by scripts/bench_vad.py, not asserted here."""
import statistics

import pytest

from bench.harness import run_case
from bench.vad_corpus import build
from server.core.call_core import CallCore
from server.core.turn_config import TurnConfig


@pytest.fixture(scope="module")
def results():
    return [run_case(case, CallCore(TurnConfig())) for case in build()]


def test_corpus_is_deterministic():
    a, b = build(), build()
    assert [c.name for c in a] == [c.name for c in b]
    assert all((x.caller == y.caller).all() for x, y in zip(a, b))
    assert {c.condition for c in a} >= {"speech", "speech_in_noise", "pause_150", "pause_250", "pause_400",
                                        "backchannel", "silence", "noise", "music", "hum", "echo", "speech_over_echo"}


def test_no_false_trigger_from_echo_noise_music_hum_or_silence(results):
    false = {r.case.name: r.false_triggers() for r in results if r.false_triggers()}
    assert false == {}


def test_no_missed_utterance_and_no_split_for_pauses_up_to_250ms(results):
    for r in results:
        for (start, end), matched in zip(r.case.utterances, r.matched()):
            assert matched, f"{r.case.name}: utterance {start}-{end} ms missed"
            if r.case.internal_pause_ms is None or r.case.internal_pause_ms <= 250:
                assert len(matched) == 1, f"{r.case.name}: split into {len(matched)}"


def test_end_of_utterance_delay(results):
    delays = [m[0] - end for r in results for (_, end), m in zip(r.case.utterances, r.matched()) if m]
    assert statistics.median(delays) <= 350
    assert sorted(delays)[int(0.95 * (len(delays) - 1))] <= 450


def test_barge_in_within_250ms_and_never_from_echo(results):
    for r in results:
        if r.case.condition == "echo":
            assert r.barge_ins_ms == [], r.case.name
        if r.case.barge_in_onset_ms is not None:
            assert r.barge_ins_ms, f"{r.case.name}: no barge-in"
            assert 0 <= r.barge_ins_ms[0] - r.case.barge_in_onset_ms <= 250, r.case.name
            assert len(r.barge_ins_ms) == 1
