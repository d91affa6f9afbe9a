"""How long a call's database writes hold its green thread: the store on SQLite (WAL), timed.

A call writes three times (its start, its lead with the outbox message, its end) from a green
thread, so each write stalls the worker's other calls for its duration. This prints the median,
p95 and max of each write over ``--calls`` simulated calls and saves them to
``bench/results/store_bench.json``.

    .venv/bin/python scripts/bench_store.py [--calls 300]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.business.profiles import load_profiles  # noqa: E402
from server.leads.capture import LeadSnapshot  # noqa: E402
from server.storage.db import Store  # noqa: E402
from server.storage.models import utcnow  # noqa: E402

LEAD = LeadSnapshot("complete", "התקנת מנעול חכם", "תל אביב-יפו", True, None, "+972501234567", None, (),
                    {"service": "tool", "city": "tool", "phone": "caller_id"})


def summary(values_ms: list[float]) -> dict:
    ordered = sorted(values_ms)
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(ordered[int(len(ordered) * 0.95)], 2),
            "max_ms": round(ordered[-1], 2), "n": len(ordered)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="simulated calls (1..5000)")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 5000:
        parser.error("--calls must be between 1 and 5000")
    timings: dict[str, list[float]] = {"call_started": [], "save_lead+outbox": [], "call_ended": [],
                                       "deliver (claim+mark)": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.sqlite3")
        store.create_schema()
        store.sync_businesses(load_profiles())
        business = store.business_for("+97235550100")[0]

        def timed(name: str, fn) -> None:
            t0 = time.perf_counter()
            fn()
            timings[name].append((time.perf_counter() - t0) * 1000)

        for i in range(args.calls):
            sid = f"CA{i:032d}"
            timed("call_started", lambda: store.call_started(sid, f"MZ{i}", business, "+97235550100", "+97******4567"))
            timed("save_lead+outbox", lambda: store.save_lead(sid, LEAD, ("http://127.0.0.1:9/leads", None)))
            timed("call_ended", lambda: store.call_ended(sid, outcome="lead_captured", hangup_reason="lead_captured",
                                                         turns=3, responses=5, barge_ins=0, latencies_ms=[600, 610, 980],
                                                         transcript=[("user", "כן")] * 6))

            def deliver() -> None:
                for job in store.claim_due(utcnow(), 60):
                    store.delivery_succeeded(job.id, utcnow())
            timed("deliver (claim+mark)", deliver)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{args.calls} calls", file=sys.stderr)
        store.close()
    results = {name: summary(values) for name, values in timings.items()}
    print(f"{'write':24s} {'median':>8s} {'p95':>8s} {'max':>8s}  (ms, SQLite WAL, {args.calls} calls)")
    for name, r in results.items():
        print(f"{name:24s} {r['median_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.2f}")
    out = ROOT / "bench" / "results" / "store_bench.json"
    out.write_text(json.dumps({"calls": args.calls, "results": results}, indent=1) + "\n")
    print(f"saved {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
