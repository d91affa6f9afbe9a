"""The admin pages as HTML: sign-in form, calls and leads, one call. Pure functions of store data.

Every value is HTML-escaped (names, notes and transcripts come from callers and the model); the
pages are UTF-8 and left-to-right, with ``dir="auto"`` on transcript lines so a Hebrew line reads
right-to-left. No script anywhere: the server sends a Content-Security-Policy without
``script-src``. The call's timeline is an ``<img>`` of ``timeline.svg`` (an SVG in an image runs
nothing and loads nothing), linked to itself at full size, where its tooltips show every label.
"""
from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

KNOWN_OUTCOMES = ("in_progress", "lead_captured", "partial_lead", "no_lead", "failed")
ROLE_NAMES = {"user": "caller", "assistant": "AI"}
LANE_HELP = ("<p class=help><b>caller</b>: speech the server's VAD heard, ends of utterance, barge-ins and "
             "backchannels. <b>gate</b>: caller audio forwarded to the model, audio held back in the echo "
             "window, replies held until the caller is quiet. <b>model</b>: <code>response.create</code>, "
             "each response from created to done, tool calls, errors, silence prompts. <b>AI playout</b>: "
             "the AI's audio as played to the caller, and marks. A line across every lane is an event of "
             "the whole call (hangup, link lost). Under the lanes: the end of the caller's utterance to the "
             "first AI audio heard, in ms (a dot marks <code>response.create</code>).</p>")
STYLE = ("body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}h1{font-size:1.4em;overflow-wrap:anywhere}"
         "h2{font-size:1.15em;margin-top:1.5em}"
         "td,th{border:1px solid #ccc;padding:2px 6px;text-align:start;vertical-align:top}"
         "table{border-collapse:collapse;margin-bottom:1.5em}nav{margin:.5em 0}"
         ".timeline{overflow-x:auto;border:1px solid #ddd;margin-bottom:.5em}.timeline img{display:block}"
         ".error{color:#b00020}.help{max-width:60em;color:#444;font-size:90%}header{display:flex;gap:1em;"
         "align-items:baseline}header form{margin-left:auto}")


def _e(value) -> str:
    return escape("" if value is None else str(value), quote=True)


def call_url(call_sid: str) -> str:
    return "/admin/calls/" + quote(call_sid, safe="")


def _doc(title: str, body: str, signed_in: bool = True) -> str:
    logout = ('<form method=post action="/admin/logout"><button type=submit>sign out</button></form>'
              if signed_in else "")
    return (f'<!doctype html><html lang=en dir=ltr><head><meta charset=utf-8><title>{_e(title)}</title>'
            f'<meta name=viewport content="width=device-width"><style>{STYLE}</style></head>'
            f'<body><header><b>ProSaaS admin</b>{logout}</header>{body}</body></html>')


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def login_page(error: str = "", next_path: str = "/admin") -> str:
    message = f'<p class=error role=alert>{_e(error)}</p>' if error else ""
    return _doc("ProSaaS admin: sign in", (
        f"<h1>Sign in</h1>{message}"
        '<form method=post action="/admin/login">'
        '<label>Admin token <input type=password name=token autocomplete=current-password required autofocus></label> '
        f'<input type=hidden name=next value="{_e(next_path)}">'
        '<button type=submit>sign in</button></form>'
        "<p class=help>Scripts send <code>Authorization: Bearer &lt;token&gt;</code> instead.</p>"), signed_in=False)


def _options(choices: list[tuple[str, str]], selected: str) -> str:
    return "".join(f'<option value="{_e(v)}"{" selected" if v == selected else ""}>{_e(text)}</option>'
                   for v, text in choices)


def index_page(calls: list[dict], total: int, page: int, page_size: int, business_id: int | None,
               outcome: str | None, businesses: list[dict], outcomes: list[str], leads: list[dict],
               waiting: tuple[int, float] = (0, 0.0)) -> str:
    """Calls (filtered, one page of them) and the most recent leads; ``waiting``: (writes, age of the
    oldest in s) this worker holds for the database (shown when there are any)."""
    business_choices = [("", "all businesses")] + [
        (str(b["id"]), f"{b['name']} ({b['number']}){'' if b['active'] else ' - inactive'}") for b in businesses]
    outcome_choices = [("", "all outcomes")] + [(o, o) for o in outcomes]
    filters = ('<form method=get action="/admin" class=filters>'
               f'<label>business <select name=business>{_options(business_choices, str(business_id or ""))}</select></label> '
               f'<label>outcome <select name=outcome>{_options(outcome_choices, outcome or "")}</select></label> '
               '<button type=submit>filter</button></form>')
    pages = max(1, -(-total // page_size))
    first = (page - 1) * page_size + 1 if calls else 0
    shown = f"calls {first}–{first + len(calls) - 1 if calls else 0} of {total}"
    params = {k: v for k, v in (("business", business_id), ("outcome", outcome)) if v not in (None, "")}
    prev_link = (f'<a rel=prev href="/admin?{_e(urlencode({**params, "page": page - 1}))}">previous</a>'
                 if page > 1 else "<span>previous</span>")
    next_link = (f'<a rel=next href="/admin?{_e(urlencode({**params, "page": page + 1}))}">next</a>'
                 if page < pages else "<span>next</span>")
    columns = ["started_at", "business", "caller", "outcome", "hangup_reason", "turns", "latency_median_ms", "cost_usd"]
    rows = "".join(
        f'<tr><td><a class=call-link href="{_e(call_url(c["call_sid"]))}">{_e(c["call_sid"])}</a></td>'
        + "".join(f"<td>{_e(_usd(c.get(col)) if col == 'cost_usd' else c.get(col))}</td>" for col in columns)
        + "</tr>" for c in calls)
    table = (f'<table id=calls><tr><th>call</th>{"".join(f"<th>{_e(c)}</th>" for c in columns)}</tr>{rows}</table>'
             if calls else "<p>No calls match.</p>")
    pending = ""
    if waiting[0]:
        pending = (f"<p id=records-waiting class=warning>{waiting[0]} write(s) of calls (starts, leads, ends) are "
                   f"waiting for the database, the oldest for {waiting[1]:.0f} s: they are kept and stored as soon as "
                   "it takes them; the calls below may be missing them until then.</p>")
    return _doc("ProSaaS calls and leads", (
        f"<h1>Calls</h1>{pending}{filters}<p><a href=\"/admin/costs\">What the calls cost, per business and day</a></p>"
        f"<p id=paging>{_e(shown)} · page {page} of {pages} · {prev_link} · {next_link}</p>"
        f"{table}<h1>Recent leads</h1>{_leads_table(leads)}"))


def _leads_table(leads: list[dict]) -> str:
    columns = ["created_at", "business", "status", "service", "city", "name", "phone", "missing", "delivery"]
    rows = []
    for lead in leads:
        cells = dict(lead, missing=", ".join(lead["missing"]) or "-",
                     delivery=", ".join(f"{d['status']}×{d['attempts']}" for d in lead["deliveries"]) or "-")
        rows.append(f'<tr><td><a href="{_e(call_url(lead["call_sid"]))}">{_e(lead["call_sid"])}</a></td>'
                    + "".join(f"<td>{_e(cells.get(c))}</td>" for c in columns) + "</tr>")
    head = "".join(f"<th>{_e(c)}</th>" for c in ["call"] + columns)
    return f"<table id=leads><tr>{head}</tr>{''.join(rows)}</table>" if leads else "<p>No leads yet.</p>"


def _duration(call: dict, timeline: dict | None) -> str:
    if isinstance(timeline, dict) and isinstance(timeline.get("duration_ms"), int):
        return f"{timeline['duration_ms'] / 1000:.1f} s"
    if call.get("started_at") and call.get("ended_at"):
        start = datetime.fromisoformat(call["started_at"].rstrip("Z"))
        end = datetime.fromisoformat(call["ended_at"].rstrip("Z"))
        return f"{(end - start).total_seconds():.0f} s"
    return "-"


def _figures(call: dict, timeline: dict | None) -> str:
    latencies = ", ".join(str(x) for x in call.get("latencies_ms") or []) or "-"
    rows = [("business", call.get("business")), ("called number", call.get("called_number")),
            ("caller", call.get("caller")), ("started (UTC)", call.get("started_at")),
            ("ended (UTC)", call.get("ended_at")), ("duration", _duration(call, timeline)),
            ("outcome", call.get("outcome")), ("hangup reason", call.get("hangup_reason")),
            ("turns", call.get("turns")), ("responses", call.get("responses")),
            ("barge-ins", call.get("barge_ins")),
            ("reply latency median / max (ms)", f"{call.get('latency_median_ms') or '-'} / {call.get('latency_max_ms') or '-'}"),
            ("reply latencies (ms)", latencies)]
    return "<table id=figures>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _transcript(lines: list) -> str:
    rows = "".join(f'<tr><th>{_e(ROLE_NAMES.get(line[0], line[0]))}</th><td dir="auto">{_e(line[1])}</td></tr>'
                   for line in lines if isinstance(line, (list, tuple)) and len(line) == 2)
    return f"<table id=transcript>{rows}</table>" if rows else "<p>No transcript.</p>"


def _lead(lead: dict | None) -> str:
    if lead is None:
        return "<p>No lead was captured on this call.</p>"
    fields = [("status", lead["status"]), ("service", lead["service"]), ("city", lead["city"]),
              ("city served", lead["city_served"]), ("name", lead["name"]), ("phone", lead["phone"]),
              ("notes", lead["notes"]), ("missing", ", ".join(lead["missing"]) or "-"),
              ("sources", ", ".join(f"{k}: {v}" for k, v in sorted(lead["sources"].items())) or "-"),
              ("visit", _visit(lead.get("visit"))), ("created (UTC)", lead["created_at"])]
    table = "<table id=lead>" + "".join(f'<tr><th>{_e(k)}</th><td dir="auto">{_e(v)}</td></tr>'
                                        for k, v in fields) + "</table>"
    deliveries = (_table(lead["deliveries"], ["delivery_id", "status", "attempts", "last_error", "delivered_at"])
                  if lead["deliveries"] else "<p>No delivery queued (the business has no CRM webhook).</p>")
    return f"{table}<h3>Deliveries</h3>{deliveries}"


def call_page(detail: dict) -> str:
    call = detail["call"]
    svg_url = call_url(call["call_sid"]) + "/timeline.svg"
    picture = (f'<div class=timeline><a href="{_e(svg_url)}">'
               f'<img id=timeline src="{_e(svg_url)}" alt="timeline of the call"></a></div>')
    if detail["timeline"] is None:
        picture += "<p>No timeline was recorded for this call.</p>"
    recording = ""
    if call.get("summary"):
        recording += f'<h2>Summary for the owner</h2><p id=summary dir=auto style="white-space:pre-line">{_e(call["summary"])}</p>'
    if call.get("recording_error"):
        recording += ("<h2>Recording</h2><p id=recording-failed class=warning>The caller was told the call is "
                      f"recorded, but the recording could not be written: {_e(call['recording_error'])}</p>")
    if call.get("recording"):
        wav_url = call_url(call["call_sid"]) + "/recording.wav"
        recording += (f'<h2>Recording</h2><p><a id=recording href="{_e(wav_url)}">download the recording</a> '
                     "(stereo WAV: the caller left, the AI as played right)</p>")
    transfer = call.get("transfer")
    if transfer:
        transfer_html = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted(transfer.items()))
        recording += f"<h2>Transfer to a person</h2><p id=transfer>{transfer_html}</p>"
    return _doc(f"Call {call['call_sid']}", (
        f'<nav><a href="/admin">all calls</a></nav><h1>Call {_e(call["call_sid"])}</h1>'
        f"{_figures(call, detail['timeline'])}<h2>Timeline</h2>{picture}{LANE_HELP}{recording}"
        f"<h2>Transcript</h2>{_transcript(detail['transcript'])}<h2>Lead</h2>{_lead(detail['lead'])}"
        f"<h2>Cost</h2>{_cost(call.get('usage'))}"))


def bad_request_page(what: str) -> str:
    return _doc("Bad request", f'<nav><a href="/admin">all calls</a></nav><h1>Bad request</h1><p>{_e(what)}</p>')


def not_found_page(what: str) -> str:
    return _doc("Not found", f'<nav><a href="/admin">all calls</a></nav><h1>Not found</h1><p>{_e(what)}</p>')


def _visit(visit: dict | None) -> str:
    """A booked visit as the owner reads it: when (as said to the caller), and its state."""
    if not visit:
        return "-"
    when = visit.get("says") or visit.get("start", "")
    return f"{when} ({visit.get('start', '')}) - {visit.get('status', '')}"


def _usd(value) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def costs_page(days: int, rows: list[dict]) -> str:
    """Per business and per day: calls, minutes and what they cost (``Store.costs_by_day``), newest
    day first, with each business's total over the period."""
    totals: dict[str, dict] = {}
    for r in rows:
        t = totals.setdefault(r["business"], {"business": r["business"], "calls": 0, "minutes": 0.0, "cost_usd": 0.0,
                                              "unknown": 0})
        for key in ("calls", "minutes", "cost_usd", "unknown"):
            t[key] += r[key]
    columns = ["business", "calls", "minutes", "cost_usd", "per_minute", "unknown"]

    def shown(r: dict) -> dict:
        known = r["minutes"] * (r["calls"] - r["unknown"]) / r["calls"] if r["calls"] else 0
        return {**r, "minutes": f"{r['minutes']:.1f}", "cost_usd": _usd(r["cost_usd"]),
                "per_minute": _usd(r["cost_usd"] / known) if known else "—"}
    by_day = sorted(rows, key=lambda r: (r["day"], r["business"]), reverse=True)
    return _doc("ProSaaS costs", (
        f'<p><a href="/admin">calls and leads</a></p><h1>What the calls cost, the last {days} day(s)</h1>'
        '<form method=get action="/admin/costs"><label>days <input type=number name=days min=1 max=366 '
        f'value="{days}"></label> <button type=submit>show</button></form>'
        "<p class=help>Model, transcription and phone line (an estimate, <code>TWILIO_MINUTE_USD</code>); "
        "<em>unknown</em> counts calls on a model with no price. Days are UTC. "
        "<code>Accept: application/json</code> gets the same as JSON.</p>"
        f"<h2>Per business</h2>{_table([shown(t) for t in totals.values()], columns) if rows else '<p>No calls.</p>'}"
        f"<h2>Per day</h2>{_table([shown(r) for r in by_day], ['day', *columns]) if rows else '<p>No calls.</p>'}"))


def _cost(usage: dict | None) -> str:
    """The call's tokens by kind and what they cost: model, transcription, phone, total, and the
    share of replies abandoned unheard."""
    if not usage:
        return "<p>Not counted for this call.</p>"
    cost = usage["cost"]
    rows = [(f"tokens: {kind}", count) for kind, count in sorted(usage["tokens"].items())]
    rows += [("model", f"{usage['model']}: {_usd(cost['model_usd'])}"),
             ("transcription", f"{usage['transcription_s']} s: {_usd(cost['transcription_usd'])}"),
             ("phone", f"{usage['call_s']} s: {_usd(cost['phone_usd'])}"), ("total", _usd(cost["total_usd"])),
             ("replies abandoned unheard", _usd(cost["abandoned_usd"]))]
    summary = {kind: count for kind, count in (usage.get("summary_tokens") or {}).items() if count}
    if summary:                                # in the tokens above; its own line says how much
        rows.append(("of which the owner's summary", ", ".join(f"{k} {v}" for k, v in sorted(summary.items()))))
    return "<table id=cost>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
