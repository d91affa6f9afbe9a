"""Run one corpus case through a ``CallCore`` with fake time and score it against the labels.

The core sees exactly what the server would: caller frames stamped in audio time, the AI frames
it played (for echo cases, with a response active so a barge-in can interrupt it), and the line
echo of what was played, mixed frame by frame so that a barge-in's ``ClearPlayback`` also stops
the echo after the line delay.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import numpy as np

from bench.vad_corpus import TX_LEAD_MS, Case
from server.core import realtime_protocol as rt
from server.core import ulaw
from server.core.call_core import CallCore
from server.core.events import AssistantFramePlayed, CallerFrame, ClearPlayback, CommitAndTrigger, RealtimeReceived

MATCH_AFTER_END_MS = 3000       # a trigger this long after a labelled end still answers that utterance


@dataclass
class CaseResult:
    case: Case
    triggers_ms: list[int] = field(default_factory=list)
    barge_ins_ms: list[int] = field(default_factory=list)
    frames: int = 0
    core_seconds: float = 0.0

    def matched(self) -> list[list[int]]:
        """Triggers per labelled utterance."""
        return [[t for t in self.triggers_ms if start <= t <= end + MATCH_AFTER_END_MS]
                for start, end in self.case.utterances]

    def false_triggers(self) -> list[int]:
        return [t for t in self.triggers_ms
                if not any(start <= t <= end + MATCH_AFTER_END_MS for start, end in self.case.utterances)]


def run_case(case: Case, core: CallCore) -> CaseResult:
    result = CaseResult(case)
    reference = case.reference
    if reference is not None:
        core.request_response("greeting", 0)
        core.handle(RealtimeReceived(rt.ResponseCreated("resp_ai"), 0, 0, 0))
        audio_b64 = base64.b64encode(ulaw.encode(np.clip(reference, -32768, 32767).astype(np.int16))).decode()
        core.handle(RealtimeReceived(rt.AudioDelta("resp_ai", "item_ai", audio_b64), 0, 0, 0))
    n_frames = len(case.caller) // 160
    played = np.zeros(len(case.caller))
    echo_gain = 10 ** (case.echo_gain_db / 20.0)
    echo_frames = (case.echo_delay_ms + TX_LEAD_MS) // 20
    cleared = False
    for k in range(n_frames):
        now_ms = (k + 1) * 20
        if reference is not None and not cleared:
            r = k - case.reference_start_ms // 20
            if 0 <= r < len(reference) // 160:
                frame = reference[160 * r:160 * (r + 1)]
                played[160 * k:160 * (k + 1)] = frame
                core.handle(AssistantFramePlayed("item_ai", now_ms,
                                                 ulaw.encode(np.clip(frame, -32768, 32767).astype(np.int16))))
        inbound = case.caller[160 * k:160 * (k + 1)].copy()
        j = k - echo_frames
        if j >= 0:
            inbound += played[160 * j:160 * (j + 1)] * echo_gain
        audio = ulaw.encode(np.clip(np.round(inbound), -32768, 32767).astype(np.int16))
        t0 = time.perf_counter()
        actions = core.handle(CallerFrame(audio, "", now_ms, now_ms))
        result.core_seconds += time.perf_counter() - t0
        for a in actions:
            if isinstance(a, CommitAndTrigger):
                result.triggers_ms.append(now_ms)
            elif isinstance(a, ClearPlayback):
                result.barge_ins_ms.append(now_ms)
                cleared = True
    result.frames = n_frames
    return result
