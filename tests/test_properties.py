"""Property tests: random interleavings of Twilio and OpenAI events into the pure core, and fuzzed
wire messages into the codecs. Hypothesis looks for a counterexample to each invariant."""
import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.core import realtime_protocol as rt
from server.core import twilio_codec as tw
from server.core.call_core import TTS_END_MARK, CallCore
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerFrame, CancelResponse,
                                ClearPlayback, CommitAndTrigger, ForwardAudio, MarkAcked, Note, QueueAssistantAudio,
                                QueueTrigger, RealtimeReceived, SendResponseCreate, Tick)
from server.core.turn_config import TurnConfig
from sim import twilio_wire as wire
from tests.audio_helpers import SILENT, SPEECH, VOICE, tone
from tests.test_call_core import ask

CFG = TurnConfig()
FRAMES = {"silence": [SILENT], "speech": SPEECH, "loud": [VOICE], "soft": [tone(80)]}
AI_PLAYED = tone(300)          # quieter than a talking caller, so barge-ins really happen

step = st.one_of(
    st.tuples(st.just("caller"), st.sampled_from(sorted(FRAMES)), st.integers(1, 40), st.booleans()),
    st.tuples(st.just("server"), st.sampled_from(["created", "delta", "audio_done", "done", "done_stale",
                                                  "delta_stale", "error_busy", "transcript"])),
    st.tuples(st.just("trigger"), st.sampled_from(["end_of_speech", "greeting", "silence_warning"])),
    st.tuples(st.just("tick"), st.integers(1, 3000)),
    st.tuples(st.just("playout"), st.sampled_from(["finished", "mark_ack"])),
    st.tuples(st.just("scene"), st.sampled_from(["ai_speaks", "barge_in", "stale_delta", "interrupted"])),
)
SCENES = {   # short stories the plain steps reach only rarely
    "ai_speaks": [("trigger", "end_of_speech"), ("server", "created"), ("server", "delta")],
    "barge_in": [("caller", "speech", 40, True)],     # long enough to be a barge-in, not a backchannel
    "stale_delta": [("server", "delta_stale"), ("server", "done")],
    "interrupted": [("trigger", "end_of_speech"), ("server", "created"), ("server", "delta"),
                    ("caller", "speech", 40, True), ("server", "delta"), ("server", "done")],
}


class World:
    """Drives the core like the shell would, with a fake OpenAI that answers creates in order."""

    def __init__(self) -> None:
        self.core = CallCore(CFG, {"greeting": "g"})
        self.now = 1000
        self.audio_ms = 0
        self.frames_in = 0
        self.vad_frames = 0
        original = self.core.turn.vad.on_frame

        def counting(*a, **k):
            self.vad_frames += 1
            return original(*a, **k)
        self.core.turn.vad.on_frame = counting
        self.n = 0
        self.pending_creates = 0            # sent, not yet created/rejected/expired
        self.server_active: str | None = None
        self.cancelled: set[str] = set()
        self.playing: str | None = None
        self.forwarded_since_trigger = 0
        self.violations: list[str] = []

    def apply(self, actions) -> None:
        for a in actions:
            if isinstance(a, SendResponseCreate):
                if self.pending_creates or (self.server_active and self.server_active not in self.cancelled):
                    self.violations.append(f"second response.create in flight ({a.reason})")
                self.pending_creates += 1
            elif isinstance(a, ForwardAudio):
                self.forwarded_since_trigger += len(a.audio) // 160       # frames, whatever the append size
            elif isinstance(a, CommitAndTrigger):
                if self.forwarded_since_trigger * 20 < CFG.min_utterance_ms:
                    self.violations.append("trigger from an utterance that never reached OpenAI (echo block)")
                self.forwarded_since_trigger = 0
                self.apply(ask(self.core, a.reason, self.now))
            elif isinstance(a, QueueTrigger):
                self.apply(ask(self.core, a.reason, self.now))
            elif isinstance(a, CancelResponse) and a.response_id:
                self.cancelled.add(a.response_id)
            elif isinstance(a, QueueAssistantAudio):
                if a.response_id in self.cancelled:
                    self.violations.append(f"late audio of cancelled {a.response_id} queued")
                self.playing = a.response_id
            elif isinstance(a, Note) and a.text.startswith("✅ [AUDIO_DRAIN] Queues empty"):
                rid = a.text.rsplit("response_id=", 1)[1].rstrip(")")
                active = self.core.book.guard.active_response_id
                if active not in (None, rid):
                    self.violations.append(f"drain of {rid} cleared while {active} is active")
            elif isinstance(a, ClearPlayback) and self.playing:
                self.cancelled.add(self.playing)          # the response that was playing stops

    def rt(self, event) -> None:
        self.apply(self.core.handle(RealtimeReceived(event, self.now)))

    def run(self, s) -> None:
        kind = s[0]
        if kind == "caller":
            _, name, count, with_ai = s
            pattern = FRAMES[name]
            for i in range(count):
                self.now += 20
                self.audio_ms += 20
                if with_ai and self.server_active:
                    self.apply(self.core.handle(AssistantFramePlayed("item_" + self.server_active, self.now, AI_PLAYED)))
                frame = pattern[i % len(pattern)]
                self.frames_in += 1
                self.apply(self.core.handle(CallerFrame(frame, self.audio_ms, self.now)))
        elif kind == "server":
            what = s[1]
            if what == "created" and self.pending_creates and not self.server_active:
                self.n += 1
                self.pending_creates -= 1
                self.server_active = f"r{self.n}"
                self.rt(rt.ResponseCreated(self.server_active))
            elif what == "delta" and self.server_active:
                self.rt(rt.AudioDelta(self.server_active, "item_" + self.server_active, base64.b64encode(VOICE).decode()))
            elif what == "delta_stale" and self.cancelled:
                rid = sorted(self.cancelled)[0]
                self.rt(rt.AudioDelta(rid, "item_" + rid, base64.b64encode(VOICE).decode()))
            elif what == "audio_done" and self.server_active:
                self.rt(rt.AudioDone(self.server_active, "item_" + self.server_active))
            elif what == "done" and self.server_active:
                rid, self.server_active = self.server_active, None
                self.rt(rt.ResponseDone(rid, "cancelled" if rid in self.cancelled else "completed", None))
            elif what == "done_stale":
                self.rt(rt.ResponseDone("r_old", "completed", None))
            elif what == "error_busy" and self.pending_creates and self.server_active:
                self.pending_creates -= 1
                self.rt(rt.RealtimeError("conversation_already_has_active_response", "busy", "invalid_request_error"))
            elif what == "transcript":
                self.rt(rt.InputTranscription("i", "כן"))
        elif kind == "trigger":
            self.apply(ask(self.core, s[1], self.now))
        elif kind == "tick":
            before = self.core.book.guard.pending_reason
            self.now += s[1]
            self.apply(self.core.handle(Tick(self.now)))
            if before is not None and self.core.book.guard.pending_reason is None and self.pending_creates:
                self.pending_creates -= 1          # the watchdog gave up on that create
        elif kind == "playout":
            if s[1] == "finished" and self.server_active:
                self.apply(self.core.handle(AssistantPlayoutFinished(self.server_active, self.now)))
            else:
                self.apply(self.core.handle(MarkAcked(TTS_END_MARK, self.now)))
        elif kind == "session_ready":        # session.updated: the first greets; later ones change nothing
            self.apply(self.core.handle(RealtimeReceived(rt.SessionUpdated("sess_1"), self.now)))
        elif kind == "scene":
            for sub in SCENES[s[1]]:
                self.run(sub)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.lists(step, min_size=1, max_size=60))
def test_core_invariants_hold_for_any_interleaving(greeted, steps):
    world = World()
    for s in [("session_ready",)] * greeted + steps + [("session_ready",)] * greeted:
        world.run(s)
    assert world.violations == []
    assert world.vad_frames == world.frames_in          # the VAD sees every frame


def test_the_random_worlds_reach_the_interesting_states():
    """Guards against a vacuous property test: the strategy must produce barge-ins, stale deltas
    after a cancel, and skipped creates."""
    seen = {"barge_in": 0, "stale_after_cancel": 0, "skipped": 0}

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(step, min_size=1, max_size=60))
    def explore(steps):
        world = World()
        for s in steps:
            had_cancel = bool(world.cancelled)
            world.run(s)
            if s[0] == "scene" and (s[1] == "stale_delta" and had_cancel or s[1] == "interrupted"):
                seen["stale_after_cancel"] += world.core.stats.dropped_deltas > 0
        seen["barge_in"] += world.core.stats.barge_ins
        seen["skipped"] += world.core.book.guard.sent_count < sum(1 for s in steps if s[0] == "trigger")
    explore()
    assert all(v > 0 for v in seen.values()), seen


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)
VALID_TWILIO = [wire.connected(), wire.start(1, "AC1", "MZ1", "CA1", {"a": "b"}),
                wire.media(2, "MZ1", 1, 0, b"\xff" * 160), wire.mark(3, "MZ1", "m"),
                wire.stop(4, "AC1", "MZ1", "CA1"), tw.clear_message("MZ1")]


def _mutate(obj, data):
    if isinstance(obj, dict) and obj:
        key = data.draw(st.sampled_from(sorted(obj)))
        choice = data.draw(st.integers(0, 2))
        if choice == 0:
            obj.pop(key)
        elif choice == 1:
            obj[key] = data.draw(json_values)
        else:
            _mutate(obj[key], data)
    return obj


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_twilio_codec_never_raises(data):
    text = data.draw(st.one_of(st.text(max_size=200), st.binary(max_size=50),
                               st.sampled_from(VALID_TWILIO).map(json.loads).map(lambda o: json.dumps(_mutate(o, data)))))
    tw.parse(text)


VALID_RT = [{"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "AAAA"},
            {"type": "response.done", "response": {"id": "r", "status": "completed", "status_details": None}},
            {"type": "error", "error": {"type": "x", "code": "c", "message": "m"}},
            {"type": "response.created", "response": {"id": "r"}},
            {"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": 5},
            {"type": "session.created", "session": {"id": "s"}}]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_realtime_codec_never_raises(data):
    text = data.draw(st.one_of(st.text(max_size=200), st.binary(max_size=50),
                               st.sampled_from(VALID_RT).map(lambda o: json.dumps(_mutate(json.loads(json.dumps(o)), data)))))
    rt.parse_server_event(text)
