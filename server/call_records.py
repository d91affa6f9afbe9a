"""What a call writes down: its business, its record, its lead, and the lead's delivery.

The per-call handler talks to this one object; the database and the outbox stay behind it. A
database error never ends a call: it is logged (without the caller's details) and the call goes
on; the lead stays in the call's memory and is written again at the end of the call.

The record is written when the webhook answers (before any stream exists) and closed when the
stream ends, so any instance sharing the database can answer the after-stream request of any call
(``apologise_after_stream``): several instances behind one load balancer need no shared memory.
"""
from __future__ import annotations

import logging

from server.business.directory import Answering, BusinessDirectory
from server.core.call_core import TRANSFERRED
from server.delivery.outbox import OutboxWorker
from server.leads.capture import LeadSnapshot
from server.storage.db import Store

log = logging.getLogger(__name__)

FAILURE_REASONS = frozenset({"realtime_unavailable", "realtime_closed"})
"""Hangup reasons after which the caller hears the fallback message."""


def apologise_after_stream(record: tuple[str, str | None, bool] | None) -> bool:
    """After the stream closed: apologise when the call failed, or was answered but its stream never
    ended normally (the instance carrying it died); a call no instance recorded just hangs up.
    ``record``: (outcome, hangup reason, ended) from ``Store.call_ending``."""
    if record is None:
        return False
    outcome, reason, ended = record
    return not ended or outcome == "failed" or reason in FAILURE_REASONS


def after_stream_action(record: tuple[str, str | None, bool] | None) -> str:
    """``apologise``, ``transfer`` (the call ended to be handed to a person and was not redirected
    through the REST API) or ``hangup``."""
    if apologise_after_stream(record):
        return "apologise"
    return "transfer" if record is not None and record[1] == TRANSFERRED else "hangup"


class CallRecords:
    def __init__(self, store: Store, directory: BusinessDirectory, outbox: OutboxWorker | None = None) -> None:
        self.store = store
        self.directory = directory
        self.outbox = outbox

    def answering(self, to_number: str) -> Answering | None:
        try:
            return self.directory.answering(to_number)
        except Exception:   # noqa: BLE001 - no database: the call is still answered
            log.exception("[BUSINESS] lookup of %s failed - answering with the default profile", to_number)
            return self.directory.default_answering()

    def call_answered(self, call_sid: str, answering: Answering, called: str, caller_masked: str) -> bool:
        """The webhook answered: the call exists in the shared record before its stream does."""
        return self.call_started(call_sid, "", answering, called, caller_masked)

    def after_stream(self, call_sid: str) -> str | None:
        """``apologise``, ``transfer`` or ``hangup`` after this call's stream, from the shared record;
        None when it cannot be read."""
        try:
            return after_stream_action(self.store.call_ending(call_sid))
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] call %s could not be read for the after-stream answer", call_sid)
            return None

    def business_of(self, call_sid: str) -> Answering | None:
        """The business that answered a call (from its record's called number)."""
        try:
            called = self.store.called_number(call_sid)
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] call %s could not be read", call_sid)
            return None
        return None if called is None else self.answering(called)

    def summary(self, call_sid: str, text: str, answering: Answering) -> None:
        """The owner's summary: kept on the call, and sent to the business's CRM with the call's lead."""
        profile = answering.profile
        target = (profile.crm_webhook_url, profile.crm_secret_env) if profile.crm_webhook_url else None
        try:
            self.store.record_summary(call_sid, text, target, business={"number": profile.number,
                                                                        "name": profile.name})
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] summary of call %s could not be stored", call_sid)
            return
        log.info("[SUMMARY] call %s: %d characters for the owner%s", call_sid, len(text),
                 " - queued for the CRM" if target else "")
        if target and self.outbox is not None:
            self.outbox.wake()

    def recording(self, call_sid: str, path: str) -> None:
        try:
            self.store.record_recording(call_sid, path)
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] recording of call %s could not be recorded", call_sid)

    def transfer(self, call_sid: str, **fields) -> None:
        """Note the call's transfer: its reason and masked destination, then Twilio's dial status."""
        try:
            self.store.record_transfer(call_sid, **fields)
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] transfer of call %s could not be recorded", call_sid)

    def call_started(self, call_sid: str, stream_sid: str, answering: Answering, called: str,
                     caller_masked: str) -> bool:
        try:
            self.store.call_started(call_sid, stream_sid, answering.business_id, called, caller_masked)
            return True
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] call %s could not be recorded", call_sid)
            return False

    def save_lead(self, call_sid: str, lead: LeadSnapshot, deliver: bool, answering: Answering,
                  asked_for_person: bool = False) -> bool:
        profile = answering.profile
        target = (profile.crm_webhook_url, profile.crm_secret_env) if deliver and profile.crm_webhook_url else None
        sms = None
        if profile.sms_on_lead and profile.number and lead.phone and lead.status == "complete":
            sms = (lead.phone, profile.number, profile.sms_for(lead.service or "", lead.city or ""))
        try:
            lead_id = self.store.save_lead(call_sid, lead, target,
                                           business={"number": profile.number, "name": profile.name},
                                           asked_for_person=asked_for_person, sms=sms)
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] lead of call %s could not be stored - kept in memory, retried at the end",
                          call_sid)
            return False
        log.info("[LEAD] stored lead %d (%s)%s", lead_id, lead.status,
                 " - queued for the CRM" if target else (" - no CRM webhook configured" if deliver else ""))
        if target and self.outbox is not None:
            self.outbox.wake()
        return True

    def call_ended(self, call_sid: str, **figures) -> None:
        try:
            self.store.call_ended(call_sid, **figures)
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] end of call %s could not be recorded", call_sid)
