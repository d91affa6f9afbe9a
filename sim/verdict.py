"""Judge a simulated call from ground truth: the caller's record, the model simulator's counters,
the server's health after the call and its log. Each criterion is (name, passed, detail)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from sim.realtime_session import SimCounters
from sim.twilio_caller import CallRecord


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    detail: str


def judge(record: CallRecord, health_after: dict, log_text: str, counters: SimCounters | None,
          expected_utterances: int) -> list[Criterion]:
    out: list[Criterion] = []
    said = len(record.speech_ends_ms)
    out.append(Criterion("caller spoke every scripted utterance", said == expected_utterances,
                         f"{said}/{expected_utterances}"))
    out.append(Criterion("AI answered every step it was waited for", not record.failures,
                         "; ".join(record.failures) or "all answered"))
    lat = record.response_latencies_ms()
    out.append(Criterion("AI audio followed every utterance", all(v is not None for v in lat),
                         "latencies " + ", ".join("none" if v is None else f"{v}ms" for v in lat)))
    real_marks = [m for m in record.marks_echoed if not m[2]]
    out.append(Criterion("marks round-trip", bool(record.marks_received) and len(real_marks) == len(record.marks_received),
                         f"{len(record.marks_received)} sent by server, {len(real_marks)} echoed after playback"))
    out.append(Criterion("Twilio protocol respected", not record.violations,
                         "; ".join(record.violations[:3]) or "no invalid message"))
    out.append(Criterion("call ended with nothing left running",
                         health_after.get("active_calls") == 0 and health_after.get("green_threads") == 0,
                         f"active_calls={health_after.get('active_calls')} green_threads={health_after.get('green_threads')}"))
    tracebacks = log_text.count("Traceback")
    out.append(Criterion("no exception in the server log", tracebacks == 0, f"{tracebacks} tracebacks"))
    if counters is not None:
        creates = counters.client_events.get("response.create", 0)
        out.append(Criterion("one response.create per utterance (+ greeting)", creates == expected_utterances + 1,
                             f"{creates} response.create for {expected_utterances} utterances"))
        dup = counters.errors.get("conversation_already_has_active_response", 0)
        out.append(Criterion("no conversation_already_has_active_response", dup == 0, f"{dup}"))
        out.append(Criterion("no error events from the model", not counters.errors, str(dict(counters.errors)) or "{}"))
        out.append(Criterion("every client event valid GA", not counters.invalid_client_events,
                             f"{len(counters.invalid_client_events)} invalid"
                             + (f": {counters.invalid_client_events[:2]}" if counters.invalid_client_events else "")))
    return out


def summary_numbers(record: CallRecord) -> dict:
    lat = [v for v in record.response_latencies_ms() if v is not None]
    return {"utterances": len(record.speech_ends_ms), "ai_answers_heard": len(record.ai_play_starts_ms),
            "latency_ms": lat, "latency_median_ms": statistics.median(lat) if lat else None,
            "call_duration_ms": record.duration_ms, "hung_up_by": record.hung_up_by}
