"""Judge a simulated call from ground truth: the caller's record, the model simulator's counters,
the server's health after the call and its log. Each criterion is (name, passed, detail)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from server import log_check
from sim.realtime_session import SimCounters
from sim.twilio_caller import CallRecord


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    detail: str


def judge(record: CallRecord, health_after: dict, log_text: str, counters: SimCounters | None,
          expected_utterances: int, expect: dict | None = None, records: dict | None = None) -> list[Criterion]:
    """``expect`` is the scenario's ``[expect]`` table and ``records`` what ``LoopbackCall.records``
    found (leads, CRM receipts); the lead criteria are judged when both are given."""
    out: list[Criterion] = []
    said = len(record.speech_ends_ms)
    out.append(Criterion("caller spoke every scripted turn", said == expected_utterances,
                         f"{said}/{expected_utterances}"))
    out.append(Criterion("AI answered every step it was waited for", not record.failures,
                         "; ".join(record.failures) or "all answered"))
    lat = record.response_latencies_ms()
    out.append(Criterion("AI audio followed every utterance", all(v is not None for v in lat),
                         "latencies " + ", ".join("none" if v is None else f"{v}ms" for v in lat)))
    if expect and "latency_max_ms" in expect:
        bound = expect["latency_max_ms"]
        slow = [v for v in lat if v is None or v > bound]
        out.append(Criterion(f"every answer heard within {bound}ms of the end of speech", not slow,
                             "slowest " + (f"{max(v for v in lat if v is not None)}ms" if any(lat) else "none")))
    real_marks = [m for m in record.marks_echoed if not m[2]]
    out.append(Criterion("marks round-trip", bool(record.marks_received) and len(real_marks) == len(record.marks_received),
                         f"{len(record.marks_received)} sent by server, {len(real_marks)} echoed after playback"))
    out.append(Criterion("Twilio protocol respected", not record.violations,
                         "; ".join(record.violations[:3]) or "no invalid message"))
    out.append(Criterion("call ended with nothing left running",
                         health_after.get("active_calls") == 0 and health_after.get("green_threads") == 0,
                         f"active_calls={health_after.get('active_calls')} green_threads={health_after.get('green_threads')}"))
    if record.thinking_pauses:
        heard = [t for t, voiced in record.arrivals if voiced and any(s < t <= e for s, e in record.thinking_pauses)]
        out.append(Criterion("no AI audio inside a thinking pause", not heard,
                             f"{len(record.thinking_pauses)} pause(s) of "
                             + ", ".join(f"{e - s}ms" for s, e in record.thinking_pauses)
                             + (f"; AI audio at {heard[0]}ms" if heard else "; silent")))
    if record.backchannels:
        cancelled = counters.responses_cancelled if counters is not None else 0
        out.append(Criterion("backchannels did not interrupt the AI", record.clears == 0 and cancelled == 0,
                             f"{len(record.backchannels)} said over the AI, {record.clears} clear(s), "
                             f"{cancelled} response(s) cancelled"))
    contract = [r for r in log_check.check(log_text) if not r.passed and r.call != "(all)"]
    out.append(Criterion("server log meets the behaviour contract", not contract,
                         "; ".join(f"{r.name}: {r.detail}" for r in contract[:3]) or "every generic check passed"))
    tracebacks = log_text.count("Traceback")
    out.append(Criterion("no exception in the server log", tracebacks == 0, f"{tracebacks} tracebacks"))
    if counters is not None:
        creates = counters.client_events.get("response.create", 0)
        tools = len(counters.tool_outputs)
        # a tool answer is followed by one response, unless the caller talked over its I/O (their turn's sees it)
        follow_ups = tools - log_text.count("[TOOL] answers of ")
        resumed = log_text.count("[HOLD] caller resumed")
        out.append(Criterion("one response.create per utterance (+ greeting, + one per tool answer followed up, + "
                             "one per reply abandoned unheard in a hold)",
                             creates == expected_utterances + 1 + follow_ups + resumed,
                             f"{creates} response.create for {expected_utterances} utterances, {follow_ups} of {tools} "
                             f"tool answers followed up and {resumed} held replies abandoned"))
        dup = counters.errors.get("conversation_already_has_active_response", 0)
        out.append(Criterion("no conversation_already_has_active_response", dup == 0, f"{dup}"))
        out.append(Criterion("no error events from the model", not counters.errors, str(dict(counters.errors)) or "{}"))
        out.append(Criterion("every client event valid GA", not counters.invalid_client_events,
                             f"{len(counters.invalid_client_events)} invalid"
                             + (f": {counters.invalid_client_events[:2]}" if counters.invalid_client_events else "")))
    if expect and records is not None and set(expect) & {"lead", "service", "city", "delivered"}:
        out += _judge_lead(expect, records, log_text)
    if expect and expect.get("transfer"):
        out += _judge_transfer(expect["transfer"], record)
    if expect and records is not None and "visit" in expect:
        out += _judge_visit(expect["visit"], record, records)
    return out


def _judge_visit(want: str, record: CallRecord, records: dict) -> list[Criterion]:
    """The lead carries the visit, and the calendar (read back over plain HTTP) holds exactly the
    one event of this call, at the visit's time."""
    lead = records["leads"][0] if records["leads"] else {}
    visit = lead.get("visit") or {}
    out = [Criterion(f"lead carries the visit ({want})", visit.get("status") == want,
                     f"{visit.get('status', 'no visit')} {visit.get('says', '')} {visit.get('start', '')}".strip())]
    mine = [e for e in records.get("calendar_events", []) if record.call_sid and record.call_sid in e]
    if want == "booked":
        start = visit.get("start", "")
        stamp = ""
        if start:
            from datetime import datetime, timezone
            stamp = datetime.fromisoformat(start).astimezone(timezone.utc).strftime("DTSTART:%Y%m%dT%H%M%SZ")
        out.append(Criterion("the calendar holds this call's visit, once, at its time",
                             len(mine) == 1 and bool(stamp) and stamp in mine[0],
                             f"{len(mine)} event(s) of this call; {stamp or 'no start'}"))
        delivered = [r["payload"]["lead"].get("visit") for r in records["crm_received"]
                     if r["payload"]["event"] == "lead.complete"]
        out.append(Criterion("the CRM got the visit with the lead", any(v and v.get("start") == start for v in delivered),
                             f"{len(delivered)} complete lead(s) delivered"))
    return out


def _judge_lead(expect: dict, records: dict, log_text: str) -> list[Criterion]:
    out: list[Criterion] = []
    leads = records["leads"]
    want = expect.get("lead", "complete")
    lead = leads[0] if leads else None
    got = lead["status"] if lead else "none"
    out.append(Criterion(f"lead stored ({want})", got == want and len(leads) <= 1,
                         f"{len(leads)} lead(s), status {got}"))
    if lead is not None:
        for key in ("service", "city"):
            if key in expect:
                out.append(Criterion(f"lead {key} normalised", lead[key] == expect[key], f"{lead[key]!r}"))
    if want == "complete":
        out.append(Criterion("smart hangup with the lead", "Lead captured: True" in log_text,
                             "Lead captured: True" if "Lead captured: True" in log_text else "not logged"))
    if expect.get("delivered"):
        ids = [r["delivery_id"] for r in records["crm_received"]]
        mine = [r for r in records["crm_received"] if lead and r["payload"]["lead"]["id"] == lead["id"]
                and r["payload"]["event"] != "lead.summary"]          # the owner's summary follows apart
        out.append(Criterion("lead delivered to the CRM exactly once", len(mine) == 1 and len(ids) == len(set(ids)),
                             f"{len(mine)} accepted, {records['crm_attempts']} POSTs, outbox {records['outbox']}"))
    return out


def _judge_transfer(number: str, record: CallRecord) -> list[Criterion]:
    """The call was put through to the business's person (``<Dial>``), after the AI's last line played."""
    dialled = [d.number for d in record.dials]
    last_ai = max((t for t, voiced in record.arrivals if voiced), default=None)
    dial_at = next((t for t, kind, _ in record.events if kind in ("rest_update", "server_closed")), None)
    after = last_ai is not None and dial_at is not None and dial_at >= last_ai
    return [Criterion("transferred to a person", dialled == [number], f"dialled {dialled or 'nobody'}"),
            Criterion("the AI's line played to the end before the transfer", after,
                      f"last AI audio at {last_ai} ms, call handed over at {dial_at} ms")]


def summary_numbers(record: CallRecord) -> dict:
    lat = [v for v in record.response_latencies_ms() if v is not None]
    return {"utterances": len(record.speech_ends_ms), "ai_answers_heard": len(record.ai_play_starts_ms),
            "latency_ms": lat, "latency_median_ms": statistics.median(lat) if lat else None,
            "call_duration_ms": record.duration_ms, "hung_up_by": record.hung_up_by}
