"""The simulated caller presses keys: a scenario's ``press`` step, checked when the scenario is loaded,
becomes Twilio's ``dtmf`` message on the media stream (next sequence number, no audio of its own),
seen by a stub voice application on loopback exactly as it was sent."""
import base64
import json

import pytest

from sim import scenario as sc
from sim import twilio_wire as wire
from sim.twilio_caller import TwilioCaller
from tests.stub_voice_app import StubVoiceApp

TOKEN = "dtmf-sim-token"

PRESSING = """
name = "pressing"
[caller]
steps = [
  { silence_ms = 100 },
  { press = "0" },
  { press = "#" },
  { silence_ms = 60 },
  { press = "*" },
  { hangup = true },
]
"""


def test_the_dtmf_message_is_the_one_twilio_documents():
    # Twilio, "Media Streams - WebSocket Messages", DTMF message: the documented example, field for field
    documented = {"event": "dtmf", "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "sequenceNumber": "5",
                  "dtmf": {"track": "inbound_track", "digit": "1"}}
    assert json.loads(wire.dtmf(5, "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "1")) == documented
    assert wire.dtmf(12, "MZ1", "#") == \
        '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"12","dtmf":{"track":"inbound_track","digit":"#"}}'


def test_a_press_step_loads_from_toml():
    scenario = sc.parse(PRESSING)
    presses = [sc.Step("press", digit=key) for key in "0#*"]
    assert [s for s in scenario.steps if s.kind == "press"] == presses
    assert scenario.turns == 0                       # a key is not a spoken turn


@pytest.mark.parametrize("value", ['"12"', '""', '"A"', "1", "true", '"٣"', '" "'])
def test_a_press_that_is_not_one_key_is_refused_at_load_naming_the_step(value):
    text = f'[caller]\nsteps = [{{ silence_ms = 20 }}, {{ press = {value} }}, {{ hangup = true }}]\n'
    with pytest.raises(sc.ScenarioError) as exc:
        sc.parse(text, "keys.toml")
    assert str(exc.value).startswith("keys.toml: step 2: press must be one key of the keypad (0-9, * or #), got ")


def test_a_press_takes_nothing_but_its_key():
    with pytest.raises(sc.ScenarioError, match=r"x.toml: step 1: a press step takes only the key, not \['quiet_ms'\]"):
        sc.parse('[caller]\nsteps = [{ press = "5", quiet_ms = 100 }]\n', "x.toml")
    with pytest.raises(sc.ScenarioError, match="x.toml: step 1: a step needs exactly one of"):
        sc.parse('[caller]\nsteps = [{ press = "5", say = "caller_city" }]\n', "x.toml")


@pytest.fixture
def app():
    stub = StubVoiceApp(TOKEN).start()
    yield stub
    stub.stop()


def test_each_press_is_sent_as_dtmf_between_frames_of_silence_with_the_next_sequence_number(app):
    caller = TwilioCaller(app.url, sc.parse(PRESSING), TOKEN, webhook_path="/voice")
    record = caller.run(max_duration_s=10)
    assert record.hung_up_by == "caller" and not record.failures and not record.violations

    assert app.events(0) == (["connected", "start"] + ["media"] * 5 + ["dtmf", "media", "dtmf", "media"]
                             + ["media"] * 3 + ["dtmf", "media", "stop"])
    messages = app.streams[0]
    stream_sid = record.stream_sid
    keys = [m for m in messages if m["event"] == "dtmf"]
    assert keys == [{"event": "dtmf", "streamSid": stream_sid, "sequenceNumber": str(seq),
                     "dtmf": {"track": "inbound_track", "digit": digit}}
                    for seq, digit in ((7, "0"), (9, "#"), (14, "*"))]
    # one sequence: every message after connected numbered 1, 2, 3... in the order sent
    assert [m["sequenceNumber"] for m in messages[1:]] == [str(n) for n in range(1, len(messages))]
    # the media track goes on unbroken: chunks 1..11 every 20 ms, a press adds a frame, not a gap
    media = [m["media"] for m in messages if m["event"] == "media"]
    assert [(m["chunk"], m["timestamp"]) for m in media] == [(str(c), str(20 * (c - 1))) for c in range(1, 12)]
    # and a press is silent: its frame is the same digital silence as the silence steps around it
    silence = base64.b64decode(media[0]["payload"])
    assert len(silence) == 160 and set(silence) <= {0xFF, 0x7F}
    assert all(base64.b64decode(m["payload"]) == silence for m in media)

    assert [(kind, detail) for _, kind, detail in record.events if kind == "dtmf"] == [("dtmf", "0"), ("dtmf", "#"),
                                                                                      ("dtmf", "*")]
