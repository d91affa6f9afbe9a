"""One call's timeline (``calls.timeline_json``, format v1 of ``server/core/timeline.py``) as an SVG.

Theory of operation. ``render(timeline, title)`` is a pure function from the stored record to one
standalone SVG document (``xmlns``, ``viewBox``, no scripts, no external references), the same
bytes for the same input. Lanes run top to bottom (``caller``, ``gate``, ``model``, AI
``playout``, then any lane the record names that this module does not know); time runs left to
right on the call's own clock, with a tick every second and a labelled tick every few seconds.

- Spans are bars in their lane (speech the VAD heard, caller audio forwarded to the model or held
  back as echo, a model response from created to done, AI audio played). A span still open at the
  end (no ``to_ms``) runs to the end of the call, dashed.
- Events are a vertical line in their lane with a small marker and a short label; a label that
  would overlap the previous ones of the lane is left out (its ``<title>`` keeps the full text).
  Lane ``call`` is the whole call (hangup, link lost): its line crosses every lane.
- Latencies: under the lanes, a bracket from the end of the caller's utterance to the first AI
  audio the caller heard, labelled with the gap ("740 ms"); a dot marks ``response.create``.

Every drawn item is a ``<g>`` carrying ``data-lane``, ``data-kind`` and ``data-from-ms`` /
``data-to-ms`` (spans, latencies) or ``data-t-ms`` (events), so tests and tools can match the
picture to the record; the axis, lane names and legend carry none of these. All text is
XML-escaped and stripped of characters XML cannot hold (labels come from the model).

Scale: about 1500 px for the whole call, between 10 and 60 px per second (a 30 s call gets 50
px/s, a 5 min call 10 px/s, 3000 px wide), and never wider than 6000 px (longer calls compress;
past 4 hours, which no call lasts, everything is drawn at the right edge).
"""
from __future__ import annotations

import re
from html import escape

DEFAULT_LANES = ("caller", "gate", "model", "playout")
LANE_NAMES = {"caller": "caller", "gate": "gate", "model": "model", "playout": "AI playout"}
WHOLE_CALL = "call"

SPAN_STYLE = {  # (lane, kind): (fill, legend text)
    ("caller", "speech"): ("#2f6db3", "caller speech"),
    ("gate", "forwarded"): ("#3c8d40", "forwarded to the model"),
    ("gate", "echo_blocked"): ("#c8423b", "held back (echo window)"),
    ("gate", "hold"): ("#c79a00", "reply held"),
    ("model", "response"): ("#7d4e9f", "model response"),
    ("playout", "ai_audio"): ("#d9741c", "AI audio played"),
}
GENERIC_SPAN = "#7a7a7a"
EVENT_STYLE = {  # kind: (colour, short label, legend text)
    "end_of_utterance": ("#2f6db3", "EOU", "end of utterance"),
    "barge_in": ("#d0021b", "barge-in", "barge-in"),
    "backchannel": ("#138a8a", "backchannel", "backchannel"),
    "response.create": ("#7d4e9f", "create", "response.create"),
    "response.created": ("#7d4e9f", "created", "response.created"),
    "response.done": ("#7d4e9f", "done", "response.done"),
    "tool_call": ("#1e7b34", "tool", "tool call"),
    "error": ("#d0021b", "error", "error"),
    "mark": ("#777777", "mark", "mark"),
    "silence_prompt": ("#8a5a2b", "silence", "silence prompt"),
    "hold": ("#c79a00", "hold", "reply held"),
    "release": ("#8f7a00", "release", "reply released"),
    "reconnect": ("#e07000", "reconnect", "reconnect"),
    "hangup": ("#111111", "hangup", "hangup"),
}
GENERIC_EVENT = "#555555"
LATENCY_COLOUR = "#222222"

TARGET_PLOT_PX, MAX_PLOT_PX = 1500, 6000
MIN_PX_PER_S, MAX_PX_PER_S = 10.0, 60.0
GUTTER_PX, RIGHT_PX, TOP_PX = 96, 28, 42
LANE_PX, LATENCY_PX, AXIS_PX, LEGEND_ROW_PX = 60, 40, 30, 18
MIN_WIDTH_PX = 640
MAX_DRAWN_MS = 4 * 3600 * 1000    # later times (a broken clock) are drawn at the right edge
CHAR_PX = 5.6                      # rough advance of a 9-10 px sans-serif character
LABEL_ROWS = (13, 23, 33)          # event label baselines inside a lane
MAX_LABEL_CHARS = 28
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value) -> str:
    """Any value as XML-safe text (escaped, quotes included, no characters XML forbids)."""
    return escape(_NOT_XML.sub("", str(value)), quote=True)


def _ms(value) -> int | None:
    """A time in ms from the record, or None when absent or not a number; never negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0, round(number)) if number == number and abs(number) != float("inf") else None


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _short(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _clock(ms: int) -> str:
    s = ms // 1000
    return f"{s} s" if s < 60 else f"{s // 60}:{s % 60:02d}"


def _duration_text(ms: int) -> str:
    return f"{ms / 1000:.1f} s" if ms < 60_000 else _clock(ms)


def px_per_s(duration_ms: int) -> float:
    """Horizontal scale: readable for a 10 s call and a 10 min call alike (see the module doc)."""
    seconds = max(duration_ms, 1000) / 1000
    scale = min(MAX_PX_PER_S, max(MIN_PX_PER_S, TARGET_PLOT_PX / seconds))
    return min(scale, MAX_PLOT_PX / seconds)


def _items(timeline: dict, key: str) -> list[dict]:
    value = timeline.get(key)
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _lanes(timeline: dict, spans: list[dict], events: list[dict]) -> list[str]:
    given = timeline.get("lanes")
    named = [str(x) for x in given if str(x) != WHOLE_CALL] if isinstance(given, list) and given else DEFAULT_LANES
    lanes = list(dict.fromkeys(named))
    for item in spans + events:
        lane = str(item.get("lane", ""))
        if lane != WHOLE_CALL and lane not in lanes:
            lanes.append(lane)
    return lanes


class _Picture:
    """Layout of one timeline: the scale, lane positions and the label rows already taken."""

    def __init__(self, duration_ms: int, lanes: list[str]) -> None:
        self.duration_ms = duration_ms
        self.scale = px_per_s(duration_ms) / 1000
        self.plot_px = duration_ms * self.scale
        self.width = max(MIN_WIDTH_PX, round(GUTTER_PX + self.plot_px + RIGHT_PX))
        self.lanes = lanes
        self.lanes_bottom = TOP_PX + LANE_PX * len(lanes)
        self.latency_top = self.lanes_bottom
        self.axis_top = self.latency_top + LATENCY_PX
        self.legend_top = self.axis_top + AXIS_PX
        self.rows_end: dict[str, list[float]] = {}
        self.out: list[str] = []

    def x(self, t_ms: int) -> float:
        return GUTTER_PX + min(t_ms, self.duration_ms) * self.scale

    def lane_top(self, lane: str) -> int:
        return TOP_PX + LANE_PX * self.lanes.index(lane)

    def label_row(self, group: str, x: float, text: str, rows: int) -> int | None:
        """The first free label row for ``text`` starting at ``x`` in ``group``, taking it; None
        when all are taken (the label is then left out)."""
        ends = self.rows_end.setdefault(group, [float("-inf")] * rows)
        for row, end in enumerate(ends):
            if x >= end:
                ends[row] = x + len(text) * CHAR_PX + 6
                return row
        return None

    def label_x(self, x: float, text: str) -> tuple[float, str]:
        """Where a label beside a marker at ``x`` starts, and its anchor: to the marker's left when
        it would run past the right edge."""
        if x + 4 + len(text) * CHAR_PX <= self.width - 4:
            return x + 4, "start"
        return x - 4 - len(text) * CHAR_PX, "end"


def render(timeline: dict | None, title: str = "") -> str:
    """The SVG of a stored timeline; ``None`` (no timeline recorded) gives a small notice picture."""
    if not isinstance(timeline, dict):
        return _nothing_recorded(title)
    spans, events = _items(timeline, "spans"), _items(timeline, "events")
    latencies = _items(timeline, "latencies")
    stated_ms = _ms(timeline.get("duration_ms"))
    times = [t for s in spans for t in (_ms(s.get("from_ms")), _ms(s.get("to_ms")))] + \
            [_ms(e.get("t_ms")) for e in events] + \
            [_ms(v) for lat in latencies for v in lat.values()]
    duration_ms = min(MAX_DRAWN_MS, max([stated_ms or 0, 1000] + [t for t in times if t is not None]))
    pic = _Picture(duration_ms, _lanes(timeline, spans, events))
    _frame(pic, timeline, title, stated_ms)
    for span in spans:
        _span(pic, span)
    for event in events:
        _event(pic, event)
    for latency in latencies:
        _latency(pic, latency)
    height = _legend(pic, spans, events, bool(latencies))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{pic.width}" height="{height}" '
            f'viewBox="0 0 {pic.width} {height}" font-family="sans-serif" font-size="10" '
            f'data-duration-ms="{stated_ms if stated_ms is not None else ""}">'
            f'<title>{_text(title or "call timeline")}</title>'
            f'<rect x="0" y="0" width="{pic.width}" height="{height}" fill="#ffffff"/>')
    return head + "".join(pic.out) + "</svg>\n"


def _nothing_recorded(title: str) -> str:
    heading = f'<text x="12" y="20" font-size="12" font-weight="bold">{_text(_short(title, 60))}</text>' if title else ""
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="420" height="56" viewBox="0 0 420 56" '
            'font-family="sans-serif" font-size="12" data-empty="true">'
            f'<title>{_text(title or "call timeline")}</title>'
            '<rect x="0" y="0" width="420" height="56" fill="#ffffff" stroke="#cccccc"/>'
            f'{heading}<text x="12" y="42" fill="#555555">No timeline was recorded for this call.</text></svg>\n')


def _frame(pic: _Picture, timeline: dict, title: str, stated_ms: int | None) -> None:
    """Title, lane backgrounds and names, the latency row's name, the time axis and its grid."""
    notes = [_duration_text(stated_ms) if stated_ms is not None else "duration not recorded"]
    if timeline.get("v") not in (1, None):
        notes.append(f"format v{_short(str(timeline.get('v')), 12)}, drawn as v1")
    dropped = _ms(timeline.get("dropped"))
    if dropped:
        notes.append(f"{dropped} later items not recorded")
    head = " · ".join(notes)
    out = pic.out
    out.append(f'<text x="8" y="17" font-size="13" font-weight="bold">{_text(head)}</text>')
    if title:       # its own text element, so a right-to-left title cannot reorder the figures
        out.append(f'<text x="{_num(8 + (len(head) + 3) * CHAR_PX * 1.3)}" y="17" font-size="13">'
                   f'{_text(_short(title, 90))}</text>')
    right = GUTTER_PX + pic.plot_px
    for i, lane in enumerate(pic.lanes):
        top = TOP_PX + LANE_PX * i
        out.append(f'<rect x="0" y="{top}" width="{pic.width}" height="{LANE_PX}" '
                   f'fill="{"#f6f7f9" if i % 2 == 0 else "#ffffff"}"/>')
        out.append(f'<text x="8" y="{top + LANE_PX // 2 + 4}" font-size="11" font-weight="bold">'
                   f'{_text(_short(LANE_NAMES.get(lane, lane) or "(no lane)", 15))}</text>')
    out.append(f'<text x="8" y="{pic.latency_top + 24}" font-size="11" font-weight="bold">latency</text>')
    pps = pic.scale * 1000
    label_step_s = next((s for s in TICK_STEPS_S if s * pps >= 48), TICK_STEPS_S[-1])
    tick_step_s = next(s for s in TICK_STEPS_S if label_step_s % s == 0 and (s * pps >= 5 or s == label_step_s))
    axis = pic.axis_top
    out.append(f'<line x1="{GUTTER_PX}" y1="{axis}" x2="{_num(right)}" y2="{axis}" stroke="#333333"/>')
    for second in range(0, pic.duration_ms // 1000 + 1, tick_step_s):
        x = _num(pic.x(second * 1000))
        labelled = second % label_step_s == 0
        if labelled:
            out.append(f'<line x1="{x}" y1="{TOP_PX}" x2="{x}" y2="{axis}" stroke="#dddddd" stroke-width="0.5"/>')
            out.append(f'<text x="{x}" y="{axis + 19}" text-anchor="middle" fill="#333333">{_clock(second * 1000)}</text>')
        out.append(f'<line x1="{x}" y1="{axis}" x2="{x}" y2="{axis + (7 if labelled else 4)}" stroke="#333333"/>')


def _attrs(lane: str, kind: str, **times: int | None) -> str:
    parts = [f'data-lane="{_text(lane)}"', f'data-kind="{_text(kind)}"']
    parts += [f'data-{name.replace("_", "-")}="{value}"' for name, value in times.items() if value is not None]
    return " ".join(parts)


def _span(pic: _Picture, span: dict) -> None:
    lane, kind, label = str(span.get("lane", "")), str(span.get("kind", "")), str(span.get("label", "") or "")
    from_ms = _ms(span.get("from_ms")) or 0
    to_ms = _ms(span.get("to_ms"))
    still_open = to_ms is None
    to_ms = max(from_ms, pic.duration_ms if still_open else to_ms)
    fill, _ = SPAN_STYLE.get((lane, kind), (GENERIC_SPAN, ""))
    x0, x1 = pic.x(from_ms), pic.x(to_ms)
    width = max(1.0, x1 - x0)
    tip = f"{lane} {kind}{': ' + label if label else ''} · {from_ms}–{to_ms} ms{' (open at the end)' if still_open else ''}"
    dashed = ' stroke="#000000" stroke-dasharray="3 2"' if still_open else ""
    open_attr = ' data-open="true"' if still_open else ""
    if lane == WHOLE_CALL:
        body = (f'<rect x="{_num(x0)}" y="{TOP_PX}" width="{_num(width)}" height="{pic.lanes_bottom - TOP_PX}" '
                f'fill="{fill}" fill-opacity="0.12"{dashed}/>')
    else:
        top = pic.lane_top(lane) + 36
        body = f'<rect x="{_num(x0)}" y="{top}" width="{_num(width)}" height="18" fill="{fill}"{dashed}/>'
        if label and width >= len(label) * CHAR_PX + 6:
            body += f'<text x="{_num(x0 + 3)}" y="{top + 13}" fill="#ffffff">{_text(label)}</text>'
    pic.out.append(f'<g {_attrs(lane, kind, from_ms=from_ms, to_ms=to_ms)}{open_attr}>'
                   f'<title>{_text(tip)}</title>{body}</g>')


def _event(pic: _Picture, event: dict) -> None:
    lane, kind, label = str(event.get("lane", "")), str(event.get("kind", "")), str(event.get("label", "") or "")
    t_ms = _ms(event.get("t_ms"))
    if t_ms is None:                # nowhere to put it: the record is malformed
        return
    colour, short, _ = EVENT_STYLE.get(kind, (GENERIC_EVENT, kind, ""))
    x = pic.x(t_ms)
    text = _short(f"{short} {label}".strip())
    if lane == WHOLE_CALL:
        top, bottom, rows, baselines = TOP_PX, pic.lanes_bottom, 1, (TOP_PX - 4,)
    else:
        top = pic.lane_top(lane)
        bottom, rows, baselines = top + LANE_PX - 3, len(LABEL_ROWS), tuple(top + r for r in LABEL_ROWS)
    body = (f'<line x1="{_num(x)}" y1="{top + 3}" x2="{_num(x)}" y2="{bottom}" stroke="{colour}" stroke-width="1.5"/>'
            f'<path d="M{_num(x - 4)},{top + 1}h8l-4,6z" fill="{colour}"/>')
    start, anchor = pic.label_x(x, text)
    row = pic.label_row(lane, start, text, rows)
    if row is not None:
        at = start if anchor == "start" else x - 4
        body += (f'<text x="{_num(at)}" y="{baselines[row]}" text-anchor="{anchor}" font-size="9" '
                 f'fill="{colour}">{_text(text)}</text>')
    tip = f"{lane} {kind}{': ' + label if label else ''} · {t_ms} ms"
    pic.out.append(f'<g {_attrs(lane, kind, t_ms=t_ms)}><title>{_text(tip)}</title>{body}</g>')


def _latency(pic: _Picture, latency: dict) -> None:
    eou_ms = _ms(latency.get("eou_ms"))
    if eou_ms is None:
        return
    create_ms, audio_ms = _ms(latency.get("create_ms")), _ms(latency.get("first_audio_ms"))
    top = pic.latency_top + 6
    x0 = pic.x(eou_ms)
    if audio_ms is not None:
        x1 = pic.x(max(audio_ms, eou_ms))
        text = f"{audio_ms - eou_ms} ms"
        body = (f'<path d="M{_num(x0)},{top}v8H{_num(x1)}v-8" fill="none" stroke="{LATENCY_COLOUR}"/>'
                f'<path d="M{_num(x1)},{top + 8}l-5,-3v6z" fill="{LATENCY_COLOUR}"/>')
        anchor = (x0 + x1) / 2
    else:
        text = "no answer heard"
        body = f'<path d="M{_num(x0)},{top}v8h12" fill="none" stroke="{LATENCY_COLOUR}" stroke-dasharray="2 2"/>'
        anchor = x0 + 6
    if create_ms is not None:
        body += f'<circle cx="{_num(pic.x(create_ms))}" cy="{top + 8}" r="2.5" fill="#7d4e9f"/>'
    row = pic.label_row("latency", anchor - len(text) * CHAR_PX / 2, text, 2)
    if row is not None:
        body += (f'<text x="{_num(anchor)}" y="{top + 20 + 10 * row}" text-anchor="middle" font-size="9" '
                 f'fill="{LATENCY_COLOUR}">{_text(text)}</text>')
    parts = [f"end of utterance {eou_ms} ms"]
    if create_ms is not None:
        parts.append(f"response.create +{create_ms - eou_ms} ms")
    parts.append(f"first audio heard +{audio_ms - eou_ms} ms" if audio_ms is not None else "no audio heard")
    pic.out.append(f'<g {_attrs("latency", "reply_latency", from_ms=eou_ms, to_ms=audio_ms, create_ms=create_ms)}>'
                   f'<title>{_text(" → ".join(parts))}</title>{body}</g>')


def _legend(pic: _Picture, spans: list[dict], events: list[dict], latencies: bool) -> int:
    """The kinds drawn (known ones first, in a fixed order), wrapped to the width; returns the height."""
    drawn_spans = {(str(s.get("lane", "")), str(s.get("kind", ""))) for s in spans}
    drawn_events = {str(e.get("kind", "")) for e in events}
    entries = [("span", fill, text) for key, (fill, text) in SPAN_STYLE.items() if key in drawn_spans]
    entries += [("span", GENERIC_SPAN, f"{lane} {kind}") for lane, kind in sorted(drawn_spans - set(SPAN_STYLE))]
    entries += [("event", colour, text) for kind, (colour, _, text) in EVENT_STYLE.items() if kind in drawn_events]
    entries += [("event", GENERIC_EVENT, kind) for kind in sorted(drawn_events - set(EVENT_STYLE))]
    if latencies:
        entries.append(("latency", LATENCY_COLOUR, "end of utterance → first AI audio heard"))
    x, y = 8.0, pic.legend_top + 12
    for shape, colour, text in entries:
        text = _short(text, 40)
        item_px = 18 + len(text) * CHAR_PX + 14
        if x + item_px > pic.width and x > 8:
            x, y = 8.0, y + LEGEND_ROW_PX
        if shape == "span":
            mark = f'<rect x="{_num(x)}" y="{y - 8}" width="12" height="9" fill="{colour}"/>'
        elif shape == "event":
            mark = f'<path d="M{_num(x + 2)},{y - 9}h8l-4,6z" fill="{colour}"/><line x1="{_num(x + 6)}" y1="{y - 4}" x2="{_num(x + 6)}" y2="{y + 2}" stroke="{colour}"/>'
        else:
            mark = f'<path d="M{_num(x)},{y - 8}v6h12v-6" fill="none" stroke="{colour}"/>'
        pic.out.append(f'<g data-legend="{_text(text)}">{mark}'
                       f'<text x="{_num(x + 18)}" y="{y}" fill="#333333">{_text(text)}</text></g>')
        x += item_px
    return y + 10
