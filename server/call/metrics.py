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
* the active calls and the outbox gauges are read at scrape time (the outbox with one query: a
  database that cannot answer leaves them out of that scrape, it never fails it);
* the record writer's figures (writes waiting for the database, how long the oldest has waited,
  failed attempts, writes set aside or refused) are read from the worker's writer at scrape time;
* ``prosaas_recordings_failed_total`` counts recordings that could not be written.

One worker process, as deployed (``gunicorn -w 1``): this registry is the worker's own and the
figures above are read from it at scrape time.

Several workers (``gunicorn -w N``): set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder for the
server (prometheus_client's multiprocess mode; ``gunicorn.conf.py`` marks each exited worker
dead). Counters and histograms are then kept in files every worker writes and any worker's
``/metrics`` sums. What was read at scrape time from the worker's memory goes into those files
instead: each worker ``flush``es its 1 ms histograms (the change since the last flush, added to
the matching buckets) and its active calls (a ``livesum`` gauge) at the end of every call, every
``FLUSH_INTERVAL_S`` and before answering a scrape. The outbox gauges come from the shared
database, so any worker answers them alone.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from server.call.registry import CallRegistry
from server.core.pacer import MsHistogram
from server.storage.db import Store
from server.storage.models import utcnow
from server.storage.record_writer import RecordWriter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
LATENESS_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 250)
FLUSH_INTERVAL_S = 5
OUTBOX_READ_DEADLINE_S = 1.0
EOU_HELP = "Caller's end of speech -> response.create sent."
TX_HELP = "How late each outbound audio message left after its pacing deadline."
ACTIVE_HELP = "Calls in progress on this worker."
BREAKER_HELP = "1 while this worker's model breaker is open (new calls hear the apology at once)."
RECORDS = (  # (name, help, the writer's attribute, kind)
    ("prosaas_records_pending", "Writes of calls (starts, leads, ends) waiting for the database.", "pending", "gauge"),
    ("prosaas_records_oldest_pending_seconds", "How long the oldest write has waited for the database (0: none).",
     "oldest_pending_s", "gauge"),
    ("prosaas_record_write_failures", "Failed attempts to store a write (each is tried again).", "failures", "counter"),
    ("prosaas_records_dead", "Writes that could never be stored (set aside in the journal).", "dead", "counter"),
    ("prosaas_records_refused", "Writes refused because too many were waiting (lost).", "refused", "counter"),
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class CallMetrics:
    def __init__(self, calls: CallRegistry, store: Store | None, writer: RecordWriter | None = None) -> None:
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
        self.tokens = Counter("prosaas_model_tokens", "The model's tokens, by kind (input_* kinds: uncached).",
                              ["kind"], registry=r)
        self.model_cost = Counter("prosaas_model_cost_usd", "The model's cost at the price table, USD.", registry=r)
        self.transcription_seconds = Counter("prosaas_transcription_seconds", "Caller audio transcribed (billed).",
                                             registry=r)
        self.transcription_cost = Counter("prosaas_transcription_cost_usd", "Input transcription's cost, USD.",
                                          registry=r)
        self.phone_cost = Counter("prosaas_phone_cost_usd", "The phone line's estimated cost (TWILIO_MINUTE_USD), USD.",
                                  registry=r)
        self.leads = Counter("prosaas_leads", "Leads stored, by status (complete or partial).", ["status"],
                             registry=r)
        self.breaker_refused = Counter("prosaas_calls_refused_model_down",
                                       "Calls answered at once with the apology while the model failed call "
                                       "after call (the breaker was open).", registry=r)
        self.recordings_failed = Counter("prosaas_recordings_failed",
                                         "Recordings that could not be written (the caller was told the call is "
                                         "recorded).", registry=r)
        self.calls_registry, self.store, self.writer = calls, store, writer
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess:
            self.active = Gauge("prosaas_calls_active", ACTIVE_HELP, multiprocess_mode="livesum", registry=r)
            self.eou = Histogram("prosaas_eou_delay_seconds", EOU_HELP, buckets=LATENCY_BUCKETS_S, registry=r)
            self.tx_lateness = Histogram("prosaas_tx_lateness_seconds", TX_HELP,
                                         buckets=tuple(ms / 1000 for ms in LATENESS_BUCKETS_MS), registry=r)
            self._flushed = {"eou": [0] * len(calls.eou_to_create.counts),
                             "tx": [0] * len(calls.tx_lateness.counts)}
            self._records = {name: (Gauge(name, doc, multiprocess_mode="livesum" if attr == "pending" else "livemax",
                                          registry=r) if kind == "gauge" else Counter(name, doc, registry=r), attr)
                             for name, doc, attr, kind in RECORDS}
            self._records_flushed: dict[str, float] = {}
            self.breaker_open = Gauge("prosaas_model_breaker_open", BREAKER_HELP, multiprocess_mode="livemax",
                                      registry=r)
        else:
            r.register(_ScrapeTime(calls, store, writer))

    def recording_failed(self) -> None:
        self.recordings_failed.inc()

    def call_ended(self, outcome: str, stats, lead_status: str | None = None, usage: dict | None = None) -> None:
        """One ended call: its outcome, its lead's status (``complete``, ``partial``; by default
        the one its outcome says: a failed call may keep a partial lead) and the core's figures
        (``CallStats``)."""
        self.calls.labels(outcome).inc()
        if lead_status is None:
            lead_status = {"lead_captured": "complete", "partial_lead": "partial"}.get(outcome)
        if lead_status in ("complete", "partial"):
            self.leads.labels(lead_status).inc()
        if stats.barge_ins:
            self.barge_ins.inc(stats.barge_ins)
        for code, count in stats.errors.items():
            self.realtime_errors.labels(code.split(":", 1)[-1]).inc(count)
        for latency_ms in stats.played_latencies_ms:
            self.response_latency.observe(latency_ms / 1000)
        if usage is not None:
            cost = usage["cost"]
            self._model_billed(usage["tokens"], cost["model_usd"])
            if cost["transcription_usd"] is not None:
                self.transcription_cost.inc(cost["transcription_usd"])
            self.phone_cost.inc(cost["phone_usd"])
            self.transcription_seconds.inc(usage["transcription_s"])
        self.flush()

    def summary_billed(self, tokens: dict, model_usd: float | None) -> None:
        """The owner's summary, billed after its call ended: its tokens and cost join the call's."""
        self._model_billed(tokens, model_usd)
        self.flush()

    def _model_billed(self, tokens: dict, model_usd: float | None) -> None:
        """The model's tokens by kind and their cost (None: a model with no price, not added)."""
        for kind, count in tokens.items():
            if count:
                self.tokens.labels(kind).inc(count)
        if model_usd is not None:
            self.model_cost.inc(model_usd)

    def flush(self) -> None:
        """Multiprocess mode: this worker's histograms (what changed since the last flush) and
        active calls into the shared files. Cheap (two short lists); nothing to do otherwise."""
        if not self.multiprocess:
            return
        self.active.set(self.calls_registry.active)
        for key, source, target in (("eou", self.calls_registry.eou_to_create, self.eou),
                                    ("tx", self.calls_registry.tx_lateness, self.tx_lateness)):
            now = list(source.counts)
            _add_ms_counts(target, [a - b for a, b in zip(now, self._flushed[key])])
            self._flushed[key] = now
        self.breaker_open.set(1 if self.calls_registry.model_breaker.is_open else 0)
        if self.writer is not None:
            for name, (metric, attr) in self._records.items():
                value = getattr(self.writer, attr)
                if isinstance(metric, Gauge):
                    metric.set(value)
                else:
                    metric.inc(value - self._records_flushed.get(name, 0))
                    self._records_flushed[name] = value

    def flush_forever(self) -> None:
        """The worker's flusher (``gunicorn.conf.py`` starts it in multiprocess mode)."""
        from server import green
        while True:
            green.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.flush()
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
        shared.register(_Outbox(self.store))
        return generate_latest(shared)


def _add_ms_counts(histogram: Histogram, counts: list[int]) -> None:
    """Per-ms counts added to a histogram's own buckets (the ms bin's bucket, and the sum) in one
    step per bin, not one ``observe`` per frame. The last bin (the cap and above) goes to +Inf
    only, as in the single-worker exposition. Uses the histogram's bucket values, which
    prometheus_client 0.26 (pinned) keeps as ``_buckets``/``_sum``; tests/test_metrics.py checks
    the result against ``observe``."""
    bounds = histogram._upper_bounds
    for value_ms, count in enumerate(counts):
        if count <= 0:
            continue
        value_s = value_ms / 1000
        capped = value_ms == len(counts) - 1
        index = len(bounds) - 1 if capped else next(i for i, bound in enumerate(bounds) if value_s <= bound)
        histogram._buckets[index].inc(count)
        histogram._sum.inc(value_s * count)


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
    """What is read when Prometheus scrapes: active calls, the worker's histograms, the record
    writer, the outbox."""

    def __init__(self, calls: CallRegistry, store: Store | None, writer: RecordWriter | None) -> None:
        self.calls, self.store, self.writer = calls, store, writer

    def collect(self):
        yield GaugeMetricFamily("prosaas_calls_active", ACTIVE_HELP, value=self.calls.active)
        yield _seconds_histogram("prosaas_eou_delay_seconds", EOU_HELP,
                                 self.calls.eou_to_create, tuple(round(s * 1000) for s in LATENCY_BUCKETS_S))
        yield _seconds_histogram("prosaas_tx_lateness_seconds", TX_HELP, self.calls.tx_lateness, LATENESS_BUCKETS_MS)
        if self.writer is not None:
            for name, doc, attr, kind in RECORDS:
                family = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
                yield family(name, doc, value=getattr(self.writer, attr))
        yield GaugeMetricFamily("prosaas_model_breaker_open", BREAKER_HELP,
                                value=1 if self.calls.model_breaker.is_open else 0)
        yield from _Outbox(self.store).collect()


class _Outbox:
    """The outbox gauges, from the shared database (one query)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store

    def collect(self):
        if self.store is not None:
            from server import green
            try:
                with green.deadline(OUTBOX_READ_DEADLINE_S):
                    pending, oldest = self.store.outbox_pending()
            except Exception:   # noqa: BLE001 - the database is down or silent: this scrape goes on without it
                return
            age_s = 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())
            yield GaugeMetricFamily("prosaas_outbox_pending", "Lead deliveries waiting in the outbox.", value=pending)
            yield GaugeMetricFamily("prosaas_outbox_oldest_pending_seconds",
                                    "Age of the oldest undelivered lead delivery (0 when none).", value=age_s)
