#!/usr/bin/env python3
"""Benchmark: does a call keep its pacing while someone POSTs 300 MB bodies at the server?

    .venv/bin/python scripts/bench_big_body.py --tree before=/tmp/before-413 --tree after=. --runs 3

For each tree (a checkout of this repository: ``git worktree add /tmp/before-413 <commit>`` gives
an older one) and each run, one server exactly as deployed (``gunicorn -k eventlet -w 1``, started
by ``sim.loopback.LoopbackCall`` from that tree) and the simulators; after a warm-up call, two
phases of one ``--scenario`` call each:

* ``quiet``: the call alone, with a ``/healthz`` probe every 100 ms (a new connection each time,
  as a load balancer's health check does).
* ``big_posts``: the same, while another thread sends ``--posts`` unsigned POSTs announcing
  ``--post-mb`` MB each, streamed from a generator in 256 KiB pieces, to the webhook (with
  ``Content-Length`` and chunked), the stream-ended webhook and ``/healthz``; one starts every
  ``--post-gap-s`` while the call lasts, each bounded by ``--post-timeout-s``.

Per phase: the call's outbound pacing lateness p50/p99/max and how many frames went out a frame
(20 ms) or more late (the server's own histogram, ``/healthz?perf=1``, read before and after the
phase as ``scripts/bench_call.py`` does; its top bucket, 250, holds everything later); the
``clear`` messages the caller got (a stalled worker can take the delay of its own audio for a
barge-in); the ``/healthz`` round trip p50/p99/max over the phase, and its max among the probes
sent beside a POST (while it was in flight or in the first second after it began); what the POSTs
got (status or error, MB the client managed to send, seconds); the worker's peak RSS; whether the
call had failures. Prints each run, then the medians over the runs per tree and phase; writes
``bench/results/big_body.json`` and ``.md`` (or ``--out``).

Runs alternate between the trees so that a busy moment of the machine does not land on one tree
only. Bounded: at most 5 runs, 12 POSTs per phase, 1024 MB per POST.
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sim.loopback as loopback  # noqa: E402
from scripts.bench_call import histogram_percentile, memory_mb, percentile  # noqa: E402
from sim import scenario as scenario_mod  # noqa: E402

ROOT = loopback.ROOT
MAX_RUNS, MAX_POSTS, MAX_POST_MB = 5, 12, 1024
PIECE_BYTES = 256 * 1024
PROBE_EVERY_S = 0.1
BESIDE_S = 1.0          # a probe is "beside a POST" while it is in flight, and in the first second after it began
# (path, chunked): the webhook both ways, the stream-ended webhook, and a GET-only route (405 before).
TARGETS = [("/webhook/incoming_call", False), ("/webhook/incoming_call", True),
           ("/webhook/stream_ended", False), ("/healthz", False)]


def body_pieces(total_bytes: int):
    """The body, streamed: ``total_bytes`` of form-ish bytes in pieces, never held whole."""
    block = b"a" * PIECE_BYTES
    sent = 0
    while sent < total_bytes:
        n = min(PIECE_BYTES, total_bytes - sent)
        yield block[:n]
        sent += n


def big_post(port: int, path: str, chunked: bool, total_bytes: int, timeout_s: float) -> dict:
    """One unsigned POST of ``total_bytes`` (announced, or chunked), then its answer's status line."""
    t0 = time.monotonic()
    sent, status, error = 0, None, None
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total_bytes}"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"{framing}\r\n\r\n").encode("ascii")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(head)
            for piece in body_pieces(total_bytes):
                if time.monotonic() - t0 > timeout_s:
                    error = "time bound"
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(4096)
            status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else None
    except OSError as exc:
        error = type(exc).__name__
    return {"path": path, "chunked": chunked, "status": status, "error": error,
            "sent_mb": round(sent / 1e6, 1), "seconds": round(time.monotonic() - t0, 3), "t0": t0,
            "t1": time.monotonic()}


class Prober(threading.Thread):
    """GET /healthz every 100 ms on a new connection: (start, round trip ms) per probe."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=10) as resp:
                    resp.read()
                self.samples.append((t0, (time.monotonic() - t0) * 1000))
            except OSError:
                self.samples.append((t0, float("nan")))
            self.stop.wait(PROBE_EVERY_S)


class Poster(threading.Thread):
    """The big POSTs of one phase, one every ``gap_s`` (or after the previous one), until the call ends."""

    def __init__(self, port: int, posts: int, total_bytes: int, gap_s: float, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.posts, self.total_bytes, self.gap_s, self.timeout_s = port, posts, total_bytes, gap_s, timeout_s
        self.results: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.posts):
            if self.stop.wait(max(0.0, start + 1.0 + i * self.gap_s - time.monotonic())):
                return
            path, chunked = TARGETS[i % len(TARGETS)]
            self.results.append(big_post(self.port, path, chunked, self.total_bytes, self.timeout_s))


def perf(loop) -> dict:
    with urllib.request.urlopen(f"{loop.base_url}/healthz?perf=1", timeout=30) as resp:
        return json.loads(resp.read())["perf"]


def phase(loop, pid: int, args, with_posts: bool) -> dict:
    perf0 = perf(loop)
    prober = Prober(loop.base_url)
    poster = Poster(loop.port, args.posts, args.post_mb * 1_000_000, args.post_gap_s, args.post_timeout_s)
    prober.start()
    if with_posts:
        poster.start()
    record = loop.call(max_duration_s=120)
    poster.stop.set()
    if with_posts:
        poster.join(args.post_timeout_s + 15)
    prober.stop.set()
    prober.join(15)
    loop.wait_idle(30)
    late = [a - b for a, b in zip(perf(loop)["tx_lateness_ms"], perf0["tx_lateness_ms"])]
    rtts = [ms for _, ms in prober.samples if ms == ms]
    beside = [ms for t, ms in prober.samples
              if ms == ms and any(p["t0"] <= t <= max(p["t1"], p["t0"] + BESIDE_S) for p in poster.results)]
    return {
        "tx_lateness_p50_ms": histogram_percentile(late, 50), "tx_lateness_p99_ms": histogram_percentile(late, 99),
        "tx_lateness_max_ms": max((ms for ms, n in enumerate(late) if n), default=None),
        "tx_frames": sum(late), "tx_frames_20ms_late_or_more": sum(late[20:]),
        "clears_at_caller": record.clears,
        "healthz_p50_ms": round(percentile(rtts, 50), 1) if rtts else None,
        "healthz_p99_ms": round(percentile(rtts, 99), 1) if rtts else None,
        "healthz_max_ms": round(max(rtts), 1) if rtts else None,
        "healthz_max_beside_post_ms": round(max(beside), 1) if beside else None,
        "healthz_probes": len(prober.samples), "healthz_failed": sum(1 for _, ms in prober.samples if ms != ms),
        "posts": [{k: v for k, v in p.items() if k not in ("t0", "t1")} for p in poster.results],
        "worker_peak_rss_mb": round(memory_mb(pid)[1], 1),
        "call_failures": record.failures[:5],
    }


def one_run(label: str, tree: Path, run_no: int, args, scenario) -> dict:
    log_path = ROOT / "runs" / "bench_big_body" / f"{label}-{run_no}.log"
    loopback.ROOT = tree          # LoopbackCall starts gunicorn in ROOT: this tree's server.app
    try:
        with loopback.LoopbackCall(scenario, log_path) as loop:
            pid = loop.server_pid()
            if pid is None:
                raise RuntimeError("could not find the gunicorn worker process")
            warm = loop.call(max_duration_s=120)
            loop.wait_idle(30)
            result = {"tree": label, "run": run_no, "warmup_failures": warm.failures[:5],
                      "quiet": phase(loop, pid, args, with_posts=False),
                      "big_posts": phase(loop, pid, args, with_posts=True)}
            result["server_alive"] = loop.server.poll() is None and loop.server_pid() == pid
    finally:
        loopback.ROOT = ROOT
    return result


SUMMARY_KEYS = ["tx_lateness_p50_ms", "tx_lateness_p99_ms", "tx_lateness_max_ms", "tx_frames",
                "tx_frames_20ms_late_or_more", "clears_at_caller", "healthz_p50_ms", "healthz_p99_ms", "healthz_max_ms",
                "healthz_max_beside_post_ms", "worker_peak_rss_mb"]


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def summarise(runs: list[dict], labels: list[str]) -> dict:
    summary: dict = {}
    for label in labels:
        mine = [r for r in runs if r["tree"] == label]
        summary[label] = {}
        for name in ("quiet", "big_posts"):
            summary[label][name] = {key: median_or_none([r[name][key] for r in mine]) for key in SUMMARY_KEYS}
        posts = [p for r in mine for p in r["big_posts"]["posts"]]
        summary[label]["big_posts"]["post_outcomes"] = sorted({f"{p['status'] or p['error']}" for p in posts})
        summary[label]["big_posts"]["post_seconds_median"] = median_or_none([p["seconds"] for p in posts])
        summary[label]["big_posts"]["post_sent_mb_median"] = median_or_none([p["sent_mb"] for p in posts])
        summary[label]["call_failures"] = sum(len(r[p]["call_failures"]) for r in mine for p in ("quiet", "big_posts"))
        summary[label]["server_alive_every_run"] = all(r["server_alive"] for r in mine)
    return summary


def describe_tree(tree: Path) -> str:
    """Which code a tree holds: its commit, and whether files differ from it (read-only git)."""
    try:
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "-C", str(tree), "diff-index", "--quiet", "HEAD", "--"],
                                 capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return f"{commit or '?'}{' + local changes' if changed else ''}"


def markdown(summary: dict, config: dict) -> str:
    cols = [(label, name) for label in summary for name in ("quiet", "big_posts")]
    rows = [f"# One call beside {config['posts']} unsigned {config['post_mb']} MB POSTs per phase "
            f"(medians of {config['runs']} runs)", "",
            f"Scenario `{config['scenario']}`, one call per phase; `gunicorn -k eventlet -w 1`; trees: "
            + ", ".join(f"{label} = `{tree['path']}` ({tree['code']})" for label, tree in config["trees"].items())
            + "." + (f" {config['note']}" if config.get("note") else ""), "",
            "| metric | " + " | ".join(f"{label}, {name}" for label, name in cols) + " |",
            "|---|" + "---|" * len(cols)]
    keys = SUMMARY_KEYS + ["post_outcomes", "post_seconds_median", "post_sent_mb_median"]
    for key in keys:
        cells = [summary[label][name].get(key, "") for label, name in cols]
        cells = ["" if c is None else ", ".join(c) if isinstance(c, list) else str(c) for c in cells]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    rows += ["", "Pacing lateness is the server's histogram, whose top bucket 250 holds every frame 250 ms or "
             "more late; `clears_at_caller`: playout cut at the caller (barge-ins).", ""]
    rows += [f"- {label}: call failures {summary[label]['call_failures']}, server alive after every run: "
             f"{summary[label]['server_alive_every_run']}" for label in summary]
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkout to measure (repeatable); default: after=<this repository>")
    parser.add_argument("--runs", type=int, default=3, help=f"runs per tree (1..{MAX_RUNS})")
    parser.add_argument("--scenario", default="two_turns")
    parser.add_argument("--posts", type=int, default=6, help=f"big POSTs per phase (1..{MAX_POSTS})")
    parser.add_argument("--post-mb", type=int, default=300, help=f"MB per POST (1..{MAX_POST_MB})")
    parser.add_argument("--post-gap-s", type=float, default=2.0, help="one POST starts every this many seconds")
    parser.add_argument("--post-timeout-s", type=float, default=30.0, help="longest one POST may take")
    parser.add_argument("--note", default="", help="a sentence for the report (what the trees hold)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "big_body.json"))
    args = parser.parse_args()
    if not 1 <= args.runs <= MAX_RUNS or not 1 <= args.posts <= MAX_POSTS or not 1 <= args.post_mb <= MAX_POST_MB:
        parser.error(f"--runs 1..{MAX_RUNS}, --posts 1..{MAX_POSTS}, --post-mb 1..{MAX_POST_MB}")
    trees: dict[str, Path] = {}
    for spec in args.tree or [f"after={ROOT}"]:
        label, _, path = spec.partition("=")
        tree = Path(path).resolve()
        if not label or not (tree / "server" / "app.py").is_file():
            parser.error(f"--tree {spec!r}: expected LABEL=PATH of a checkout of this repository")
        trees[label] = tree
    scenario = scenario_mod.load(args.scenario)
    runs = []
    for run_no in range(1, args.runs + 1):
        for label, tree in trees.items():
            print(f"run {run_no}/{args.runs}, {label} ({tree}) ...", flush=True)
            result = one_run(label, tree, run_no, args, scenario)
            runs.append(result)
            for name in ("quiet", "big_posts"):
                r = result[name]
                outcomes = ", ".join(f"{p['path']}{' chunked' if p['chunked'] else ''}: {p['status'] or p['error']} "
                                     f"after {p['sent_mb']} MB in {p['seconds']} s" for p in r["posts"])
                print(f"  {name:9s} pacing lateness p50/p99/max {r['tx_lateness_p50_ms']}/{r['tx_lateness_p99_ms']}/"
                      f"{r['tx_lateness_max_ms']} ms ({r['tx_frames']} frames, {r['tx_frames_20ms_late_or_more']} "
                      f">= 20 ms late; {r['clears_at_caller']} clears); /healthz p50/p99/max "
                      f"{r['healthz_p50_ms']}/{r['healthz_p99_ms']}/{r['healthz_max_ms']} ms, max beside a POST {r['healthz_max_beside_post_ms']} ms; "
                      f"peak RSS {r['worker_peak_rss_mb']} MB; call failures {r['call_failures']}", flush=True)
                if outcomes:
                    print(f"            POSTs: {outcomes}", flush=True)
    config = {"scenario": scenario.name, "runs": args.runs, "posts": args.posts, "post_mb": args.post_mb,
              "note": args.note, "post_gap_s": args.post_gap_s, "post_timeout_s": args.post_timeout_s,
              "trees": {label: {"path": str(tree), "code": describe_tree(tree)} for label, tree in trees.items()}}
    summary = summarise(runs, list(trees))
    table = markdown(summary, config)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": config, "summary": summary, "runs": runs}, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(f"written to {out} and its .md")
    return 0 if all(summary[label]["call_failures"] == 0 for label in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
