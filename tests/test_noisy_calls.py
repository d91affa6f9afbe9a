"""Whole calls in cafés, crowds, streets and cars, and backchannels over the reply
(``bench.noisy_calls``, scored by ``bench.call_scoring``): the verdicts on constructed results
always, the corpus and our core's figures when ../shared/real-speech is there ("not run"
otherwise). The full table, with webrtcvad and Silero, is scripts/bench_vad's."""
import numpy as np
import pytest

from bench import call_scoring, noisy_calls, real_corpus
from bench.call_scoring import backchannel_verdict, call_verdict, rate, score_calls, wilson
from bench.harness import SCRIPTED, CaseResult, run_case
from bench.vad_corpus import Case
from server.core.call_core import CallCore
from server.core.turn_config import TurnConfig


def test_wilson_intervals_match_known_values():
    assert wilson(0, 36) == (0.0, pytest.approx(0.0964, abs=1e-4))
    assert wilson(36, 36) == (pytest.approx(0.9036, abs=1e-4), 1.0)
    assert wilson(28, 36) == (pytest.approx(0.6191, abs=1e-4), pytest.approx(0.8828, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)
    assert rate(28, 36) == "28 / 36 (78 %, 62-88)" and rate(0, 0) == "-"


def _call(**fields) -> CaseResult:
    case = Case("cafe_call/no_echo/snr15/voices/x/s1.0", "cafe_call", np.zeros(8), utterances=[(1000, 2000), (6000, 7000)],
                line="cafe")
    return CaseResult(case, **fields)


def test_a_call_passes_with_one_heard_answer_per_utterance_and_nothing_for_the_noise():
    assert call_verdict(_call(triggers_ms=[2300, 7300], reply_starts_ms=[2760, 7740]))["passed"]
    twice = call_verdict(_call(triggers_ms=[2300, 3500, 7300], reply_starts_ms=[2760, 4000, 7740]))
    assert not twice["passed"] and twice["answered_once"] == [False, True]
    early = call_verdict(_call(triggers_ms=[1500, 7300], reply_starts_ms=[1900, 7740]))   # talked into the question
    assert early["answered_once"] == [False, True]
    noise = call_verdict(_call(triggers_ms=[2300, 7300, 15000], reply_starts_ms=[2760, 7740, 15500]))
    assert not noise["passed"] and noise["noise_requests"] == 1 and noise["noise_replies"] == 1
    assert call_verdict(_call(triggers_ms=[2300, 7300], reply_starts_ms=[2760, 7740], prompt_starts_ms=[16000]))["passed"]
    echo = call_verdict(_call(triggers_ms=[2300, 7300], reply_starts_ms=[2760, 7740], echo_paths=[(500, 260, -6.0)]))
    assert echo["false_echo_path"]                       # a path on a line that has no echo


def test_a_backchannel_passes_when_the_reply_goes_on_unanswered():
    case = Case("backchannel_reply/handset/x/+0dB@900ms/s1.0", "backchannel_reply", np.zeros(8), reference=np.zeros(8),
                backchannels=[(2000, 2340)], line="handset")
    assert backchannel_verdict(CaseResult(case, pauses_ms=[2120], resumes_ms=[2540], reference_ms=7000,
                                          reference_played_ms=7000))["passed"]
    cut = backchannel_verdict(CaseResult(case, barge_ins_ms=[2460], cancels=[SCRIPTED[1]], triggers_ms=[3000],
                                         reference_ms=7000, reference_played_ms=1800))
    assert not cut["passed"] and cut["cancelled"] and cut["answered"] and cut["heard"] < 0.3


@pytest.fixture(scope="module")
def directory():
    found = real_corpus.real_speech_dir()
    if found is None:
        pytest.skip("real speech not found: not run")
    return found


def test_each_part_is_big_enough_for_a_rate_and_the_parts_never_share_a_caller(directory):
    tune, held = noisy_calls.build(directory, "tune"), noisy_calls.build(directory, "held_out")
    for cases in (tune, held):
        count = lambda *conds: sum(1 for c in cases if c.condition in conds)   # noqa: E731
        assert count("cafe_call") >= 30 and count("street_call", "car_call") >= 20
        assert count("backchannel_reply") >= 40 and count("noise_alone") >= 12
        cafe = [c for c in cases if c.condition == "cafe_call"]
        assert all(len(c.utterances) >= 2 for c in cafe)
        assert all(c.duration_ms - c.utterances[-1][1] >= noisy_calls.AFTER_MS for c in cafe)   # the café goes on
        assert {n.split("/")[2] for n in (c.name for c in cafe)} == {"snr10", "snr15", "snr20"}
        assert {c.line for c in cases if c.condition == "backchannel_reply"} == set(noisy_calls.BACKCHANNEL_LINES)
        assert all(150 <= e - s <= 400 for c in cases if c.condition == "backchannel_reply" for s, e in c.backchannels)
    callers = {part: {real_corpus.speaker_of(c.name.split("/")[-2]) for c in cases if c.condition == "cafe_call"}
               for part, cases in (("tune", tune), ("held_out", held))}
    assert callers["tune"] and callers["held_out"] and not callers["tune"] & callers["held_out"]
    hebrew = {real_corpus.speaker_of(s.stem) for s in real_corpus.load_sources(directory)
              if s.language == "he" and not s.stem.startswith(real_corpus.NOT_A_CALLER)}
    assert hebrew <= set(noisy_calls.TUNE_SPEAKERS) | set(noisy_calls.HELD_OUT_SPEAKERS)
    again = noisy_calls.build(directory, "tune")
    assert [c.name for c in again] == [c.name for c in tune]
    assert all((a.caller == b.caller).all() for a, b in zip(again, tune))


@pytest.mark.parametrize("part", ["tune", "held_out"])
def test_our_core_in_noisy_places(directory, part):
    """What the benchmark measured (bench/results/vad_benchmark.md), held as a floor: the targets
    met stay met; the café, short of its 100 % target at 10 dB, must not fall back."""
    s = score_calls([run_case(c, CallCore(TurnConfig())) for c in noisy_calls.build(directory, part)])
    b = s["backchannels"]
    assert b["cancelled"] == 0 and b["answered"] == 0 and b["heard_95"] == b["cases"], b["failed"]
    for group in ("cafe", "street_car", "alone"):
        assert s[group]["false_echo_paths"] == 0
    assert s["alone"]["noise_requests"] == 0, s["alone"]["failed"]
    assert s["street_car"]["passed"] >= s["street_car"]["calls"] - 1, s["street_car"]["failed"]
    cafe = s["cafe"]
    assert cafe["answered_once"] >= 0.93 * cafe["utterances"], cafe["failed"]
    assert cafe["passed"] >= 0.75 * cafe["calls"], cafe["failed"]
    assert cafe["latency_p95_ms"] <= 1200 and cafe["noise_requests"] <= 4
