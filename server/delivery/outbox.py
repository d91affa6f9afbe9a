"""Delivery of leads to each business's CRM webhook, from the durable outbox.

Theory of operation. A lead and its outbox message are committed together (``Store.save_lead``);
this worker, one green thread per server process, then POSTs the message body to the business's
URL, signed with HMAC-SHA256 (``X-ProSaaS-Signature``, key from the environment variable the
profile names) and carrying ``X-ProSaaS-Delivery``, the idempotency key the CRM dedupes on.

* Only a 2xx marks a message delivered. Anything else (refused, timeout, 5xx, 4xx) is retried
  with exponential backoff, ``retry_delay_s``: 2 s, 4 s, 8 s ... capped at 5 minutes, so a CRM
  that is down for an hour gets about a dozen tries and the lead minutes after it is back.
* Nothing is deleted: after ``RETENTION_S`` (3 days) of failures a message is marked ``dead``
  and stays in the database, listed with its last error.
* Messages are leased while in flight, so a second process never sends the same message at the
  same time; a process that dies mid-delivery leaves a lease that expires, and the message is
  sent again (at-least-once; the delivery id makes it exactly-once for the CRM).
* The worker wakes when a call queues a lead (``wake``) and otherwise at the next due time.
* The same outbox carries the caller's SMS confirmation of a complete lead: a message addressed
  ``sms:+972...`` (``SMS_SCHEME``) is sent through Twilio's Messages API (``send_sms``), retried
  the same way; Twilio's "not a valid number" codes are final (the message is dead at once).
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Callable, Mapping

from server import green
from server.delivery.signing import DELIVERY_HEADER, SIGNATURE_HEADER, sign
from server.storage.db import SMS_SCHEME, OutboxJob, Store
from server.storage.models import utcnow

log = logging.getLogger(__name__)

FIRST_RETRY_S = 2
MAX_RETRY_S = 300
RETENTION_S = 3 * 24 * 3600
LEASE_S = 60
HTTP_TIMEOUT_S = 10
FINAL_SMS_CODES = frozenset({21211, 21614, 21610, 21612, 21408})
"""Twilio's answers that no retry changes: invalid or non-mobile number, opted out, unreachable region."""
IDLE_POLL_S = 30


def retry_delay_s(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones (1 -> 2 s, 2 -> 4 s, ... <= 300 s)."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** max(0, min(attempts - 1, 16)))


def http_post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """POST and return the HTTP status; a connection failure raises OSError."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class OutboxWorker:
    def __init__(self, store: Store, environ: Mapping[str, str] | None = None,
                 post: Callable[[str, bytes, dict[str, str], float], int] = http_post,
                 clock_s: Callable[[], float] = time.time, now: Callable[[], datetime] = utcnow,
                 idle_poll_s: float = IDLE_POLL_S, send_sms: Callable | None = None) -> None:
        """``post``, ``clock_s`` (signature timestamps) and ``now`` (UTC, scheduling) are injected so
        the retry schedule can be tested on fake time. ``idle_poll_s``: how often an idle worker looks
        at the outbox for messages it was not woken for (those another instance queued and could not
        deliver, e.g. one stopped on SIGTERM)."""
        self.store = store
        self.idle_poll_s = idle_poll_s
        self.send_sms = send_sms
        """``TwilioRest.send_sms`` (to, from_, body) -> result with ``ok``/``code``; None: no REST API."""
        self.environ = os.environ if environ is None else environ
        self.post = post
        self.clock_s = clock_s
        self.now = now
        self._wake = green.Bell()
        self.stopped = False
        self.delivered = 0
        self.failed_attempts = 0

    def wake(self) -> None:
        self._wake.ring()

    def stop(self) -> None:
        self.stopped = True
        self.wake()

    def run_forever(self) -> None:
        log.info("[OUTBOX] delivery worker started")
        while not self.stopped:
            try:
                self.run_once()
                wait_s = self._seconds_until_next_due()
            except Exception:   # noqa: BLE001 - a database hiccup must not end deliveries for good
                log.exception("[OUTBOX] delivery round failed - retrying in %ds", FIRST_RETRY_S)
                wait_s = FIRST_RETRY_S
            self._wake.wait(wait_s)

    def _seconds_until_next_due(self) -> float:
        due = self.store.next_due_at()
        if due is None:
            return self.idle_poll_s
        return max(0.05, min(self.idle_poll_s, (due - self.now()).total_seconds()))

    def run_once(self) -> int:
        """Deliver every message that is due now; returns how many were delivered."""
        delivered = 0
        for job in self.store.claim_due(self.now(), LEASE_S):
            if self._deliver(job):
                delivered += 1
        return delivered

    def _deliver(self, job: OutboxJob) -> bool:
        if job.url.startswith(SMS_SCHEME):
            return self._text(job)
        secret = self.environ.get(job.secret_env, "") if job.secret_env else ""
        if job.secret_env and not secret:
            return self._failed(job, f"{job.secret_env} is not set: cannot sign the delivery")
        body = job.body.encode("utf-8")
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: job.delivery_id,
                   "User-Agent": "ProSaaS-voice-agent"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body, int(self.clock_s()))
        try:
            status = self.post(job.url, body, headers, HTTP_TIMEOUT_S)
        except OSError as exc:
            return self._failed(job, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        if 200 <= status < 300:
            self.store.delivery_succeeded(job.id, self.now())
            self.delivered += 1
            log.info("[OUTBOX] delivered %s after %d attempt(s) (HTTP %d)", job.delivery_id, job.attempts + 1, status)
            return True
        return self._failed(job, f"HTTP {status}")

    def _text(self, job: OutboxJob) -> bool:
        """An SMS to the caller, through Twilio's Messages API."""
        if self.send_sms is None:
            return self._failed(job, "TWILIO_ACCOUNT_SID is not set: no SMS can be sent")
        message = json.loads(job.body)
        result = self.send_sms(job.url[len(SMS_SCHEME):], message["from"], message["body"])
        if result.ok:
            self.store.delivery_succeeded(job.id, self.now())
            self.delivered += 1
            log.info("[OUTBOX] SMS %s sent after %d attempt(s)", job.delivery_id, job.attempts + 1)
            return True
        if result.code in FINAL_SMS_CODES:
            self.store.delivery_failed(job.id, f"Twilio {result.code}: {result.message}", None)
            log.error("[OUTBOX] SMS %s refused for good (Twilio %s) - kept as dead", job.delivery_id, result.code)
            return False
        return self._failed(job, f"Twilio {result.code or result.failure}: {result.message}")

    def _failed(self, job: OutboxJob, error: str) -> bool:
        self.failed_attempts += 1
        attempts = job.attempts + 1
        now = self.now()
        if (now - job.created_at).total_seconds() > RETENTION_S:
            self.store.delivery_failed(job.id, error, None)
            log.error("[OUTBOX] giving up on %s after %d attempts over %d days (%s) - kept as dead",
                      job.delivery_id, attempts, RETENTION_S // 86400, error)
            return False
        delay_s = retry_delay_s(attempts)
        self.store.delivery_failed(job.id, error, now + timedelta(seconds=delay_s))
        log.warning("[OUTBOX] delivery %s attempt %d failed (%s) - next try in %ds", job.delivery_id, attempts,
                    error, delay_s)
        return False

