#!/usr/bin/env python3
"""Benchmark whole calls on loopback: response latency and server CPU per call minute.

    .venv/bin/python scripts/bench_call.py                    # 3 sequential calls of two_turns
    .venv/bin/python scripts/bench_call.py --calls 5 --concurrent 4

Latency is ground truth from the caller simulator: end of the caller's speech -> first AI audio
frame received from the server, with the model simulator's first-audio delay at the scenario's
value (0 for two_turns). CPU is utime+stime of the gunicorn worker (/proc) over the calls, divided
by the summed call minutes. Prints a table and writes bench/results/call_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim import scenario as scenario_mod  # noqa: E402
from sim.loopback import ROOT, LoopbackCall  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[int], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="two_turns")
    parser.add_argument("--calls", type=int, default=3, help="rounds of calls (bounded: at most 50)")
    parser.add_argument("--concurrent", type=int, default=1, help="calls at once per round (at most 20)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "call_bench.json"))
    args = parser.parse_args()
    if not 1 <= args.calls <= 50 or not 1 <= args.concurrent <= 20:
        parser.error("--calls must be 1..50 and --concurrent 1..20")
    sc = scenario_mod.load(args.scenario)
    latencies: list[int] = []
    call_ms = 0
    failures: list[str] = []
    with LoopbackCall(sc, ROOT / "runs" / "bench" / "server.log") as loop:
        pid = loop.server_pid()
        if pid is None:
            print("error: could not find the gunicorn worker process", file=sys.stderr)
            return 1
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        for round_no in range(args.calls):
            records: list = []
            threads = [threading.Thread(target=lambda: records.append(loop.call(max_duration_s=120)))
                       for _ in range(args.concurrent)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            health = loop.wait_idle(10)
            for rec in records:
                latencies += [v for v in rec.response_latencies_ms() if v is not None]
                call_ms += rec.duration_ms
                failures += rec.failures
            print(f"round {round_no + 1}/{args.calls}: {len(records)} calls, latencies "
                  f"{[v for r in records for v in r.response_latencies_ms()]}, after: {health}", flush=True)
        cpu = cpu_seconds(pid) - cpu0
        wall = time.monotonic() - t0
        errors = dict(loop.realtime.counters.errors)
    result = {
        "scenario": sc.name, "first_audio_delay_ms": sc.first_audio_delay_ms, "calls": args.calls * args.concurrent,
        "concurrent": args.concurrent, "utterances": len(latencies),
        "latency_median_ms": statistics.median(latencies) if latencies else None,
        "latency_p95_ms": percentile(latencies, 95) if latencies else None,
        "latency_max_ms": max(latencies) if latencies else None,
        "server_cpu_s": round(cpu, 3), "call_minutes": round(call_ms / 60000, 3),
        "cpu_s_per_call_minute": round(cpu / (call_ms / 60000), 3) if call_ms else None,
        "wall_s": round(wall, 1), "model_errors": errors, "failures": failures,
    }
    print("\n| metric | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    print(f"\nwritten to {args.out}")
    return 0 if not failures and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
