"""GET /metrics: the exposition, its token, and the worker's figures turned into series."""
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.call.registry import CallRegistry
from server.core.call_core import CallStats
from server.call.metrics import CallMetrics
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


# --- several workers: prometheus_client's multiprocess mode ------------------------------------

WORKER = """
import sys
from server.call.registry import CallRegistry
from server.core.call_core import CallStats
from server.call.metrics import CallMetrics
calls = CallRegistry()
metrics = CallMetrics(calls, store=None)
assert metrics.multiprocess
calls.active = int(sys.argv[1])
for ms in map(int, sys.argv[2].split(",")):
    calls.tx_lateness.add(ms)
calls.eou_to_create.add(300)
metrics.call_ended("lead_captured", CallStats(played_latencies_ms=[700]))
metrics.flush()
metrics.flush()                       # a second flush adds nothing: only what changed since the last
print("ok")
"""

SCRAPE = """
import os, sys
from prometheus_client import multiprocess
from server.call.registry import CallRegistry
from server.call.metrics import CallMetrics
for pid in sys.argv[1:]:
    multiprocess.mark_process_dead(int(pid))
sys.stdout.write(CallMetrics(CallRegistry(), store=None).exposition().decode())
"""


def test_several_workers_add_up_in_multiprocess_mode(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parent.parent)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": root, "PATH": "/usr/bin:/bin"}

    def run(code: str, *args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                             timeout=60, cwd=root)
        assert out.returncode == 0, out.stderr[-2000:]
        return out

    first = subprocess.Popen([sys.executable, "-c", WORKER, "2", "1,3,30"], env=env, cwd=root,
                             stdout=subprocess.PIPE, text=True)
    assert first.communicate(timeout=60)[0].strip() == "ok"
    second = subprocess.Popen([sys.executable, "-c", WORKER, "1", "2,250,400"], env=env, cwd=root,
                              stdout=subprocess.PIPE, text=True)
    assert second.communicate(timeout=60)[0].strip() == "ok"
    both = samples(run(SCRAPE).stdout)
    assert both[("prosaas_calls_total", (("outcome", "lead_captured"),))] == 2
    assert both[("prosaas_calls_active", ())] == 3                      # 2 + 1, while both live
    assert both[("prosaas_tx_lateness_seconds_count", ())] == 6
    assert both[("prosaas_tx_lateness_seconds_bucket", (("le", "0.002"),))] == 2      # 1 and 2 ms
    assert both[("prosaas_tx_lateness_seconds_bucket", (("le", "0.05"),))] == 4       # and 3, 30 ms
    assert both[("prosaas_tx_lateness_seconds_bucket", (("le", "0.25"),))] == 4       # the cap (250+) is above
    assert both[("prosaas_tx_lateness_seconds_bucket", (("le", "+Inf"),))] == 6
    assert abs(both[("prosaas_tx_lateness_seconds_sum", ())] - (1 + 3 + 30 + 2 + 250 + 250) / 1000) < 1e-9
    assert both[("prosaas_eou_delay_seconds_count", ())] == 2
    assert both[("prosaas_response_latency_seconds_count", ())] == 2
    after = samples(run(SCRAPE, str(first.pid), str(second.pid)).stdout)
    assert after[("prosaas_calls_active", ())] == 0                     # exited workers no longer count
    assert after[("prosaas_calls_total", (("outcome", "lead_captured"),))] == 2


def test_ms_counts_land_in_the_buckets_observe_would_use():
    from prometheus_client import CollectorRegistry, Histogram
    from server.call.metrics import _add_ms_counts
    r = CollectorRegistry()
    added = Histogram("added", "x", buckets=(0.001, 0.005, 0.02), registry=r)
    observed = Histogram("observed", "x", buckets=(0.001, 0.005, 0.02), registry=r)
    counts = [2, 1, 0, 0, 0, 3, 0, 1] + [0] * 20 + [4]
    _add_ms_counts(added, counts)
    for ms, count in enumerate(counts):
        for _ in range(count):
            observed.observe(ms / 1000)
    got = samples(generate_latest_text(r))
    for suffix, labels in (("_bucket", (("le", "0.001"),)), ("_bucket", (("le", "0.005"),)),
                           ("_bucket", (("le", "0.02"),)), ("_bucket", (("le", "+Inf"),)), ("_count", ()), ("_sum", ())):
        assert abs(got[("added" + suffix, labels)] - got[("observed" + suffix, labels)]) < 1e-9


def generate_latest_text(registry) -> str:
    from prometheus_client import generate_latest
    return generate_latest(registry).decode()
