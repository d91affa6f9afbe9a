"""GET /metrics: the exposition, its token, and the worker's figures turned into series."""
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.call_registry import CallRegistry
from server.core.call_core import CallStats
from server.metrics import CallMetrics
from server.settings import Settings

ENV = {"OPENAI_API_KEY": "sk-test-abcdef", "DATABASE_URL": "sqlite://", "TWILIO_AUTH_TOKEN": "tok"}


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_are_open_without_a_token_and_need_it_when_set():
    open_client = create_app(Settings.from_env(ENV)).test_client()
    resp = open_client.get("/metrics")
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain; version=0.0.4")
    assert b"prosaas_calls_active 0.0" in resp.data
    guarded = create_app(Settings.from_env({**ENV, "METRICS_TOKEN": "m-secret"})).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/metrics?token=m-secret").status_code == 401          # never in a URL
    assert guarded.get("/metrics", headers={"Authorization": "Bearer m-secret"}).status_code == 200


def test_an_ended_call_becomes_counters_and_histograms():
    calls = CallRegistry()
    metrics = CallMetrics(calls, store=None)
    stats = CallStats(barge_ins=2, errors=Counter({"rate_limit_exceeded": 1, "response_failed:server_error": 1}),
                      played_latencies_ms=[740])
    metrics.call_ended("lead_captured", stats)
    metrics.call_ended("no_lead", CallStats())
    for delay_ms in (300, 320):               # the per-call handler feeds the worker's histogram
        calls.eou_to_create.add(delay_ms)
    for lateness_ms in (0, 1, 1, 3, 12, 400):
        calls.tx_lateness.add(lateness_ms)
    calls.active = 3
    got = samples(metrics.exposition().decode())
    assert got[("prosaas_calls_total", (("outcome", "lead_captured"),))] == 1
    assert got[("prosaas_calls_total", (("outcome", "no_lead"),))] == 1
    assert got[("prosaas_leads_total", (("status", "complete"),))] == 1
    assert got[("prosaas_barge_ins_total", ())] == 2
    assert got[("prosaas_realtime_errors_total", (("code", "rate_limit_exceeded"),))] == 1
    assert got[("prosaas_realtime_errors_total", (("code", "server_error"),))] == 1
    assert got[("prosaas_eou_delay_seconds_count", ())] == 2
    assert abs(got[("prosaas_eou_delay_seconds_sum", ())] - 0.62) < 1e-9
    assert got[("prosaas_eou_delay_seconds_bucket", (("le", "0.3"),))] == 1
    assert got[("prosaas_response_latency_seconds_bucket", (("le", "0.8"),))] == 1
    assert got[("prosaas_calls_active", ())] == 3
    # lateness from the worker's 1 ms histogram (its top bucket, 250 ms and more, only in +Inf)
    assert got[("prosaas_tx_lateness_seconds_bucket", (("le", "0.001"),))] == 3
    assert got[("prosaas_tx_lateness_seconds_bucket", (("le", "0.005"),))] == 4
    assert got[("prosaas_tx_lateness_seconds_bucket", (("le", "0.02"),))] == 5
    assert got[("prosaas_tx_lateness_seconds_bucket", (("le", "0.1"),))] == 5
    assert got[("prosaas_tx_lateness_seconds_bucket", (("le", "+Inf"),))] == 6
    assert got[("prosaas_tx_lateness_seconds_count", ())] == 6
