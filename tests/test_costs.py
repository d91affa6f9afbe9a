"""What a call costs: the model's usage read from every response.done, counted per call (the
replies abandoned unheard apart), priced by model, and a whole call's tokens equal to what the
simulated service billed."""
import json
import time
from pathlib import Path

import pytest

from server.business.pricing import PRICES, call_cost, model_usd, parse_overrides, usage_record
from server.core import realtime_protocol as rt
from server.settings import Settings, SettingsError
from tests.test_call_core import CFG, Call, ask

GA_USAGE = {"total_tokens": 1100, "input_tokens": 1000, "output_tokens": 100,
            "input_token_details": {"text_tokens": 700, "audio_tokens": 300, "image_tokens": 0, "cached_tokens": 600,
                                    "cached_tokens_details": {"text_tokens": 500, "audio_tokens": 100,
                                                              "image_tokens": 0}},
            "output_token_details": {"text_tokens": 20, "audio_tokens": 80}}


def done(rid: str, usage=GA_USAGE, status: str = "completed") -> rt.ResponseDone:
    return rt.parse_server_event(json.dumps({"type": "response.done", "response": {
        "id": rid, "status": status, "output": [], "usage": usage}}))


def test_usage_is_read_by_kind_with_the_cached_tokens_apart():
    assert done("r").usage == rt.Usage(input_text=200, input_audio=200, input_cached_text=500, input_cached_audio=100,
                                       output_text=20, output_audio=80)
    assert done("r", usage=None).usage is None
    heard = rt.parse_server_event(json.dumps({"type": "conversation.item.input_audio_transcription.completed",
                                              "item_id": "i", "content_index": 0, "transcript": "כן",
                                              "usage": {"type": "duration", "seconds": 1.4}}))
    assert (heard.seconds, heard.tokens) == (1.4, 0)


def test_every_response_counts_and_the_abandoned_replies_apart():
    call = Call()
    ask(call.core, "greeting", call.now_ms)
    call.rt(rt.ResponseCreated("resp_1"))
    call.rt(done("resp_1"))
    call.rt(done("resp_cancelled", status="cancelled"))      # a reply cut by a barge-in is billed too
    assert call.core.stats.tokens == {"input_text": 400, "input_audio": 400, "input_cached_text": 1000,
                                      "input_cached_audio": 200, "output_text": 40, "output_audio": 160}
    assert not call.core.stats.abandoned_tokens
    call.core.book.abandoned.add("resp_held")               # a reply the caller talked over in the hold
    call.rt(done("resp_held"))
    assert call.core.stats.abandoned_tokens["output_audio"] == 80
    assert call.core.stats.tokens["output_audio"] == 240


def test_the_list_prices_of_both_models():
    tokens = {"input_audio": 1_000_000, "input_cached_audio": 1_000_000, "output_audio": 1_000_000,
              "input_text": 1_000_000, "input_cached_text": 1_000_000, "output_text": 1_000_000}
    assert model_usd(tokens, "gpt-realtime") == pytest.approx(32 + 0.40 + 64 + 4 + 0.40 + 16)
    assert model_usd(tokens, "gpt-realtime-mini") == pytest.approx(10 + 0.30 + 20 + 0.60 + 0.06 + 2.40)
    assert set(PRICES["gpt-realtime"]) == set(rt.TOKEN_KINDS)


def test_an_unknown_model_is_counted_and_its_cost_unknown():
    cost = call_cost({"output_audio": 1000}, {}, "gpt-future", "gpt-4o-mini-transcribe", 60, 60, 0.0125)
    assert cost.model_usd is None and cost.total_usd is None
    assert cost.transcription_usd == pytest.approx(0.003) and cost.phone_usd == pytest.approx(0.0125)
    record = usage_record({"output_audio": 1000}, {}, 60, 0, "gpt-future", "gpt-4o-mini-transcribe", 60, 0.0125)
    assert record["tokens"] == {"output_audio": 1000} and record["cost"]["total_usd"] is None


def test_prices_are_overridden_without_a_release():
    env = {"OPENAI_API_KEY": "sk-test", "TWILIO_SIGNATURE_VALIDATION": "off", "TWILIO_MINUTE_USD": "0.02",
           "MODEL_PRICES": json.dumps({"gpt-future": dict.fromkeys(rt.TOKEN_KINDS, 1.0)})}
    settings = Settings.from_env(env)
    assert settings.twilio_minute_usd == 0.02
    assert model_usd({"output_audio": 1_000_000}, "gpt-future", settings.model_prices) == pytest.approx(1.0)
    assert parse_overrides('{"m": {"input_audio": 1}}')[1][0].startswith("MODEL_PRICES['m'] must give every kind")
    with pytest.raises(SettingsError, match="TWILIO_MINUTE_USD"):
        Settings.from_env({**env, "TWILIO_MINUTE_USD": "cheap"})


@pytest.fixture(scope="module")
def lead_call(tmp_path_factory):
    from sim import scenario as scenario_mod
    from sim.loopback import LoopbackCall
    loop = LoopbackCall(scenario_mod.load("lead_hebrew"), tmp_path_factory.mktemp("costs") / "server.log",
                        profile_lines=('model = "gpt-realtime-mini"',))     # this business's calls on the mini model
    with loop:
        record = loop.call(max_duration_s=90)
        loop.wait_idle(timeout_s=5)
        metrics = loop.metrics()
        page = ""
        for _ in range(50):                                  # the call's end is written just after its stream
            page = loop.admin_bytes(f"calls/{record.call_sid}").decode("utf-8")
            if "<table id=cost>" in page:
                break
            time.sleep(0.1)
    detail = loop.store().call_detail(record.call_sid)      # the server is stopped: every write is in
    return type("Finished", (), {"counters": loop.realtime.counters, "detail": detail, "metrics": metrics,
                                 "page": page, "models": [s.session["model"] for s in loop.realtime.sessions],
                                 "out_of_band": list(loop.realtime.counters.out_of_band)})


def test_a_whole_calls_tokens_are_exactly_what_the_service_billed(lead_call):
    """Every response of the call, the owner's out-of-band summary after it included, on the
    model the business chose (``model = "gpt-realtime-mini"``)."""
    billed = {kind: count for kind, count in lead_call.counters.usage.items() if count}
    usage = lead_call.detail["call"]["usage"]
    assert lead_call.models == ["gpt-realtime-mini"] and usage["model"] == "gpt-realtime-mini"
    assert len(lead_call.out_of_band) == 1 and usage["summary_tokens"]["output_text"] > 0
    assert {k: v for k, v in usage["tokens"].items() if v} == billed
    assert billed["output_audio"] > 0 and billed["input_audio"] > 0
    expected = model_usd(billed, "gpt-realtime-mini")
    assert usage["cost"]["model_usd"] == pytest.approx(expected, abs=1e-6)
    assert f'prosaas_model_tokens_total{{kind="output_audio"}} {float(billed["output_audio"])}' in lead_call.metrics
    assert "prosaas_model_cost_usd_total" in lead_call.metrics and "prosaas_phone_cost_usd_total" in lead_call.metrics


def test_the_calls_page_and_listing_show_what_it_cost(lead_call):
    call = lead_call.detail["call"]
    assert call["cost_usd"] == pytest.approx(call["usage"]["cost"]["total_usd"]) and call["cost_usd"] > 0
    assert "<table id=cost>" in lead_call.page and "tokens: output_audio" in lead_call.page
    assert f"${call['usage']['cost']['total_usd']:.4f}" in lead_call.page


def test_costs_per_business_and_day(tmp_path):
    from datetime import timedelta

    from server.storage.db import Store
    from server.storage.models import utcnow
    store = Store(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    store.create_schema()
    for sid, cost in (("CA1", 0.05), ("CA2", None)):
        store.call_started(sid, "MZ", None, "+97235550100", "+97******4567")
        store.call_ended(sid, "no_lead", "caller_hung_up", 1, 1, 0, [], [],
                         usage={"cost": {"total_usd": cost}, "tokens": {}})
    [day] = store.costs_by_day(utcnow() - timedelta(days=1))
    assert (day["calls"], day["cost_usd"], day["unknown"]) == (2, 0.05, 1)
    assert day["day"] == utcnow().date().isoformat() and day["minutes"] >= 0


def test_the_cost_benchmark_reports_ratios_per_scenario_and_across_them(tmp_path):
    import random
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import bench_cost
    side = lambda usd: {"calls": len(usd), "failures": 0, "responses": 3, "usd_per_call": usd,  # noqa: E731
                        "usd_per_call_minute": 0.1, "largest_prompt_tokens": 700}
    results = {"a": {"ours": side([0.02, 0.02]), "reference": side([0.04, 0.04])},
               "b": {"ours": side([0.03, 0.03]), "reference": side([0.01, 0.01])}}
    assert bench_cost.scenario_ratios(results, results, "ours", "reference") == {"a": 0.5, "b": 3.0}
    out = {"label": "t", "model_prices": "gpt-realtime", "reference": "x", "reference_instructions": "ours",
           "profile_lines": [], "calls_per_scenario": 2, "scenarios": results}
    bench_cost.write_report(out, str(tmp_path / "r.json"), "", random.Random(1))
    report = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "| a | 0.500 |" in report and "| b | 3.000 |" in report
    assert "| across the 2 scenarios, pooled (all calls' cost) | 1.000 [" in report      # 0.05 / 0.05
