#!/usr/bin/env python3
"""Does a slow database stall the calls? Pacing beside database work, PostgreSQL 50 ms away.

    .venv/bin/python scripts/bench_db_latency.py                  # 10 lead calls at once, 3 rounds
    .venv/bin/python scripts/bench_db_latency.py --calls 20 --rounds 1 --delay-ms 25

A throwaway PostgreSQL cluster on loopback (``sim/postgres.py``) sits behind a proxy
(``sim/tcp_proxy.py``) that holds every chunk ``--delay-ms`` each way, so each round trip costs
twice that more. One server (``gunicorn -k eventlet -w 1``, as deployed) uses it as its
``DATABASE_URL`` and takes rounds of lead calls (``lead_hebrew``: the webhook writes the call's
record, the stream start updates it, the lead is saved mid-call and queued for the CRM, the
outbox worker delivers it, the call's end is written) with their starts spread over 3 s, so call
starts, lead saves and outbox polling run beside calls that are talking.

Under eventlet the PostgreSQL driver waits in C unless told otherwise (``server/green.py``): the
whole worker stops for each round trip. The run compares both ways of waiting in one sitting:
``wait_c`` (psycopg's default, forced by ``PSYCOPG_WAIT_FUNC``) and ``wait_select`` (what the
server now sets under eventlet). Reported per way: outbound pacing lateness p50/p99/max (the
server's own histogram), end of speech -> ``response.create`` p50/p95, end of speech -> first AI
audio at the caller p50/p95, failures. Writes bench/results/db_latency.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_call import diff, perf, run_level  # noqa: E402
from sim import scenario as scenario_mod  # noqa: E402
from sim.loopback import ROOT, LoopbackCall  # noqa: E402
from sim.postgres import TempPostgres, available  # noqa: E402
from sim.tcp_proxy import TcpProxy  # noqa: E402

WAYS = ("wait_c", "wait_select")
MAX_CALLS = 40


def max_ms(counts: list[int]) -> int | None:
    nonzero = [ms for ms, count in enumerate(counts) if count]
    return nonzero[-1] if nonzero else None


def one_way(way: str, pg: TempPostgres, proxy: TcpProxy, calls: int, rounds: int, work: Path) -> dict:
    database = pg.new_database()
    url = pg.url(database, host="127.0.0.1", port=proxy.port)
    loop = LoopbackCall(scenario_mod.load("lead_hebrew"), work / f"server-{way}.log",
                        env={"DATABASE_URL": url, "PSYCOPG_WAIT_FUNC": way, "LOG_LEVEL": "WARNING"})
    started = time.monotonic()
    loop.start(boot_timeout_s=60)
    boot_s = time.monotonic() - started
    try:
        pid = loop.server_pid()
        before = perf(loop)
        result = run_level(loop, pid, calls, rounds, spread_ms=3000)
        late = diff(perf(loop)["tx_lateness_ms"], before["tx_lateness_ms"])
        result["tx_lateness_max_ms"] = max_ms(late)
        result["boot_s"] = round(boot_s, 1)
        result["crm_deliveries"] = len(loop.crm.received) if loop.crm else 0
        return result
    finally:
        loop.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="lead calls at once per round (at most 40)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=int, default=25, help="added each way: a round trip costs twice this")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "db_latency.json")
    args = parser.parse_args()
    if not available():
        print("not run: PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        return 0
    calls, rounds = max(1, min(MAX_CALLS, args.calls)), max(1, min(3, args.rounds))
    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    with TempPostgres(tcp=True) as pg, TcpProxy([("127.0.0.1", pg.port)], delay_ms=args.delay_ms) as proxy:
        for way in WAYS:
            print(f"{way}: {calls} lead calls at once x {rounds} rounds, PostgreSQL {2 * args.delay_ms} ms "
                  f"round trip away", flush=True)
            results[way] = one_way(way, pg, proxy, calls, rounds, work)
            r = results[way]
            print(f"  pacing lateness p50/p99/max {r['tx_lateness_p50_ms']}/{r['tx_lateness_p99_ms']}/"
                  f"{r['tx_lateness_max_ms']} ms; eou->create p50/p95 {r['eou_to_create_p50_ms']}/"
                  f"{r['eou_to_create_p95_ms']} ms; answer p50/p95 {r['latency_p50_ms']}/{r['latency_p95_ms']} ms; "
                  f"failures {r['failure_count']}; CRM deliveries {r['crm_deliveries']}", flush=True)
    report = {"calls_at_once": calls, "rounds": rounds, "round_trip_added_ms": 2 * args.delay_ms,
              "scenario": "lead_hebrew", "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    rows = ["| psycopg wait | lateness p50 / p99 / max (ms) | eou -> create p50 / p95 (ms) | "
            "answer p50 / p95 (ms) | failures | CRM deliveries |", "|---|---|---|---|---|---|"]
    for way, r in results.items():
        rows.append(f"| {way} | {r['tx_lateness_p50_ms']} / {r['tx_lateness_p99_ms']} / {r['tx_lateness_max_ms']} | "
                    f"{r['eou_to_create_p50_ms']} / {r['eou_to_create_p95_ms']} | {r['latency_p50_ms']} / "
                    f"{r['latency_p95_ms']} | {r['failure_count']} | {r['crm_deliveries']} |")
    md = (f"# Pacing beside a database {2 * args.delay_ms} ms away\n\n{calls} `lead_hebrew` calls at once, "
          f"{rounds} round(s), one eventlet worker, PostgreSQL behind a {args.delay_ms} ms-each-way proxy.\n\n"
          + "\n".join(rows) + "\n")
    args.out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
