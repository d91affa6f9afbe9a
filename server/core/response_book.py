"""The responses of one call (pure): asked for, created, audible, cancelled, abandoned, drained.

One owner for what the core knows about the model's responses: the guard in front of
``response.create`` (``ResponseGuard``: one pending or active at a time), each response's audio
lifecycle (``CREATED -> PLAYING -> AUDIO_ENDED``, a table that raises on any other move), the
responses cancelled (their late deltas are dropped) and abandoned unheard (their items deleted
once), the reason of a request deferred until a cancelled response is done, a cancel owed to a
response not created yet, and the failures in a row. What the caller hears of a response is
``Playback``'s.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from server.core.events import CancelResponse, CoreAction, DeleteItem, RenewSession, note
from server.core.response_guard import ResponseGuard, SendCreate


ANY_RESPONSE = "*"
MAX_FAILED_RESPONSES = 2        # responses failed in a row (rate limits, server errors): then the apology


class AudioPhase(Enum):
    CREATED = "CREATED"
    PLAYING = "PLAYING"
    AUDIO_ENDED = "AUDIO_ENDED"


_NEXT = {(AudioPhase.CREATED, "first_audio"): AudioPhase.PLAYING,
         (AudioPhase.PLAYING, "audio_end"): AudioPhase.AUDIO_ENDED}


class ForbiddenResponseMove(RuntimeError):
    pass


@dataclass
class ResponseTrack:
    phase: AudioPhase = AudioPhase.CREATED
    item_id: str | None = None

    def move(self, event: str) -> None:
        new = _NEXT.get((self.phase, event))
        if new is None:
            raise ForbiddenResponseMove(f"{self.phase.value} on {event}")
        self.phase = new


@dataclass
class ResponseBook:
    guard: ResponseGuard
    tracks: dict[str, ResponseTrack] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)
    """Held replies cancelled unheard: their items are deleted when they are done."""
    deleted_items: set[str] = field(default_factory=set)
    deferred_reason: str | None = None
    deferred_behind: str | None = None
    """The response a deferred request waits for (``defer``); None: a cancelled one's end."""
    cancel_when_created: bool = False
    failed_in_row: int = 0

    # --- asking ---------------------------------------------------------------------------------

    def ask(self, reason: str, now_ms: int) -> tuple[bool, list[CoreAction]]:
        """The guard's word on a ``response.create``: (send it?, notes)."""
        active = self.guard.active_response_id
        if active is not None and active in self.cancelled:
            self.deferred_reason = reason        # asked again once the cancelled one is done
            return False, [note('INFO', 'guard_deferred', active_response_id=active, reason=reason)]
        decision = self.guard.request(reason, now_ms)
        if not isinstance(decision, SendCreate):
            return False, [note('INFO', 'guard_skipped', blocking=decision.blocking, reason=reason)]
        return True, []

    def expired(self, now_ms: int, out: list[CoreAction]) -> bool:
        """A ``response.create`` never acknowledged in time: the guard forgets it (nothing re-sent)."""
        expired = self.guard.on_deadline(now_ms)
        if expired is not None:
            out.append(note('WARNING', 'watchdog_no_created', waited_ms=expired.waited_ms, reason=expired.reason))
        return expired is not None

    def defer(self, reason: str) -> None:
        """Ask for ``reason`` once the response in flight is done (the next one done, when it is
        not created yet): a request that must not be lost to a busy guard."""
        self.deferred_reason = reason
        self.deferred_behind = self.guard.active_response_id or ANY_RESPONSE

    def take_deferred(self, response_id: str) -> str | None:
        """A response is done: the reason deferred behind it (or behind a cancelled one), if any."""
        if self.deferred_reason is None or not (response_id in self.cancelled
                                                or self.deferred_behind in (response_id, ANY_RESPONSE)):
            return None
        reason, self.deferred_reason, self.deferred_behind = self.deferred_reason, None, None
        return reason

    @property
    def busy(self) -> bool:
        return self.guard.busy

    # --- the model's side -------------------------------------------------------------------------

    def on_created(self, response_id: str, out: list[CoreAction]) -> bool:
        """``response.created``; False when it is cancelled at once (a cancel was owed to it)."""
        self.guard.on_created(response_id)
        self.tracks.setdefault(response_id, ResponseTrack())
        out.append(note('INFO', 'response_created', response_id=response_id))
        if not self.cancel_when_created:
            return True
        self.cancel_when_created = False
        self.cancelled.add(response_id)
        out.append(note('INFO', 'cancel_when_created', response_id=response_id))
        out.append(CancelResponse(response_id))
        return False

    def on_audio(self, response_id: str, item_id: str) -> bool:
        """Audio of this response is released to the caller: True on its first audio."""
        track = self.tracks.setdefault(response_id, ResponseTrack())
        track.item_id = item_id
        if track.phase is not AudioPhase.CREATED:
            return False
        track.move("first_audio")
        return True

    def end_audio(self, response_id: str) -> bool:
        """``output_audio.done`` of an audible response: True the first time (start its drain)."""
        track = self.tracks.get(response_id)
        if track is None or track.phase is not AudioPhase.PLAYING or response_id in self.cancelled:
            return False
        track.move("audio_end")
        return True

    def had_audio(self, response_id: str) -> bool:
        track = self.tracks.get(response_id)
        return track is not None and track.phase is not AudioPhase.CREATED

    def on_done(self, e, stats, out: list[CoreAction]) -> bool:
        """``response.done`` (any status): the guard frees; failures (rate limits, server errors,
        quota) are counted and logged, never retried blindly. True when the model failed
        ``MAX_FAILED_RESPONSES`` in a row: the caller should hear the fallback at once."""
        self.guard.on_done(e.response_id)
        if e.usage is not None:
            stats.tokens.update(e.usage.as_dict())
            if e.response_id in self.abandoned:
                stats.abandoned_tokens.update(e.usage.as_dict())
        level = "INFO" if e.status in ("completed", "cancelled") else "WARNING"
        out.append(note(level, 'response_done', response_id=e.response_id, status=e.status, reason=e.reason))
        if e.status == "completed":
            self.failed_in_row = 0
        if e.status != "failed":
            return False
        self.failed_in_row += 1
        code = e.error_code or "unknown"
        stats.errors[f"response_failed:{code}"] += 1
        out.append(note('WARNING', 'response_failed', response_id=e.response_id, code=code))
        return self.failed_in_row >= MAX_FAILED_RESPONSES

    def forget_abandoned(self, response_id: str, item_ids, out: list[CoreAction]) -> None:
        """An abandoned reply is done: its items leave the conversation (the caller never heard them)."""
        if response_id in self.abandoned:
            self.abandoned.discard(response_id)
            self.delete_items(item_ids, out)

    def delete_items(self, item_ids, out: list[CoreAction]) -> None:
        for item_id in item_ids:
            if item_id not in self.deleted_items:
                self.deleted_items.add(item_id)
                out.append(DeleteItem(item_id))

    # --- the caller cuts in ---------------------------------------------------------------------

    def cancel_in_flight(self, out: list[CoreAction]) -> None:
        """The caller is talking: whatever response is in flight is stale, not only the one playing."""
        active = self.guard.active_response_id
        if active is not None:
            out.append(CancelResponse(active))
            self.cancelled.add(active)
        elif self.guard.pending_reason is not None:
            self.cancel_when_created = True

    def barge_in(self, playing: str | None, out: list[CoreAction]) -> str | None:
        """Cancel what is in flight and the response playing; the item to truncate."""
        self.cancel_in_flight(out)
        self.cancelled.add(playing)
        track = self.tracks.get(playing)
        return None if track is None else track.item_id

    def abandon(self, response_id: str | None, item_ids, out: list[CoreAction]) -> None:
        """A held reply the caller never heard: cancel it (or its create) and delete its items."""
        if response_id is None:
            if self.guard.pending_reason is not None:
                self.cancel_when_created = True
            return
        if self.guard.active_response_id == response_id:
            out.append(CancelResponse(response_id))
        self.cancelled.add(response_id)
        self.abandoned.add(response_id)
        self.delete_items(item_ids, out)

    def link_lost(self) -> bool:
        """The session died with its responses; True when one was in flight."""
        in_flight = self.guard.active_response_id
        if in_flight is not None:
            self.cancelled.add(in_flight)
        busy = self.guard.busy
        self.guard.reset()
        return busy

    def on_error(self, e, stats, out: list[CoreAction]) -> None:
        """A Realtime ``error``: counted and logged; an expired session is renewed; a create the
        server refused frees the guard."""
        code = e.code or "unknown"
        stats.errors[code] += 1
        if code == "session_expired":
            out.append(note('WARNING', 'session_expired'))
            out.append(RenewSession())
            return
        if code == "conversation_already_has_active_response":
            self.guard.on_create_rejected()
        level = "INFO" if code == "response_cancel_not_active" else "ERROR"
        out.append(note(level, 'realtime_error', code=code, error_type=e.error_type, message=e.message))
