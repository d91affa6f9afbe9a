#!/usr/bin/env python3
"""Benchmark whole calls on loopback: CPU per call minute, pacing, latency, memory, model input.

    .venv/bin/python scripts/bench_call.py                         # 1, 30 and 60 calls at once
    .venv/bin/python scripts/bench_call.py --levels 1,10 --rounds 2

One server (``gunicorn -k eventlet -w 1``, exactly as deployed) and the simulators on this machine;
for each level, ``--rounds`` rounds of that many calls of ``--scenario`` at once (their starts
spread over ``--spread-ms``, as real calls never arrive on the same millisecond). Per level:

* CPU seconds per call minute: utime+stime of the worker (/proc) over the level, divided by the
  summed call minutes.
* Outbound pacing lateness, p50/p99: how long after its deadline each assistant frame went out
  (the server's own histogram, ``/healthz?perf=1``; a worker that cannot keep up shows here first).
* End of speech -> ``response.create``, p50/p95 (the server's histogram: from the last voiced caller
  frame by the caller-audio clock to the send).
* End of speech -> first AI audio at the caller, p50/p95: ground truth from the caller simulator.
* Input audio sent to the model per caller utterance, beyond the speech itself (the model
  simulator's count of appended audio, the caller simulator's count of speech said).
* The worker's peak RSS (VmHWM) and its RSS at the end.
* The model's cost per call minute: what the Realtime simulator billed (its ``usage``, the same for
  any server it serves), at ``gpt-realtime``'s list prices.

Prints a table and writes bench/results/call_bench.json (or ``--out``). Bounded: at most 3 rounds
of at most 80 calls per level.

``--reference-cmd`` runs the same calls against another application instead, on the same
simulators: the command is started with ``PORT``, ``OPENAI_API_KEY`` and ``OPENAI_REALTIME_URL``
(the simulator's address) in its environment and measured the same way (its own process's CPU and
memory; no server histograms). ``--reference-webhook`` is its webhook path. This is how Twilio's
Python sample (FastAPI + websockets, server VAD, pure pass-through) is compared in one run; its
code is not part of this repository: check it out beside it and point the command at it.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.business import pricing  # noqa: E402
from server.core.pacer import MsHistogram  # noqa: E402
from sim import scenario as scenario_mod  # noqa: E402
from sim.loopback import AUTH_TOKEN, ROOT, SIM_API_KEY, LoopbackCall, free_port  # noqa: E402
from sim.realtime_server import RealtimeSimulator  # noqa: E402
from sim.realtime_session import ReplyScript  # noqa: E402
from sim.twilio_caller import TwilioCaller  # noqa: E402

MAX_CALLS = 80
MAX_ROUNDS = 3


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def percentile(values: list[int], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def histogram_percentile(counts: list[int], pct: float) -> int | None:
    """A percentile of the server's per-ms counts, read the way the server reads them."""
    histogram = MsHistogram(max(0, len(counts) - 1))
    histogram.counts = list(counts) or [0]
    return histogram.percentile_ms(pct)


def perf(loop) -> dict:
    if not isinstance(loop, LoopbackCall):
        return {"tx_lateness_ms": [], "eou_to_create_ms": []}       # another application: no histograms
    with urllib.request.urlopen(f"{loop.base_url}/healthz?perf=1", timeout=5) as resp:
        return json.loads(resp.read())["perf"]


class ReferenceServer:
    """Another application answering the same calls (``--reference-cmd``), on the same simulators."""

    def __init__(self, scenario, command: str, webhook_path: str, log_path: Path) -> None:
        self.scenario, self.command, self.webhook_path, self.log_path = scenario, command, webhook_path, log_path
        self.realtime: RealtimeSimulator | None = None
        self.process: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> "ReferenceServer":
        sc = self.scenario
        self.realtime = RealtimeSimulator(ReplyScript.from_scenario_replies(sc.replies), sc.first_audio_delay_ms,
                                          speedup=sc.speedup)
        self.realtime.start()
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port), OPENAI_API_KEY=SIM_API_KEY, OPENAI_REALTIME_URL=self.realtime.url)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(shlex.split(self.command), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reference server exited with {self.process.returncode}; see {self.log_path}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"reference server did not answer within 30 s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.realtime is not None:
            self.realtime.stop()

    def server_pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def call(self, max_duration_s: float = 120.0):
        base = f"http://127.0.0.1:{self.port}"
        return TwilioCaller(base, self.scenario, AUTH_TOKEN, webhook_path=self.webhook_path,
                            stream_base=f"ws://127.0.0.1:{self.port}").run(max_duration_s)

    def wait_idle(self, timeout_s: float) -> dict:
        time.sleep(1.0)                        # no health endpoint: give its sockets a moment to close
        return {"active_calls": "?", "green_threads": "?"}


def diff(after: list[int], before: list[int]) -> list[int]:
    return [a - b for a, b in zip(after, before)]


def run_level(loop: LoopbackCall, pid: int, calls: int, rounds: int, spread_ms: int) -> dict:
    latencies: list[int] = []
    call_ms, speech_ms, utterances = 0, 0, 0
    failures: list[str] = []
    perf0 = perf(loop)
    appended0, committed0 = loop.realtime.counters.appended_ms, loop.realtime.counters.committed_ms
    billed0 = dict(loop.realtime.counters.usage)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for round_no in range(rounds):
        records: list = []
        lock = threading.Lock()

        def one(delay_s: float) -> None:
            time.sleep(delay_s)
            rec = loop.call(max_duration_s=120)
            with lock:
                records.append(rec)

        threads = [threading.Thread(target=one, args=(i * spread_ms / 1000 / max(1, calls),)) for i in range(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        health = loop.wait_idle(30)
        for rec in records:
            latencies += [v for v in rec.response_latencies_ms() if v is not None]
            call_ms += rec.duration_ms
            speech_ms += rec.speech_ms
            utterances += len(rec.speech_ends_ms)
            failures += rec.failures
        print(f"  {calls} calls, round {round_no + 1}/{rounds}: {len(latencies)} answers so far, "
              f"failures {len(failures)}, after: active={health['active_calls']} threads={health['green_threads']}",
              flush=True)
    cpu = cpu_seconds(pid) - cpu0
    wall = time.monotonic() - t0
    perf1 = perf(loop)
    rss_mb, peak_mb = memory_mb(pid)
    late = diff(perf1["tx_lateness_ms"], perf0["tx_lateness_ms"])
    eou = diff(perf1["eou_to_create_ms"], perf0["eou_to_create_ms"])
    appended_ms = loop.realtime.counters.appended_ms - appended0
    committed_ms = loop.realtime.counters.committed_ms - committed0
    billed = {k: v - billed0.get(k, 0) for k, v in loop.realtime.counters.usage.items()}
    model_usd = pricing.model_usd(billed, "gpt-realtime")        # the simulator's bill, at list prices
    return {
        "calls_at_once": calls, "rounds": rounds, "calls": calls * rounds, "utterances": utterances,
        "cpu_s_per_call_minute": round(cpu / (call_ms / 60000), 3) if call_ms else None,
        "worker_cpu_pct_of_core": round(100 * cpu / wall, 1),
        "tx_lateness_p50_ms": histogram_percentile(late, 50), "tx_lateness_p99_ms": histogram_percentile(late, 99),
        "tx_frames": sum(late),
        "eou_to_create_p50_ms": histogram_percentile(eou, 50), "eou_to_create_p95_ms": histogram_percentile(eou, 95),
        "latency_p50_ms": percentile(latencies, 50), "latency_p95_ms": percentile(latencies, 95),
        "input_audio_beyond_speech_ms_per_utterance":
            round((appended_ms - speech_ms) / utterances) if utterances else None,
        "committed_beyond_speech_ms_per_utterance":
            round((committed_ms - speech_ms) / utterances) if utterances else None,
        "input_audio_s": round(appended_ms / 1000, 1), "committed_audio_s": round(committed_ms / 1000, 1),
        "caller_speech_s": round(speech_ms / 1000, 1),
        "call_minutes": round(call_ms / 60000, 2), "server_cpu_s": round(cpu, 2), "wall_s": round(wall, 1),
        "worker_rss_mb": round(rss_mb, 1), "worker_peak_rss_mb": round(peak_mb, 1),
        "model_usd_per_call_minute": round(model_usd / (call_ms / 60000), 4) if call_ms else None,
        "model_tokens_billed": billed,
        "failures": failures[:10], "failure_count": len(failures),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="two_turns")
    parser.add_argument("--levels", default="1,30,60", help="calls at once, comma separated (each 1..80)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per level (1..3)")
    parser.add_argument("--spread-ms", type=int, default=3000, help="call starts spread over this long")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "call_bench.json"))
    parser.add_argument("--label", default="", help="a name for this run in the output (e.g. before/after)")
    parser.add_argument("--reference-cmd", default="", help="measure this application instead (see above)")
    parser.add_argument("--reference-webhook", default="/incoming-call", help="its webhook path")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls first (imports, caches)")
    args = parser.parse_args()
    try:
        levels = [int(v) for v in args.levels.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--levels {args.levels!r} must be integers separated by commas")
    if not levels or any(not 1 <= n <= MAX_CALLS for n in levels) or not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"each level must be 1..{MAX_CALLS} and --rounds 1..{MAX_ROUNDS}")
    sc = scenario_mod.load(args.scenario)
    results = []
    if args.reference_cmd:
        target = ReferenceServer(sc, args.reference_cmd, args.reference_webhook, ROOT / "runs" / "bench" / "reference.log")
    else:
        target = LoopbackCall(sc, ROOT / "runs" / "bench" / "server.log")
    with target as loop:
        pid = loop.server_pid()
        if pid is None:
            print("error: could not find the gunicorn worker process", file=sys.stderr)
            return 1
        idle_rss_mb, _ = memory_mb(pid)
        print(f"worker pid {pid}, idle RSS {idle_rss_mb:.1f} MB; scenario {sc.name}", flush=True)
        for _ in range(args.warmup):
            warm = loop.call(max_duration_s=120)
            print(f"warm-up call: {len(warm.response_latencies_ms())} answers, failures {warm.failures}", flush=True)
            loop.wait_idle(30)
        for calls in levels:
            print(f"level: {calls} calls at once", flush=True)
            results.append(run_level(loop, pid, calls, args.rounds, args.spread_ms))
        errors = dict(loop.realtime.counters.errors)
    keys = [k for k in results[0] if k != "failures"]
    table = ["| metric | " + " | ".join(f"{r['calls_at_once']} at once" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    table += [f"| {key} | " + " | ".join(str(r[key]) for r in results) + " |" for key in keys]
    print("\n" + "\n".join(table))
    out = {"label": args.label, "target": args.reference_cmd or "this server", "scenario": sc.name, "idle_rss_mb": round(idle_rss_mb, 1), "model_errors": errors,
           "levels": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(
        f"# {sc.name} calls on {out['target']}{f' ({args.label})' if args.label else ''}\n\n"
        f"Idle worker RSS {idle_rss_mb:.1f} MB; model errors {errors}.\n\n" + "\n".join(table) + "\n", encoding="utf-8")
    print(f"\nidle RSS {idle_rss_mb:.1f} MB; model errors {errors}\nwritten to {args.out} and its .md")
    return 0 if not any(r["failure_count"] for r in results) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
