"""What a call writes down: its business, its record, its lead, and the lead's delivery.

The per-call handler talks to this one object; the database and the outbox stay behind it. Every
write goes to the worker's ``RecordWriter`` (``server/storage/record_writer.py``): it never waits
for the database, and the writer keeps each write (journaled on the instance's disk when one is
configured) until the database takes it, however long it is down. A database error never ends a
call, never changes what the caller gets, never loses a lead.

The record is written when the webhook answers (before any stream exists) and closed when the
stream ends, so any instance sharing the database can answer the after-stream request of any call
(``server.core.ending.after_stream_action``): several instances behind one load balancer need no shared memory.
The reads (that after-stream answer, a transfer's business) fall back to this process's memory
when the database cannot answer.
"""
from __future__ import annotations

import logging

from server import green
from server.business.directory import Answering, BusinessDirectory
from server.core.ending import Ending, after_stream_action
from server.delivery.outbox import OutboxWorker
from server.leads.capture import LeadSnapshot
from server.storage.db import Store
from server.storage.record_writer import RecordWriter, lead_args

log = logging.getLogger(__name__)

CLAIM_DEADLINE_S = 1.0
"""A stream's start waits at most this long for the database's word on its token."""
READ_DEADLINE_S = 2.0
"""Twilio's requests (after a stream, after a transfer) wait at most this long for a read: then this
process's memory answers."""


class CallRecords:
    def __init__(self, store: Store, directory: BusinessDirectory, outbox: OutboxWorker | None = None,
                 writer: RecordWriter | None = None) -> None:
        self.store = store
        self.directory = directory
        self.outbox = outbox
        self.writer = writer or RecordWriter(store, on_delivery=self._wake_outbox)

    def _wake_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.wake()

    def answering(self, to_number: str) -> Answering | None:
        return self.directory.answering(to_number)

    def claim_stream(self, nonce: str, call_sid: str) -> bool | None:
        """Claim a stream token's nonce in the shared database: True (first use), False (used
        before, on any instance), None when the database cannot say now (it is behind on writes,
        or does not answer within ``CLAIM_DEADLINE_S``): the worker's own memory decides then."""
        if self.writer.pending:
            return None
        try:
            with green.deadline(CLAIM_DEADLINE_S):
                return self.store.claim_stream(nonce, call_sid)
        except Exception as exc:   # noqa: BLE001
            log.warning("[RECORDS] stream token of %s could not be claimed in the database (%s)", call_sid,
                        type(exc).__name__)
            return None

    def call_answered(self, call_sid: str, answering: Answering, called: str, caller_masked: str) -> None:
        """The webhook answered: the call exists in the shared record before its stream does."""
        self.call_started(call_sid, "", answering, called, caller_masked)

    def after_stream(self, call_sid: str) -> str | None:
        """``apologise``, ``transfer`` or ``hangup`` after this call's stream, from the shared record;
        None when it cannot be read."""
        try:
            with green.deadline(READ_DEADLINE_S):
                return after_stream_action(self.store.call_ending(call_sid))
        except Exception as exc:   # noqa: BLE001
            log.warning("[RECORDS] call %s could not be read for the after-stream answer (%s)", call_sid,
                        type(exc).__name__)
            return None

    def business_of(self, call_sid: str) -> Answering | None:
        """The business that answered a call (from its record's called number)."""
        try:
            with green.deadline(READ_DEADLINE_S):
                called = self.store.called_number(call_sid)
        except Exception as exc:   # noqa: BLE001
            log.warning("[RECORDS] call %s could not be read (%s)", call_sid, type(exc).__name__)
            return None
        return None if called is None else self.answering(called)

    @staticmethod
    def _business(profile) -> dict:
        return {"number": profile.number, "name": profile.name}

    def summary(self, call_sid: str, text: str | None, answering: Answering, usage: dict | None = None) -> None:
        """The owner's summary: kept on the call, and sent to the business's CRM with the call's lead;
        ``usage``: the call's tokens and cost with the summary's own (it was billed, text or not)."""
        profile = answering.profile
        target = [profile.crm_webhook_url, profile.crm_secret_env] if profile.crm_webhook_url and text else None
        self.writer.put("summary", call_sid, text=text, deliver_to=target, business=self._business(profile),
                        usage=usage)
        log.info("[SUMMARY] call %s: %d characters for the owner%s", call_sid, len(text or ""),
                 " - queued for the CRM" if target else "")

    def recording(self, call_sid: str, path: str, failed: bool = False) -> None:
        """The call's recording file, or (``failed``) why it could not be written."""
        self.writer.put("recording", call_sid, path=path, failed=failed)

    def transfer(self, call_sid: str, **fields) -> None:
        """Note the call's transfer: its reason and masked destination, then Twilio's dial status."""
        self.writer.put("transfer", call_sid, **fields)

    def call_started(self, call_sid: str, stream_sid: str, answering: Answering, called: str,
                     caller_masked: str) -> None:
        business = None if answering.profile.is_default else answering.profile.number
        self.writer.put("call_started", call_sid, stream_sid=stream_sid, business_number=business, called=called,
                        caller_masked=caller_masked)

    def save_lead(self, call_sid: str, lead: LeadSnapshot, deliver: bool, answering: Answering,
                  asked_for_person: bool = False) -> None:
        profile = answering.profile
        target = [profile.crm_webhook_url, profile.crm_secret_env] if deliver and profile.crm_webhook_url else None
        sms = None
        if profile.sms_on_lead and profile.number and lead.phone and lead.status == "complete":
            booked = lead.visit.get("says", "") if lead.visit and lead.visit.get("status") == "booked" else ""
            sms = [lead.phone, profile.number, profile.sms_for(lead.service or "", lead.city or "", booked)]
        key = self.writer.put("save_lead", call_sid, lead=lead_args(lead), deliver_to=target,
                              business=self._business(profile), asked_for_person=asked_for_person, sms=sms)
        log.info("[LEAD] %s lead queued for the database (%s)%s", lead.status, key or "REFUSED",
                 " - to be delivered to the CRM" if target else (" - no CRM webhook configured" if deliver else ""))

    def call_ended(self, call_sid: str, **figures) -> None:
        self.writer.put("call_ended", call_sid, **figures)

    def call_finished(self, call_sid: str, end: Ending, answering: Answering, usage: dict | None = None) -> None:
        """The call's record at its end, and its lead (``end.lead_to_write``): a complete one the
        call did not write yet, or a partial one (the caller left first, the call failed)."""
        lead = end.lead_to_write
        if lead is not None:
            if lead.status != "complete":
                log.info("[LEAD] call ended before the lead was complete - partial lead (missing %s)",
                         list(lead.missing))
            self.save_lead(call_sid, lead, True, answering, asked_for_person=end.asked_for_person)
        s = end.stats
        self.call_ended(call_sid, outcome=end.outcome, hangup_reason=end.hangup_reason, turns=s.turns,
                        responses=s.responses_created, barge_ins=s.barge_ins, latencies_ms=list(s.latencies_ms),
                        transcript=list(end.transcript), timeline=end.timeline, usage=usage)
