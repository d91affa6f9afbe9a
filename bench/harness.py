"""Run one corpus case as a whole simulated call on fake time, and score it against its labels.

The core sees exactly what the server would, 20 ms at a time:

* the caller's frames, after the phone line (``sim.line_model``: level, noise, echo of what the
  handset played, band limit, G.711, packet loss) stamped in audio time;
* a model that answers every ``response.create`` like Realtime does: ``response.created`` after
  ``CREATED_MS``, the reply's audio ``first_audio_ms`` after the create (default 300 ms), then
  ``output_audio.done`` / ``response.done``; ``response.cancel`` ends it (status cancelled);
* a playout like the shell's TX loop: one frame per 20 ms while not paused, ``AssistantFramePlayed``
  for each, the frame reaching the handset ``TX_LEAD_MS`` later (so its echo follows), the
  ``assistant_tts_end`` mark acknowledged once played; ``ClearPlayback`` empties it. Within a 20 ms
  step the caller's frame is handled first, then the TX loop sends, as in the server (audio the
  core releases on a caller frame goes out at once).

Every case starts like a real call: the AI greets first (``GREETING_CLIP``, on the same line, so the
echo detector learns the line and the VAD calibrates on what a real call gives it), then a second of
quiet, then the case's own audio; every time reported is in the case's own time (negative: during
the greeting). Cases with a ``reference`` have the AI talking again: that audio is queued as a
second greeting-like response at ``reference_start_ms``. Every reply to the caller is the
``REPLY_CLIP``, so its echo tail is on the line too. The scores use when reply frames were sent to
Twilio (as ``scripts/bench_call.py`` and the demo's verdict do); the caller hears each ``TX_LEAD_MS``
later, so "sent inside a pause" is the stricter reading of "heard inside a pause".
"""
from __future__ import annotations

import base64
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from bench.vad_corpus import LEAD_IN_MS, TX_LEAD_MS, Case
from server.core import realtime_protocol as rt
from server.core.call_core import CallCore
from server.core.events import (AssistantFramePlayed, AssistantPlayoutFinished, CallerFrame, CancelResponse,
                                ClearPlayback, CommitAndTrigger, CommitSent, EndAssistantAudio, ForwardAudio,
                                MarkAcked, Note, PausePlayout, QueueAssistantAudio, QueueTrigger, RealtimeReceived,
                                ResumePlayout, SendMark, SendResponseCreate, Tick, TriggerReached)
from sim import audio as sim_audio
from sim import line_model

MATCH_AFTER_END_MS = 3000       # a trigger this long after a labelled end still answers that utterance
CREATED_MS = 60
FIRST_AUDIO_MS = 300            # the model's think time before its first audio (issue 9's figure)
REPLY_CLIP = "ai_ask_city"
TICK_MS = 50
GREETING_CLIP = "ai_greeting"
SESSION_READY_MS = 200          # the greeting is asked for this long after the stream starts
AFTER_GREETING_MS = 1000        # quiet between the end of the greeting and the case's audio
SCRIPTED = ("resp_hello", "resp_ai")    # the greeting, then the case's reference: not replies
PROMPTS = ("silence_warning", "goodbye")  # the core's own prompts: not replies to the caller


@dataclass
class CaseResult:
    case: Case
    triggers_ms: list[int] = field(default_factory=list)
    barge_ins_ms: list[int] = field(default_factory=list)
    """ClearPlayback: the AI's response was cancelled and flushed."""
    pauses_ms: list[int] = field(default_factory=list)
    resumes_ms: list[int] = field(default_factory=list)
    reply_starts_ms: list[int] = field(default_factory=list)
    """When each reply's first frame was sent to Twilio (the caller hears it ``TX_LEAD_MS`` later)."""
    reply_frames_ms: list[int] = field(default_factory=list)
    """When every reply frame was sent (the greeting and the reference excluded)."""
    prompt_starts_ms: list[int] = field(default_factory=list)
    """When the first frame of a response not asked for by the caller (a silence prompt) was sent."""
    forwarded_ms: int = 0
    cancels: list[str] = field(default_factory=list)
    frames: int = 0
    core_seconds: float = 0.0
    """Time spent in the core on caller frames (its cost per 20 ms frame)."""
    reference_ms: int = 0
    """Length of the case's reference (the AI talking over the caller), 0 without one."""
    reference_played_ms: int = 0
    """How much of it was sent to Twilio (a barge-in clears the rest)."""
    echo_paths: list[tuple[int, int | None, float]] = field(default_factory=list)
    """(ms, lag_ms, gain_db) of every echo path the core reported learning (lag None: a quiet line)."""
    notes: list[tuple[int, Note]] | None = None
    """Every note the core gave, when ``run_case(..., keep_notes=True)``."""

    def matched(self) -> list[list[int]]:
        """Triggers per labelled utterance."""
        return [[t for t in self.triggers_ms if start <= t <= end + MATCH_AFTER_END_MS]
                for start, end in self.case.utterances]

    def false_triggers(self) -> list[int]:
        return [t for t in self.triggers_ms
                if not any(start <= t <= end + MATCH_AFTER_END_MS for start, end in self.case.utterances)]

    def answers(self) -> list[list[int]]:
        """Reply starts heard per labelled utterance (after its start, up to 3 s after its end)."""
        return [[t for t in self.reply_starts_ms if start <= t <= end + MATCH_AFTER_END_MS]
                for start, end in self.case.utterances]

    def talked_over(self) -> list[int]:
        """Reply frames heard while the caller was speaking or pausing inside a labelled utterance."""
        return [t for t in self.reply_frames_ms if any(s < t <= e for s, e in self.case.utterances)]

    def heard_in_pauses(self) -> list[int]:
        return [t for t in self.reply_frames_ms if any(s < t <= e for s, e in self.case.pauses)]


@dataclass
class _Response:
    rid: str
    item_id: str
    audio: bytes
    created_at_ms: int
    audio_at_ms: int
    done: bool = False
    stage: int = 0          # 0: create sent, 1: created, 2: audio sent


class _Model:
    """Realtime's side on fake time: one response per create, cancellable."""

    def __init__(self, reply: bytes, first_audio_ms: int) -> None:
        self.reply = reply
        self.first_audio_ms = first_audio_ms
        self.responses: list[_Response] = []
        self._n = 0

    def create(self, now_ms: int, audio: bytes | None = None, rid: str | None = None) -> None:
        self._n += 1
        rid = rid or f"resp_{self._n}"
        self.responses.append(_Response(rid, f"item_{rid}", self.reply if audio is None else audio,
                                        now_ms + CREATED_MS, now_ms + self.first_audio_ms))

    def cancel(self, rid: str | None) -> None:
        for r in self.responses:
            if (rid is None or r.rid == rid) and r.stage == 1:
                r.stage = 3                 # cancelled before its audio: only response.done remains

    def due(self, now_ms: int) -> list:
        events = []
        for r in self.responses:
            if r.done:
                continue
            if r.stage == 0 and now_ms >= r.created_at_ms:
                r.stage = 1
                events.append(rt.ResponseCreated(r.rid))
            if r.stage == 3:
                r.done = True
                events.append(rt.ResponseDone(r.rid, "cancelled", "client_cancelled", item_ids=(r.item_id,)))
            elif r.stage == 1 and now_ms >= r.audio_at_ms:
                r.stage, r.done = 2, True
                events += [rt.AudioDelta(r.rid, r.item_id, base64.b64encode(r.audio).decode()),
                           rt.AudioDone(r.rid, r.item_id),
                           rt.ResponseDone(r.rid, "completed", None, item_ids=(r.item_id,))]
        return events


class _Playout:
    """The TX loop: a queue of frames sent one per 20 ms unless paused."""

    def __init__(self) -> None:
        self.queue: deque = deque()       # (kind, key, frame)
        self.paused = False
        self.mark_acks: list[tuple[int, str]] = []

    def clear(self) -> None:
        self.queue.clear()
        self.paused = False


def _pcm(audio: bytes) -> np.ndarray:
    return line_model.ulaw_decode(audio).astype(np.float64)


def _room_tone(case: Case, ms: int) -> np.ndarray:
    """The caller's side during the greeting: the case's own speech-free lead-in, mirrored back and
    forth (no seams; the last tile ends where the case begins), so the line sounds the same before
    and after the case starts."""
    lead = case.caller[: LEAD_IN_MS * 8]
    tiles = -(-ms * 8 // len(lead))
    pieces = [lead[::-1] if i % 2 == 0 else lead for i in range(tiles)][::-1]
    return np.concatenate(pieces)[-ms * 8:]


def warm_up_ms(first_audio_ms: int = FIRST_AUDIO_MS) -> int:
    """Audio before the case begins: session set-up, the greeting, a second of quiet."""
    greeting_ms = sim_audio.clip(GREETING_CLIP).duration_ms
    return -(-(SESSION_READY_MS + CREATED_MS + first_audio_ms + greeting_ms + AFTER_GREETING_MS) // 20) * 20


def run_case(case: Case, core: CallCore, first_audio_ms: int = FIRST_AUDIO_MS, keep_notes: bool = False) -> CaseResult:
    result = CaseResult(case, notes=[] if keep_notes else None)
    reply = sim_audio.clip(REPLY_CLIP).audio
    model = _Model(reply, first_audio_ms)
    playout = _Playout()
    offset_ms = warm_up_ms(first_audio_ms)
    speech = np.concatenate([_room_tone(case, offset_ms), case.caller])
    level = line_model.active_level_dbfs(case.caller) if case.utterances and case.line != "clean" else None
    profile = line_model.line(case.line, **case.line_overrides)
    if case.line == "clean" and case.echo_gain_db > -100:
        profile = line_model.line("clean", echo={"kind": "plain", "gain_db": case.echo_gain_db,
                                                  "delay_ms": case.echo_delay_ms})
    phone = line_model.PhoneLine(profile, babble=case.babble, speech_level_dbfs=level)
    handset: deque = deque([np.zeros(160)] * (TX_LEAD_MS // 20), maxlen=TX_LEAD_MS // 20)
    reference_queued = case.reference is None
    n_frames = len(speech) // 160
    next_tick_ms = TICK_MS

    def execute(actions, now_ms: int) -> None:
        pending = list(actions)
        while pending:
            a = pending.pop(0)
            if isinstance(a, Note):
                if result.notes is not None:
                    result.notes.append((now_ms - offset_ms, a))
                if a.code == "echo_path":
                    fields = dict(a.fields)
                    lag = fields.get("lag_ms", -1 if "echo path" in str(fields.get("what")) else None)
                    result.echo_paths.append((now_ms - offset_ms, lag, fields.get("gain_db")))
            elif isinstance(a, ForwardAudio):
                result.forwarded_ms += len(a.audio) // 8       # ms of µ-law, whatever the append size
            elif isinstance(a, CommitAndTrigger):
                result.triggers_ms.append(now_ms - offset_ms)
                pending += core.handle(CommitSent(a.reason, now_ms))     # the audio sender's commit went
            elif isinstance(a, QueueTrigger):
                pending += core.handle(TriggerReached(a.reason, now_ms))
            elif isinstance(a, SendResponseCreate):
                if a.reason == "greeting" and scripted:
                    rid, audio = scripted.pop(0)
                    model.create(now_ms, audio=audio, rid=rid)
                else:
                    model.create(now_ms)
                    reasons[model.responses[-1].rid] = a.reason
            elif isinstance(a, QueueAssistantAudio):
                frames = sim_audio.frames(a.audio)
                playout.queue.extend(("ai", (a.response_id, a.item_id), f) for f in frames)
            elif isinstance(a, EndAssistantAudio):
                playout.queue.append(("end", a.response_id, b""))
            elif isinstance(a, SendMark):
                playout.mark_acks.append((now_ms + TX_LEAD_MS, a.name))
            elif isinstance(a, CancelResponse):
                result.cancels.append(a.response_id or "")
                model.cancel(a.response_id)
            elif isinstance(a, ClearPlayback):
                result.barge_ins_ms.append(now_ms - offset_ms)
                playout.clear()
                playout.mark_acks.clear()
            elif isinstance(a, PausePlayout):
                result.pauses_ms.append(now_ms - offset_ms)
                playout.paused = True
            elif isinstance(a, ResumePlayout):
                result.resumes_ms.append(now_ms - offset_ms)
                playout.paused = False

    scripted = [(SCRIPTED[0], sim_audio.clip(GREETING_CLIP).audio)]
    if case.reference is not None:
        scripted.append((SCRIPTED[1], line_model.ulaw_encode(np.clip(np.round(case.reference), -32768, 32767))))
        result.reference_ms = len(scripted[-1][1]) // 8
    started_reply: set[str] = set()
    reasons: dict[str, str] = {}
    for k in range(n_frames):
        now_ms = (k + 1) * 20
        if now_ms == SESSION_READY_MS:
            execute(core.handle(TriggerReached("greeting", now_ms)), now_ms)
        if not reference_queued and now_ms >= case.reference_start_ms + offset_ms:
            reference_queued = True
            execute(core.handle(TriggerReached("greeting", now_ms)), now_ms)
        for event in model.due(now_ms):
            execute(core.handle(RealtimeReceived(event, now_ms)), now_ms)
        # the caller's frame, through the line (the handset plays what was sent TX_LEAD_MS ago)
        audio = phone.process(speech[160 * k:160 * (k + 1)], handset[0])
        t0 = time.perf_counter()
        actions = core.handle(CallerFrame(audio, now_ms, now_ms))
        result.core_seconds += time.perf_counter() - t0
        execute(actions, now_ms)
        # the TX loop: one frame per 20 ms
        played = np.zeros(160)
        while playout.queue and not playout.paused:
            kind, key, frame = playout.queue.popleft()
            if kind == "end":
                execute(core.handle(AssistantPlayoutFinished(key, now_ms)), now_ms)
                continue
            rid, item_id = key
            execute(core.handle(AssistantFramePlayed(item_id, now_ms, frame)), now_ms)
            played = _pcm(frame)
            if rid == SCRIPTED[1]:
                result.reference_played_ms += len(frame) // 8
            if rid not in SCRIPTED and reasons.get(rid) in PROMPTS:
                if rid not in started_reply:
                    started_reply.add(rid)
                    result.prompt_starts_ms.append(now_ms - offset_ms)
            elif rid not in SCRIPTED:
                heard_ms = now_ms - offset_ms      # sent to Twilio (heard TX_LEAD_MS later)
                result.reply_frames_ms.append(heard_ms)
                if rid not in started_reply:
                    started_reply.add(rid)
                    result.reply_starts_ms.append(heard_ms)
            break
        handset.append(played)
        for due_ms, name in [m for m in playout.mark_acks if m[0] <= now_ms]:
            playout.mark_acks.remove((due_ms, name))
            execute(core.handle(MarkAcked(name, now_ms)), now_ms)
        if now_ms >= next_tick_ms:
            next_tick_ms += TICK_MS
            execute(core.handle(Tick(now_ms)), now_ms)
    result.frames = n_frames
    return result
