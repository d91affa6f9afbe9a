import xml.etree.ElementTree as ET

import pytest

from server.logs import mask_phone
from server.adapters.twiml import connect_stream, stream_url


def test_stream_url_scheme_follows_public_base_url():
    assert stream_url("https://agent.example.com") == "wss://agent.example.com/ws/twilio-media"
    assert stream_url("http://127.0.0.1:5000/") == "ws://127.0.0.1:5000/ws/twilio-media"
    with pytest.raises(ValueError):
        stream_url("agent.example.com")


def test_twiml_connects_a_stream_with_parameters_then_asks_what_next():
    root = ET.fromstring(connect_stream("https://agent.example.com", {"CallSid": "CA1", "From": "+972501234567",
                                                                      "Empty": ""}))
    stream = root.find("./Connect/Stream")
    assert stream.get("url") == "wss://agent.example.com/ws/twilio-media"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == \
        {"CallSid": "CA1", "From": "+972501234567"}
    assert [child.tag for child in root] == ["Connect", "Redirect"]
    redirect = root.find("Redirect")
    assert redirect.text == "https://agent.example.com/webhook/stream_ended" and redirect.get("method") == "POST"


def test_after_stream_apologises_only_when_asked():
    from server.adapters.twiml import after_stream
    assert [c.tag for c in ET.fromstring(after_stream(None))] == ["Hangup"]
    root = ET.fromstring(after_stream("סליחה"))
    assert [(c.tag, c.text, c.get("language")) for c in root] == [("Say", "סליחה", "he-IL"), ("Hangup", None, None)]


def test_phone_numbers_are_masked():
    assert mask_phone("from +972501234567 to +97235550100") == "from +97******4567 to +97*****0100"
    assert mask_phone("at 1234567ms") == "at 1234567ms"


def test_a_flood_of_one_kind_of_line_is_a_few_lines_that_count_the_rest():
    from server.logs import NoteLimiter
    limit = NoteLimiter(first=10, every=100)
    shown = [limit.allow("keypad") for _ in range(1010)]
    assert sum(1 for ok, _ in shown if ok) == 20                 # the first ten, then one per hundred
    assert shown[109] == (True, 99) and shown[10] == (False, 0)
    assert all(limit.allow("utterance_end") == (True, 0) for _ in range(50))   # only floodable codes
