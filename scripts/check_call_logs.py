#!/usr/bin/env python3
"""Check a server log against the call behaviour contract: per call, per criterion PASS/FAIL.

    scripts/check_call_logs.py server.log
    scripts/check_call_logs.py server.log --expect barge_in

Exit status 0 when every criterion passed, 1 when one failed, 2 on bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.log_check import EXPECTATIONS, check  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logfile")
    parser.add_argument("--expect", choices=EXPECTATIONS, help="also check the criteria of one acceptance call")
    args = parser.parse_args()
    try:
        text = Path(args.logfile).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"error: cannot read {args.logfile}: {exc.strerror}", file=sys.stderr)
        return 2
    results = check(text, args.expect)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.call[:12]}…  {r.name}" + (f": {r.detail}" if r.detail else ""))
    failed = sum(not r.passed for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
