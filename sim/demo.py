"""The main job: one complete simulated phone call on loopback, with a live transcript and a verdict.

    ./scripts/demo                      # scenario lead_hebrew: a lead captured, stored, delivered
    ./scripts/demo --scenario two_turns
    ./scripts/demo --scenario booking   # a visit booked into a CalDAV calendar (Radicale on loopback)
    ./scripts/demo --list

Without ``OPENAI_API_KEY`` the embedded OpenAI Realtime simulator answers. With a key set (in the
environment or ``.env``) the real server talks to the real OpenAI Realtime API and only the caller
is simulated (checks that need the model simulator's records are then skipped). Exit status is 0
only if every criterion of the verdict passed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from dotenv import dotenv_values

from sim import scenario as scenario_mod
from sim.loopback import ROOT, LoopbackCall
from sim.verdict import judge, summary_numbers

_SHOWN = (("ASR_TEXT: ", "🗣  server heard"), ("🤖 [REALTIME] AI said: ", "🤖 AI said"),
          ("📞 [SMART HANGUP]", "📞"), ("[WATCHDOG]", "⚠️ "), ("[REALTIME] error", "⚠️ "))


def _tail(path: Path, stop: threading.Event, t0: float) -> None:
    """Print the server log lines a person wants to see, as they appear."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.05)
    pending = ""
    with open(path, encoding="utf-8", errors="replace") as f:
        while not stop.is_set():
            pending += f.readline()
            if not pending.endswith("\n"):      # nothing new, or a line still being written
                time.sleep(0.05)
                continue
            line, pending = pending, ""
            for marker, label in _SHOWN:
                if marker in line:
                    text = line.split(marker, 1)[1].strip()
                    print(f"  {time.monotonic() - t0:6.1f}s  {label}: {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="lead_hebrew", help="scenario name in sim/scenarios or a .toml path")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--out", default=str(ROOT / "runs"), help="folder for the server log and the summary")
    args = parser.parse_args(argv)
    if args.list:
        for path in sorted(scenario_mod.SCENARIOS_DIR.glob("*.toml")):
            sc = scenario_mod.load(str(path))
            print(f"{sc.name:16s} {sc.description}")
        return 0
    try:
        sc = scenario_mod.load(args.scenario)
    except scenario_mod.ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    real_key = os.environ.get("OPENAI_API_KEY") or dotenv_values(ROOT / ".env").get("OPENAI_API_KEY")
    run_dir = Path(args.out) / datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = run_dir / "server.log"
    mode = "real OpenAI Realtime (OPENAI_API_KEY is set)" if real_key else "embedded OpenAI Realtime simulator"
    print(f"📞 Simulated call '{sc.name}': {sc.description}\n   model: {mode}\n   server log: {log_path}\n")
    utterances = sc.turns
    stop = threading.Event()
    t0 = time.monotonic()

    def on_event(t_ms: int, kind: str, detail: str) -> None:
        if kind == "caller_says":
            print(f"  {time.monotonic() - t0:6.1f}s  👤 caller says: {detail}", flush=True)
        elif kind in ("hangup", "server_closed", "clear", "rest_update", "dial", "dtmf"):
            print(f"  {time.monotonic() - t0:6.1f}s  ☎️  {kind} {detail}", flush=True)

    try:
        with LoopbackCall(sc, log_path, use_simulator=not real_key, twilio_rest=True) as call:
            threading.Thread(target=_tail, args=(log_path, stop, t0), daemon=True).start()
            t0 = time.monotonic()
            record = call.call(on_event=on_event)
            health = call.wait_idle()
            time.sleep(0.3)
            counters = call.realtime.counters if call.realtime else None
            records = call.records()
            deadline = time.monotonic() + 5
            while not any(c.get("usage") for c in records["calls"]) and time.monotonic() < deadline:
                time.sleep(0.2)                       # the call's end is written just after its stream
                records["calls"] = call.admin("calls")["calls"]
            timeline_svg = call.admin_bytes(f"calls/{record.call_sid}/timeline.svg")
            metrics_text = call.metrics()
    except (RuntimeError, OSError) as exc:
        stop.set()
        print(f"\n❌ the call could not run: {exc}", file=sys.stderr)
        return 1
    stop.set()
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    verdict = judge(record, health, log_text, counters, utterances, sc.expect, records)
    numbers = summary_numbers(record)
    print("\nVerdict")
    for c in verdict:
        print(f"  {'PASS' if c.passed else 'FAIL'}  {c.name}: {c.detail}")
    lat = numbers["latency_ms"]
    print(f"\n  utterances={numbers['utterances']}  AI audio bursts heard={numbers['ai_answers_heard']}  "
          f"call={numbers['call_duration_ms'] / 1000:.1f}s  hung up by {numbers['hung_up_by']}")
    print(f"  end of caller speech → first AI audio frame: {', '.join(f'{v}ms' for v in lat) or 'n/a'}"
          f" (model first-audio delay {sc.first_audio_delay_ms}ms)")
    for lead in records["leads"]:
        deliveries = ", ".join(f"{d['status']} after {d['attempts']} attempt(s)" for d in lead["deliveries"]) or "none"
        print(f"  lead ({lead['status']}): service={lead['service']!r} city={lead['city']!r} "
              f"phone={'…' + lead['phone'][-4:] if lead['phone'] else None} missing={lead['missing']} "
              f"→ CRM: {deliveries}")
    if not records["leads"]:
        print("  no lead stored")
    for lead in records["leads"]:
        if lead.get("visit"):
            visit = lead["visit"]
            print(f"  visit ({visit.get('status')}): {visit.get('says', '')} ({visit.get('start')})")
    for event in records.get("calendar_events", []):
        if record.call_sid in event:
            print("  read back from the calendar (Radicale, CalDAV):")
            for line in event.splitlines():
                if line.startswith(("UID", "DTSTART", "DTEND", "SUMMARY", "DESCRIPTION", " ")):
                    print(f"    {line}")
    for call_row in records["calls"]:
        usage = call_row.get("usage")
        if call_row["call_sid"] == record.call_sid and usage:
            cost = usage["cost"]
            usd = lambda v: "unknown" if v is None else f"${v:.4f}"      # noqa: E731
            print(f"  model tokens ({usage['model']}): " + ", ".join(f"{k}={v}" for k, v in usage["tokens"].items()))
            print(f"  cost: model {usd(cost['model_usd'])} + transcription {usd(cost['transcription_usd'])} + phone "
                  f"{usd(cost['phone_usd'])} = {usd(cost['total_usd'])} (replies abandoned unheard: "
                  f"{usd(cost['abandoned_usd'])})")
            if any((usage.get("summary_tokens") or {}).values()):
                print("  of which the owner's summary: "
                      + ", ".join(f"{k}={v}" for k, v in usage["summary_tokens"].items() if v))
    timeline_path, metrics_path = run_dir / "timeline.svg", run_dir / "metrics.prom"
    timeline_path.write_bytes(timeline_svg)
    metrics_path.write_text(metrics_text, encoding="utf-8")
    print(f"\n  timeline picture of the call: {timeline_path}")
    print(f"    (the admin page /admin/calls/{record.call_sid} shows it; open the file in a browser)")
    print(f"  /metrics after the call: {metrics_path}")
    for line in metrics_text.splitlines():
        if line.startswith(("prosaas_calls_total", "prosaas_leads_total", "prosaas_eou_delay_seconds_count",
                            "prosaas_model_cost_usd_total", "prosaas_model_tokens_total",
                            "prosaas_response_latency_seconds_sum", "prosaas_input_audio_seconds_total")):
            print(f"    {line}")
    (run_dir / "summary.json").write_text(json.dumps(
        {"scenario": sc.name, **numbers, "leads": records["leads"], "verdict": [c.__dict__ for c in verdict]}, ensure_ascii=False, indent=1))
    ok = all(c.passed for c in verdict)
    print(f"\n{'✅ call behaved' if ok else '❌ call misbehaved'}  (summary: {run_dir / 'summary.json'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
