#!/usr/bin/env python3
"""Render the simulators' speech clips with espeak-ng + sox into 8 kHz µ-law (committed).

Run only when the clip list changes: ``python scripts/render_clips.py`` (all) or
``python scripts/render_clips.py --only NAME ...`` (just those, the others stay as committed). Tests and the demo read
the committed ``sim/clips/*.ulaw`` and ``sim/clips/clips.json`` and never need espeak-ng or sox.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CLIPS_DIR = Path(__file__).resolve().parent.parent / "sim" / "clips"

# name: (espeak voice, text). "caller_*" are what the simulated caller says, "ai_*" what the
# simulated model answers. The caller uses a male voice, the AI a female variant, so a listener
# (and the echo tests) can tell them apart.
CLIPS = {
    "caller_service": ("he+m3", "אני צריך התקנת מנעול חכם"),
    "caller_city": ("he+m3", "בתל אביב"),
    "caller_yes": ("he+m3", "כן"),
    "caller_hello_en": ("en+m3", "Hello, I would like to book a smart lock installation please"),
    "caller_name": ("he+m1", "קוראים לי דני כהן"),
    "caller_when": ("he+f2", "אפשר מחר בבוקר בסביבות תשע"),
    "caller_problem": ("he+m3", "הדלת לא ננעלת והמפתח נתקע"),
    "caller_en_door": ("en+f2", "My front door will not lock"),
    "caller_en_time": ("en+m1", "Tomorrow afternoon works for me"),
    "caller_ok": ("he+f2", "בסדר"),
    "ai_greeting": ("he+f3", "שלום, הגעתם לעוזר הווירטואלי של העסק. במה אפשר לעזור?"),
    "ai_ask_city": ("he+f3", "בשמחה. באיזו עיר אתם נמצאים?"),
    "ai_confirm": ("he+f3", "מצוין, התקנת מנעול חכם בתל אביב. נכון?"),
    "ai_goodbye": ("he+f3", "תודה רבה, נציג יחזור אליכם בהקדם. להתראות!"),
    "ai_fallback": ("he+f3", "סליחה, לא שמעתי טוב. תוכלו לחזור על זה?"),
    "ai_still_there": ("he+f3", "אתם עדיין על הקו?"),
    "caller_ask_person": ("he+m3", "אפשר לדבר עם בן אדם?"),
    "ai_transferring": ("he+f3", "בשמחה, אני מעבירה אתכם לנציג. רגע אחד."),
    "ai_no_one_now": ("he+f3", "כרגע אין נציג זמין. אשמח לרשום את הפרטים ונחזור אליכם."),
    "caller_locksmith_tomorrow": ("he+m3", "אני צריך מנעולן למחר בבוקר"),
    "ai_offer_times": ("he+f3", "יש לנו מחר, יום רביעי, בשמונה, בתשע או בעשר בבוקר. מה מתאים לך?"),
    "caller_first_time": ("he+m3", "בשמונה בבקשה, אני דני מרמת גן"),
    "ai_visit_booked": ("he+f3", "רשמתי. מחר, יום רביעי, בשמונה בבוקר. להתראות!"),
}


def render(name: str, voice: str, text: str, workdir: Path) -> dict:
    wav = workdir / f"{name}.wav"
    out = CLIPS_DIR / f"{name}.ulaw"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
    # -D: no dither, so a re-render gives the same bytes
    subprocess.run(["sox", "-D", str(wav), "-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw", str(out),
                    "norm", "-3"], check=True)
    return {"voice": voice, "text": text, "duration_ms": out.stat().st_size // 8}


def main() -> int:
    only = set(sys.argv[sys.argv.index("--only") + 1:]) if "--only" in sys.argv else None
    if only and not only <= set(CLIPS):
        print(f"error: unknown clip(s) {sorted(only - set(CLIPS))}", file=sys.stderr)
        return 2
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"error: {', '.join(missing)} not found (Debian: apt-get install espeak-ng sox)", file=sys.stderr)
        return 2
    CLIPS_DIR.mkdir(parents=True, exist_ok=True)
    index_path = CLIPS_DIR / "clips.json"
    index = json.loads(index_path.read_text(encoding="utf-8")) if only and index_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (voice, text) in CLIPS.items():
            if only and name not in only:
                continue
            index[name] = render(name, voice, text, Path(tmp))
            print(f"{name:18s} {index[name]['duration_ms']:5d} ms  {text}")
    index = {name: index[name] for name in CLIPS if name in index}
    index_path.write_text(json.dumps(index, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
