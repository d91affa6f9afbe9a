"""Prometheus metrics of this worker: ``GET /metrics`` in the text format.

The series names are a public interface (dashboards and alerts are built on them). Labels never
carry a call or a phone number (cardinality); ``outcome``, ``code`` and ``status`` come from small
fixed sets.

Where the numbers come from:

* counters of what calls did (outcome, barge-ins, model errors, leads) are added when a call ends
  or a lead is stored; input audio and reconnects as they happen;
* ``prosaas_response_latency_seconds`` gets one observation per answered caller turn, from the
  core's figures at the end of the call: the caller's last voiced frame -> the first frame of the
  answer leaving for Twilio (it plays within the 40 ms the TX loop keeps ahead);
* ``prosaas_eou_delay_seconds`` (the caller's last voiced frame -> ``response.create``) and
  ``prosaas_tx_lateness_seconds`` are read at scrape time from the worker's own 1 ms histograms
  (``CallRegistry.eou_to_create`` and ``.tx_lateness``, which the benchmark reads too), so each
  figure has one owner and the TX loop pays nothing;
* the active calls and the outbox gauges are read at scrape time (the outbox with one query).

One worker process, as deployed (``gunicorn -w 1``): this registry is the worker's own. Several
workers would need prometheus_client's multiprocess mode, whose collectors cannot read the
worker's histogram at scrape time; that is not done here.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from server.call_registry import CallRegistry
from server.core.pacer import MsHistogram
from server.storage.db import Store
from server.storage.models import utcnow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
LATENESS_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250)


class CallMetrics:
    def __init__(self, calls: CallRegistry, store: Store | None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("prosaas_calls", "Calls ended, by outcome.", ["outcome"], registry=r)
        self.response_latency = Histogram("prosaas_response_latency_seconds",
                                          "Caller's end of speech -> first frame of the answer sent to Twilio.",
                                          buckets=LATENCY_BUCKETS_S, registry=r)
        self.barge_ins = Counter("prosaas_barge_ins", "Barge-ins (the AI interrupted by the caller).", registry=r)
        self.realtime_errors = Counter("prosaas_realtime_errors", "Errors and failed responses from OpenAI Realtime.",
                                       ["code"], registry=r)
        self.reconnects = Counter("prosaas_realtime_reconnects", "Model links replaced after a loss.", registry=r)
        self.input_audio = Counter("prosaas_input_audio_seconds", "Caller audio sent to the model (billed input).",
                                   registry=r)
        self.leads = Counter("prosaas_leads", "Leads stored, by status (complete or partial).", ["status"],
                             registry=r)
        r.register(_ScrapeTime(calls, store))

    def call_ended(self, outcome: str, stats) -> None:
        """One ended call: its outcome, its lead and the core's figures (``CallStats``)."""
        self.calls.labels(outcome).inc()
        if outcome in ("lead_captured", "partial_lead"):
            self.leads.labels("complete" if outcome == "lead_captured" else "partial").inc()
        if stats.barge_ins:
            self.barge_ins.inc(stats.barge_ins)
        for code, count in stats.errors.items():
            self.realtime_errors.labels(code.split(":", 1)[-1]).inc(count)
        for latency_ms in stats.played_latencies_ms:
            self.response_latency.observe(latency_ms / 1000)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _seconds_histogram(name: str, documentation: str, histogram: MsHistogram,
                       edges_ms: tuple[int, ...]) -> HistogramMetricFamily:
    """A Prometheus histogram in seconds from per-ms counts; the top count (the cap and above)
    falls in +Inf only."""
    counts = histogram.counts
    buckets, seen = [], 0
    edges = [edge for edge in edges_ms if edge < len(counts) - 1]
    for value_ms, count in enumerate(counts[:-1]):
        while edges and value_ms > edges[0]:
            buckets.append((str(edges.pop(0) / 1000), seen))
        seen += count
    buckets += [(str(edge / 1000), seen) for edge in edges]
    buckets.append(("+Inf", seen + counts[-1]))
    total_s = sum(value_ms * count for value_ms, count in enumerate(counts)) / 1000
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total_s)


class _ScrapeTime:
    """What is read when Prometheus scrapes: active calls, the worker's histograms, the outbox."""

    def __init__(self, calls: CallRegistry, store: Store | None) -> None:
        self.calls, self.store = calls, store

    def collect(self):
        yield GaugeMetricFamily("prosaas_calls_active", "Calls in progress on this worker.", value=self.calls.active)
        yield _seconds_histogram("prosaas_eou_delay_seconds", "Caller's end of speech -> response.create sent.",
                                 self.calls.eou_to_create, tuple(round(s * 1000) for s in LATENCY_BUCKETS_S))
        yield _seconds_histogram("prosaas_tx_lateness_seconds",
                                 "How late each outbound audio message left after its pacing deadline.",
                                 self.calls.tx_lateness, LATENESS_BUCKETS_MS)
        if self.store is not None:
            pending, oldest = self.store.outbox_pending()
            age_s = 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())
            yield GaugeMetricFamily("prosaas_outbox_pending", "Lead deliveries waiting in the outbox.", value=pending)
            yield GaugeMetricFamily("prosaas_outbox_oldest_pending_seconds",
                                    "Age of the oldest undelivered lead delivery (0 when none).", value=age_s)
