"""What a call writes down: its business, its record, its lead, and the lead's delivery.

The per-call handler talks to this one object; the database and the outbox stay behind it. A
database error never ends a call: it is logged (without the caller's details) and the call goes
on; the lead stays in the call's memory and is written again at the end of the call.
"""
from __future__ import annotations

import logging

from server.business.directory import Answering, BusinessDirectory
from server.delivery.outbox import OutboxWorker
from server.leads.capture import LeadSnapshot
from server.storage.db import Store

log = logging.getLogger(__name__)


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

    def call_started(self, call_sid: str, stream_sid: str, answering: Answering, called: str,
                     caller_masked: str) -> bool:
        try:
            self.store.call_started(call_sid, stream_sid, answering.business_id, called, caller_masked)
            return True
        except Exception:   # noqa: BLE001
            log.exception("[RECORDS] call %s could not be recorded", call_sid)
            return False

    def save_lead(self, call_sid: str, lead: LeadSnapshot, deliver: bool, answering: Answering) -> bool:
        profile = answering.profile
        target = (profile.crm_webhook_url, profile.crm_secret_env) if deliver and profile.crm_webhook_url else None
        try:
            lead_id = self.store.save_lead(call_sid, lead, target,
                                           business={"number": profile.number, "name": profile.name})
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
