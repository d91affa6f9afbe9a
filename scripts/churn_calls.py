#!/usr/bin/env python3
"""Place many short calls against one server and compare its state before and after.

    .venv/bin/python scripts/churn_calls.py [--calls 100] [--concurrent 10] [--max-seconds 600]

Bounded in count and in wall time; loopback only. Prints and writes bench/results/churn.json:
worker RSS and green threads before / after, calls that failed, model errors.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import scenario as scenario_mod  # noqa: E402
from sim.loopback import LoopbackCall  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "churn.json"))
    args = parser.parse_args()
    if not 1 <= args.calls <= 500 or not 1 <= args.concurrent <= 20:
        parser.error("--calls must be 1..500 and --concurrent 1..20")
    sc = scenario_mod.load("short_call")
    started = time.monotonic()
    failures: list[str] = []
    done = 0
    with LoopbackCall(sc, ROOT / "runs" / "churn" / "server.log") as loop:
        pid = loop.server_pid()
        warm = loop.call(max_duration_s=60)                       # one call first: imports, caches
        before = {"rss_kib": rss_kib(pid), **loop.wait_idle(5)}
        while done < args.calls and time.monotonic() - started < args.max_seconds:
            wave = min(args.concurrent, args.calls - done)
            records: list = []
            threads = [threading.Thread(target=lambda: records.append(loop.call(max_duration_s=60))) for _ in range(wave)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            done += wave
            failures += [f for r in records for f in r.failures]
            failures += [f"hung up by {r.hung_up_by}" for r in records if r.hung_up_by != "caller"]
            print(f"{done}/{args.calls} calls, rss {rss_kib(pid)} KiB, {loop.health()}", flush=True)
        after = {"rss_kib": rss_kib(pid), **loop.wait_idle(10)}
        errors = dict(loop.realtime.counters.errors)
        tracebacks = loop.log_text().count("Traceback")
    result = {"calls": done, "concurrent": args.concurrent, "wall_s": round(time.monotonic() - started, 1),
              "warm_up_call_ok": not warm.failures, "before": before, "after": after,
              "rss_growth_kib": after["rss_kib"] - before["rss_kib"], "failures": failures[:20],
              "failed_calls": len(failures), "model_errors": errors, "tracebacks": tracebacks}
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    ok = not failures and not errors and not tracebacks and after["green_threads"] == 0 and after["active_calls"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
