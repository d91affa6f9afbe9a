#!/usr/bin/env python3
"""What the model bills for the same calls: this server against another application (Twilio's sample).

    .venv/bin/python scripts/bench_cost.py                                   # this server only
    .venv/bin/python scripts/bench_cost.py --reference-cmd "python ../twilio-sample/main.py"

For each scenario of ``--scenarios``, ``--calls`` calls (``--at-once`` at a time) on this server
(``gunicorn -k eventlet``, as deployed) and then, with ``--reference-cmd``, the same calls on the
other application, each against a fresh Realtime simulator. The simulator bills every response as
the service does (``sim.realtime_session``: the conversation re-read as input on every response,
the prompt cache on exact prefixes of 1024 tokens or more); its bill per session is one call's
tokens, priced at the list prices (``server.business.pricing``) of the model the session was opened
with (``?model=``), or of ``--model`` for both applications.

The reference application is started as in ``scripts/bench_call.py`` (``PORT``, ``OPENAI_API_KEY``,
``OPENAI_REALTIME_URL`` in its environment). With ``--reference-instructions ours`` it also gets
``SAMPLE_SYSTEM_MESSAGE``: the instructions this server sent in that scenario, so both read the
same prompt (the sample's own is four English sentences). Its code is not part of this repository.

Per scenario and application: the calls, the failures (the caller simulator's checks of the
scenario), the responses, the median and the 95 % interval (bootstrap of the mean) of USD per call,
USD per call minute (all calls' cost over all calls' minutes), what the replies abandoned unheard
cost per call (this server's own record of each call), the largest prompt any response read (the
session's ``truncation`` only acts near the model's context limit), and the tokens by kind. Then
the ratio of the mean cost per call, ours over the reference's, per scenario and across the
scenarios (median, and pooled: every scenario's mean summed), with 95 % intervals from resampling
the scenarios: within one scenario the simulated calls are alike, so the scenarios are what varies.
``--before FILE`` sets ours against an earlier result the same way; ``--from-json FILE`` reports a
saved result again. Prints the tables, writes ``--out`` (JSON) and its ``.md``. Bounded: at most 20
calls per scenario, each call at most 120 s.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_call import ReferenceServer  # noqa: E402
from server.business import pricing  # noqa: E402
from sim import scenario as scenario_mod  # noqa: E402
from sim.loopback import ROOT, LoopbackCall  # noqa: E402

MAX_CALLS = 20
DEFAULT_SCENARIOS = "two_turns,thinking_pauses,barge_in,backchannels,cafe_conversation,speakerphone_cafe,quiet_echo"


def bootstrap_mean_interval(values: list[float], rng: random.Random, rounds: int = 2000) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def ratio_interval(ours: list[float], theirs: list[float], rng: random.Random,
                   rounds: int = 2000) -> tuple[float, float]:
    ratios = sorted(statistics.fmean(rng.choices(ours, k=len(ours))) /
                    max(1e-12, statistics.fmean(rng.choices(theirs, k=len(theirs)))) for _ in range(rounds))
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


def run_calls(loop, calls: int, at_once: int, progress: str) -> tuple[list[int], list[str], list[str]]:
    """``calls`` calls, ``at_once`` at a time: each call's length (ms), the failures, the call sids."""
    durations: list[int] = []
    failures: list[str] = []
    sids: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        rec = loop.call(max_duration_s=120)
        with lock:
            durations.append(rec.duration_ms)
            failures.extend(rec.failures)
            sids.append(rec.call_sid)

    done = 0
    while done < calls:
        batch = [threading.Thread(target=one) for _ in range(min(at_once, calls - done))]
        for i, t in enumerate(batch):
            t.start()
            time.sleep(0.3 * (i < len(batch) - 1))       # starts a little apart, as real calls arrive
        for t in batch:
            t.join()
        done += len(batch)
        loop.wait_idle(30)
        print(f"  {progress}: {done}/{calls} calls, failures {len(failures)}", flush=True)
    return durations, failures, sids


def measure(loop, calls: int, at_once: int, model: str, progress: str) -> dict:
    durations, failures, sids = run_calls(loop, calls, at_once, progress)
    sessions = [dict(loop.realtime.counters.usage_by_session.get(s.session["id"], Counter()))
                for s in loop.realtime.sessions]
    models = [model or s.session.get("model", "gpt-realtime") for s in loop.realtime.sessions]
    usd = [pricing.model_usd(tokens, m) or 0.0 for tokens, m in zip(sessions, models)]
    tokens = Counter()
    for t in sessions:
        tokens.update(t)
    minutes = sum(durations) / 60000
    return {"calls": len(durations), "sessions": len(sessions), "failures": len(failures),
            "failure_examples": failures[:5], "call_minutes": round(minutes, 2),
            "usd_per_call": usd, "usd_total": round(sum(usd), 6),
            "usd_per_call_minute": round(sum(usd) / minutes, 4) if minutes else None,
            "tokens": dict(tokens), "responses": loop.realtime.counters.responses_created,
            "models": sorted(set(models)), "call_sids": sids,
            "largest_prompt_tokens": max((s.largest_prompt_tokens() for s in loop.realtime.sessions), default=0),
            "instructions": loop.realtime.sessions[0].session.get("instructions", "") if loop.realtime.sessions else ""}


def abandoned_usd(store, sids: list[str]) -> list[float | None]:
    """What each call's replies abandoned unheard cost, from the server's own record of the call."""
    out = []
    for sid in sids:
        usage = ((store.call_detail(sid) or {}).get("call") or {}).get("usage") or {}
        out.append((usage.get("cost") or {}).get("abandoned_usd"))
    return out


def summarise(name: str, side: dict, rng: random.Random) -> str:
    usd = side["usd_per_call"]
    low, high = bootstrap_mean_interval(usd, rng)
    median = statistics.median(usd) if usd else float("nan")
    abandoned = [a for a in side.get("abandoned_usd_per_call") or [] if a is not None]
    return (f"| {name} | {side['calls']} | {side['failures']} | {side['responses']} | {median:.4f} | "
            f"{statistics.fmean(usd) if usd else float('nan'):.4f} [{low:.4f}, {high:.4f}] | "
            f"{side['usd_per_call_minute']} | {f'{statistics.fmean(abandoned):.4f}' if abandoned else '—'} | "
            f"{side.get('largest_prompt_tokens', '—')} |")


def scenario_ratios(a: dict, b: dict, side_a: str, side_b: str) -> dict[str, float]:
    """Per scenario in both: mean USD per call of ``a[side_a]`` over ``b[side_b]``."""
    return {name: statistics.fmean(e[side_a]["usd_per_call"]) / statistics.fmean(b[name][side_b]["usd_per_call"])
            for name, e in a.items() if name in b and side_a in e and side_b in b[name]
            and e[side_a]["usd_per_call"] and b[name][side_b]["usd_per_call"]}


def ratio_rows(title: str, ratios: dict[str, float], a: dict, b: dict, side_a: str, side_b: str,
               rng: random.Random) -> list[str]:
    """One row per scenario, then across scenarios: the median ratio and the pooled one (every
    scenario's mean cost summed, ours over theirs), each with a 95 % interval from resampling the
    scenarios (within a scenario the simulated calls are alike; the scenarios are what varies)."""
    names = list(ratios)
    rows = [f"| scenario | {title} |", "|---|---|", *[f"| {n} | {ratios[n]:.3f} |" for n in names]]
    if len(names) >= 2:
        def pooled(sample: list[str]) -> float:
            return (sum(statistics.fmean(a[n][side_a]["usd_per_call"]) for n in sample) /
                    sum(statistics.fmean(b[n][side_b]["usd_per_call"]) for n in sample))
        draws = [rng.choices(names, k=len(names)) for _ in range(2000)]
        med = sorted(statistics.median(ratios[n] for n in d) for d in draws)
        pool = sorted(pooled(d) for d in draws)
        rows.append(f"| across the {len(names)} scenarios, median | {statistics.median(ratios.values()):.3f} "
                    f"[{med[50]:.3f}, {med[1949]:.3f}] |")
        rows.append(f"| across the {len(names)} scenarios, pooled (all calls' cost) | {pooled(names):.3f} "
                    f"[{pool[50]:.3f}, {pool[1949]:.3f}] |")
    return rows


def write_report(out: dict, path: str, before: str, rng: random.Random) -> None:
    results = out["scenarios"]
    lines = ["| scenario · application | calls | failures | responses | median USD/call | mean USD/call [95 %] "
             "| USD per call minute | abandoned replies, mean USD/call | largest prompt, tokens |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in results.items():
        if "ours" not in entry:
            continue
        lines.append(summarise(f"{name} · ours", entry["ours"], rng))
        if "reference" in entry:
            lines.append(summarise(f"{name} · reference", entry["reference"], rng))
    versus = scenario_ratios(results, results, "ours", "reference")
    if versus:
        lines += ["", *ratio_rows("ours / reference, mean USD per call", versus, results, results, "ours",
                                  "reference", rng)]
    if before:
        earlier = json.loads(Path(before).read_text(encoding="utf-8"))["scenarios"]
        change = scenario_ratios(results, earlier, "ours", "ours")
        lines += ["", f"Against `{Path(before).name}`:", "",
                  *ratio_rows("ours now / ours then, mean USD per call", change, results, earlier, "ours", "ours", rng)]
    table = "\n".join(lines)
    print("\n" + table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    label = f" ({out['label']})" if out["label"] else ""
    reference = (f"; reference: {out['reference']} (instructions: {out['reference_instructions']})"
                 if out["reference"] else "")
    profile = f"; profile: {', '.join(out['profile_lines'])}" if out["profile_lines"] else ""
    Path(path).with_suffix(".md").write_text(
        f"# Model cost of the same calls{label}\n\nBilled by the Realtime simulator, priced at "
        f"{out['model_prices'] or 'each session model'}'s list prices; {out['calls_per_scenario']} calls per scenario and application"
        f"{reference}{profile}.\n\n{table}\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help="comma separated")
    parser.add_argument("--calls", type=int, default=8, help=f"calls per scenario and application (1..{MAX_CALLS})")
    parser.add_argument("--at-once", type=int, default=4, help="calls at a time (1..10)")
    parser.add_argument("--model", default="", help="whose list prices bill both applications "
                                                     "(default: each session's own model, as the service bills)")
    parser.add_argument("--profile-line", action="append", default=[],
                        help="a TOML line added to the business's profile on this server (e.g. model = \"gpt-realtime-mini\")")
    parser.add_argument("--reference-cmd", default="", help="the other application (see above)")
    parser.add_argument("--reference-webhook", default="/incoming-call")
    parser.add_argument("--reference-instructions", choices=("sample", "ours"), default="ours")
    parser.add_argument("--seed", type=int, default=1, help="the bootstrap's random draws")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cost_bench.json"))
    parser.add_argument("--before", default="", help="an earlier result file: ours now against ours then")
    parser.add_argument("--from-json", default="", help="report a saved result file again (no calls)")
    args = parser.parse_args()
    for given in (args.before, args.from_json):
        if given and not Path(given).is_file():
            parser.error(f"no result file {given}")
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        write_report(saved, args.out if args.out != parser.get_default("out") else args.from_json, args.before,
                     random.Random(args.seed))
        return 0
    if not 1 <= args.calls <= MAX_CALLS or not 1 <= args.at_once <= 10:
        parser.error(f"--calls must be 1..{MAX_CALLS} and --at-once 1..10")
    if args.model and pricing.model_usd({}, args.model) is None:
        parser.error(f"--model {args.model!r} has no price (known: {', '.join(pricing.PRICES)})")
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    scenarios = [scenario_mod.load(n) for n in names]      # an unknown name fails here, before any call
    rng = random.Random(args.seed)
    results: dict = {}
    for sc in scenarios:
        entry: dict = {}
        with LoopbackCall(sc, ROOT / "runs" / "bench" / f"cost_{sc.name}.log",
                          profile_lines=tuple(args.profile_line)) as loop:
            entry["ours"] = measure(loop, args.calls, args.at_once, args.model, f"{sc.name}, this server")
        entry["ours"]["abandoned_usd_per_call"] = abandoned_usd(loop.store(), entry["ours"].pop("call_sids"))
        if args.reference_cmd:
            saved = os.environ.get("SAMPLE_SYSTEM_MESSAGE")
            if args.reference_instructions == "ours":
                os.environ["SAMPLE_SYSTEM_MESSAGE"] = entry["ours"]["instructions"]
            try:
                with ReferenceServer(sc, args.reference_cmd, args.reference_webhook,
                                     ROOT / "runs" / "bench" / f"cost_{sc.name}_reference.log") as loop:
                    entry["reference"] = measure(loop, args.calls, args.at_once, args.model,
                                                 f"{sc.name}, reference")
            finally:
                if saved is None:
                    os.environ.pop("SAMPLE_SYSTEM_MESSAGE", None)
                else:
                    os.environ["SAMPLE_SYSTEM_MESSAGE"] = saved
            ours, theirs = entry["ours"]["usd_per_call"], entry["reference"]["usd_per_call"]
            if ours and theirs:
                low, high = ratio_interval(ours, theirs, rng)
                entry["ratio_mean_usd_per_call"] = round(statistics.fmean(ours) / statistics.fmean(theirs), 3)
                entry["ratio_interval"] = [round(low, 3), round(high, 3)]
        results[sc.name] = entry
    out = {"label": args.label, "model_prices": args.model or "each session's model", "reference": args.reference_cmd or None,
           "reference_instructions": args.reference_instructions if args.reference_cmd else None,
           "profile_lines": args.profile_line, "calls_per_scenario": args.calls, "scenarios": results}
    for entry in results.values():
        for side in ("ours", "reference"):
            if side in entry:
                entry[side].pop("instructions", None)
    write_report(out, args.out, args.before, rng)
    print(f"\nwritten to {args.out} and its .md")
    failed = sum(e[s]["failures"] for e in results.values() for s in ("ours", "reference") if s in e)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
