"""The call timeline drawn as SVG (server/web/timeline_svg.py): what is drawn matches the record."""
import copy
import xml.etree.ElementTree as ET
from collections import Counter

from server.web.timeline_svg import MAX_PLOT_PX, px_per_s, render

SVG = "{http://www.w3.org/2000/svg}"
EXAMPLE = {
    "v": 1, "duration_ms": 18234, "lanes": ["caller", "gate", "model", "playout"],
    "spans": [{"lane": "caller", "kind": "speech", "from_ms": 1200, "to_ms": 2900, "label": ""},
              {"lane": "gate", "kind": "forwarded", "from_ms": 900, "to_ms": 3500, "label": "utterance 1"},
              {"lane": "gate", "kind": "echo_blocked", "from_ms": 4000, "to_ms": 4600, "label": ""},
              {"lane": "model", "kind": "response", "from_ms": 3210, "to_ms": 4100, "label": "completed"},
              {"lane": "playout", "kind": "ai_audio", "from_ms": 3650, "to_ms": 6200, "label": "resp_1"}],
    "events": [{"lane": "caller", "kind": "end_of_utterance", "t_ms": 2900, "label": ""},
               {"lane": "model", "kind": "response.create", "t_ms": 3201, "label": "turn 1"},
               {"lane": "caller", "kind": "barge_in", "t_ms": 5100, "label": ""},
               {"lane": "model", "kind": "tool_call", "t_ms": 9000, "label": "save_lead"},
               {"lane": "call", "kind": "hangup", "t_ms": 18234, "label": "goodbye"}],
    "latencies": [{"eou_ms": 2900, "create_ms": 3201, "first_audio_ms": 3650}]}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    return root


def drawn(root: ET.Element) -> list[dict]:
    return [el.attrib for el in root.iter() if "data-kind" in el.attrib]


def texts(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter(SVG + "text")]


def test_every_span_and_event_is_drawn_once_with_its_times():
    root = parse(render(EXAMPLE, "CA1"))
    items = drawn(root)
    spans = sorted((a["data-lane"], a["data-kind"], int(a["data-from-ms"]), int(a["data-to-ms"]))
                   for a in items if "data-from-ms" in a and a["data-lane"] != "latency")
    events = sorted((a["data-lane"], a["data-kind"], int(a["data-t-ms"])) for a in items if "data-t-ms" in a)
    assert spans == sorted((s["lane"], s["kind"], s["from_ms"], s["to_ms"]) for s in EXAMPLE["spans"])
    assert events == sorted((e["lane"], e["kind"], e["t_ms"]) for e in EXAMPLE["events"])
    per_lane = Counter(a["data-lane"] for a in items)
    assert per_lane == {"caller": 3, "gate": 2, "model": 3, "playout": 1, "call": 1, "latency": 1}


def test_a_standalone_svg_with_a_viewbox_and_named_lanes():
    svg = render(EXAMPLE, "CA1")
    root = parse(svg)
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" ')
    width, height = int(root.get("width")), int(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    assert root.get("data-duration-ms") == "18234"
    labels = texts(root)
    for name in ("caller", "gate", "model", "AI playout", "latency"):
        assert name in labels
    assert "18.2 s" in labels and "CA1" in labels
    assert "<script" not in svg and "href" not in svg       # nothing to run, nothing to load


def test_the_time_axis_has_a_tick_every_second_and_labels():
    root = parse(render(EXAMPLE))
    labels = texts(root)
    assert [f"{s} s" for s in range(0, 19)] == [t for t in labels if t.endswith(" s") and t[:-2].isdigit()]


def test_latency_is_annotated_from_end_of_utterance_to_first_audio():
    root = parse(render(EXAMPLE))
    [bracket] = [el for el in root.iter() if el.get("data-lane") == "latency"]
    assert (bracket.get("data-kind"), bracket.get("data-from-ms"), bracket.get("data-to-ms"),
            bracket.get("data-create-ms")) == ("reply_latency", "2900", "3650", "3201")
    assert texts(bracket) == ["750 ms"]
    assert "response.create +301 ms" in bracket.find(SVG + "title").text


def test_a_latency_without_audio_says_so():
    timeline = dict(EXAMPLE, latencies=[{"eou_ms": 2900, "create_ms": 3201}])
    [bracket] = [el for el in parse(render(timeline)).iter() if el.get("data-lane") == "latency"]
    assert "data-to-ms" not in bracket.attrib and texts(bracket) == ["no answer heard"]


def test_labels_are_escaped_and_stripped_of_what_xml_cannot_hold():
    evil = '<script>alert("x")</script> & \'quoted\' \x00\x07\ufffe'
    timeline = {"v": 1, "duration_ms": 30000,
                "spans": [{"lane": "model", "kind": "response", "from_ms": 0, "to_ms": 29000, "label": evil}],
                "events": [{"lane": "model", "kind": "tool_call", "t_ms": 100, "label": evil},
                           {"lane": 'x"><script>', "kind": "<b>", "t_ms": 200, "label": "מנעול"}]}
    svg = render(timeline, title=evil)
    assert "<script" not in svg and "<b>" not in svg and "\x00" not in svg
    root = parse(svg)
    all_text = " ".join(t for el in root.iter() for t in [el.text or ""])
    assert '<script>alert("x")</script> & \'quoted\' ' in all_text
    assert 'x"><script>' in [a["data-lane"] for a in drawn(root)]
    assert "מנעול" in " ".join(texts(root))


def test_unknown_kinds_and_lanes_still_render():
    timeline = {"v": 1, "duration_ms": 5000,
                "spans": [{"lane": "gate", "kind": "mystery", "from_ms": 100, "to_ms": 900},
                          {"lane": "radio", "kind": "static", "from_ms": 0, "to_ms": 400}],
                "events": [{"lane": "model", "kind": "brand_new_event", "t_ms": 1000, "label": "?"},
                           {"lane": "radio", "kind": "crackle", "t_ms": 2000}]}
    root = parse(render(timeline))
    assert Counter((a["data-lane"], a["data-kind"]) for a in drawn(root)) == {
        ("gate", "mystery"): 1, ("radio", "static"): 1, ("model", "brand_new_event"): 1, ("radio", "crackle"): 1}
    labels = texts(root)
    assert "radio" in labels                                  # a lane of its own, after the known ones
    assert "brand_new_event ?" in labels and "crackle" in labels
    legend = [el.get("data-legend") for el in root.iter() if "data-legend" in el.attrib]
    assert legend == ["gate mystery", "radio static", "brand_new_event", "crackle"]


def test_a_span_still_open_runs_to_the_end():
    timeline = {"v": 1, "duration_ms": 12000,
                "spans": [{"lane": "playout", "kind": "ai_audio", "from_ms": 9000, "label": "resp_9"}]}
    [span] = drawn(parse(render(timeline)))
    assert (span["data-from-ms"], span["data-to-ms"], span["data-open"]) == ("9000", "12000", "true")


def test_whole_call_events_cross_every_lane():
    root = parse(render(EXAMPLE))
    [hangup] = [el for el in root.iter() if el.get("data-lane") == "call"]
    line = hangup.find(SVG + "line")
    lane_rects = [el for el in root.iter(SVG + "rect") if el.get("height") == "60"]
    assert len(lane_rects) == 4
    assert float(line.get("y1")) <= float(lane_rects[0].get("y")) + 3
    assert float(line.get("y2")) >= float(lane_rects[-1].get("y")) + 60


def test_an_empty_timeline_draws_the_lanes_and_nothing_else():
    for timeline in ({}, {"v": 1, "duration_ms": 0, "spans": [], "events": [], "latencies": []}):
        root = parse(render(timeline))
        assert drawn(root) == []
        assert {"caller", "gate", "model", "AI playout"} <= set(texts(root))


def test_no_timeline_recorded():
    svg = render(None, "CA<1>")
    root = parse(svg)
    assert root.get("data-empty") == "true" and drawn(root) == []
    assert "No timeline was recorded for this call." in texts(root) and "CA<1>" in texts(root)


def test_malformed_values_do_not_break_the_picture():
    timeline = {"v": 2, "duration_ms": "4000", "lanes": "not a list", "dropped": 7,
                "spans": [{"lane": "caller", "kind": "speech", "from_ms": -50, "to_ms": "700"}, "junk",
                          {"lane": "caller", "kind": "speech", "from_ms": 900, "to_ms": 800}],
                "events": [{"lane": "caller", "kind": "barge_in", "t_ms": None},
                           {"lane": "caller", "kind": "barge_in", "t_ms": 1500.6},
                           {"lane": "model", "kind": "error", "t_ms": True}],
                "latencies": [{"create_ms": 5}, "junk"]}
    root = parse(render(timeline))
    assert [(a["data-kind"], a.get("data-from-ms"), a.get("data-to-ms"), a.get("data-t-ms")) for a in drawn(root)] == [
        ("speech", "0", "700", None), ("speech", "900", "900", None), ("barge_in", None, None, "1501")]
    heading = texts(root)[0]
    assert heading == "4.0 s · format v2, drawn as v1 · 7 later items not recorded"


def test_times_past_the_stated_duration_widen_the_picture():
    timeline = {"v": 1, "duration_ms": 1000, "events": [{"lane": "model", "kind": "error", "t_ms": 20000}]}
    root = parse(render(timeline))
    assert max(int(t[:-2]) for t in texts(root) if t.endswith(" s") and t[:-2].isdigit()) == 20


def test_the_scale_keeps_short_and_long_calls_readable():
    assert px_per_s(30_000) == 50.0          # 1500 px for 30 s
    assert px_per_s(300_000) == 10.0         # 3000 px for 5 min
    assert px_per_s(2_000) == 60.0           # a short call is not blown up
    assert px_per_s(3_600_000) * 3600 == MAX_PLOT_PX    # an hour is compressed to the maximum width
    widths = [int(parse(render({"v": 1, "duration_ms": ms})).get("width")) for ms in (30_000, 300_000, 3_600_000)]
    assert widths == [1624, 3124, 6124]


def test_crowded_labels_are_left_out_but_keep_their_tooltip():
    events = [{"lane": "model", "kind": "response.create", "t_ms": 1000 + i, "label": f"turn {i}"} for i in range(6)]
    root = parse(render({"v": 1, "duration_ms": 5000, "events": events}))
    groups = [el for el in root.iter() if el.get("data-kind") == "response.create"]
    assert len(groups) == 6
    assert [len(texts(g)) for g in groups] == [1, 1, 1, 0, 0, 0]       # three label rows per lane
    assert all(g.find(SVG + "title").text.startswith("model response.create: turn") for g in groups)


def test_rendering_is_deterministic_and_leaves_the_record_alone():
    before = copy.deepcopy(EXAMPLE)
    assert render(EXAMPLE, "t") == render(copy.deepcopy(EXAMPLE), "t")
    assert EXAMPLE == before


def test_an_absurd_time_cannot_blow_up_the_picture():
    timeline = {"v": 1, "duration_ms": 10**12, "lanes": ["caller", "caller", "gate"],
                "events": [{"lane": "caller", "kind": "barge_in", "t_ms": 10**13}]}
    svg = render(timeline)
    root = parse(svg)
    assert len(svg) < 200_000 and int(root.get("width")) <= MAX_PLOT_PX + 200
    assert [t for t in texts(root) if t in ("caller", "gate", "model")] == ["caller", "gate"]
    [event] = drawn(root)
    assert event["data-t-ms"] == str(10**13)
