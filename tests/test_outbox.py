"""The lead outbox on fake time: retries with backoff, delivered only on 2xx, nothing lost, signed."""
import json
from datetime import datetime, timedelta

import pytest

from server.business.profiles import BusinessProfile, Profiles
from server.delivery.outbox import MAX_RETRY_S, RETENTION_S, OutboxWorker, retry_delay_s
from server.delivery.signing import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from server.leads.capture import LeadSnapshot
from server.storage.db import Store
from server.storage.models import utcnow

URL = "http://crm.example/leads"
LEAD = LeadSnapshot("complete", "פריצת דלת", "רמת גן", True, "דני", "+972501234567", None, (), {"service": "tool"})


class FakeTime:
    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)      # rows are stamped with the real time when written

    def advance_to_next_due(self, store: Store) -> None:
        due = store.next_due_at()
        if due is not None and due > self.now:
            self.now = due


class FakeCrm:
    """Answers with the scripted statuses (an OSError is raised as a refused connection)."""

    def __init__(self, up_after: datetime | None, clock: FakeTime) -> None:
        self.up_after, self.clock = up_after, clock
        self.posts: list[tuple[str, bytes, dict]] = []
        self.accepted: list[str] = []

    def post(self, url: str, body: bytes, headers: dict, timeout_s: float) -> int:
        self.posts.append((url, body, headers))
        if self.up_after is not None and self.clock.now < self.up_after:
            raise ConnectionRefusedError(111, "Connection refused")
        self.accepted.append(headers[DELIVERY_HEADER])
        return 200


@pytest.fixture()
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/outbox.sqlite3")
    s.create_schema()
    s.sync_businesses(Profiles({"+97235550100": BusinessProfile("+97235550100", "Locks")}, BusinessProfile("", "d")))
    s.call_started("CA1", "MZ1", 1, "+97235550100", "+97*******4567")
    return s


def worker(store: Store, crm, clock: FakeTime, environ=None) -> OutboxWorker:
    return OutboxWorker(store, environ if environ is not None else {"CRM_SECRET": "s3cret"}, post=crm.post,
                        clock_s=lambda: 1_800_000_000, now=lambda: clock.now)


def test_retry_schedule_doubles_up_to_five_minutes():
    assert [retry_delay_s(n) for n in range(1, 11)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert retry_delay_s(10_000) == MAX_RETRY_S


def test_a_crm_down_for_an_hour_gets_the_lead_exactly_once_after_it_is_back(store):
    clock = FakeTime()
    crm = FakeCrm(up_after=clock.now + timedelta(hours=1), clock=clock)
    store.save_lead("CA1", LEAD, (URL, "CRM_SECRET"), {"number": "+97235550100", "name": "Locks"})
    w = worker(store, crm, clock)
    start = clock.now
    for _ in range(100):                                   # bounded: the schedule needs about 20 rounds
        w.run_once()
        if crm.accepted:
            break
        clock.advance_to_next_due(store)
    assert len(crm.accepted) == 1
    waited_s = (clock.now - start).total_seconds()
    assert 3600 <= waited_s <= 3600 + MAX_RETRY_S          # delivered within one retry period of recovery
    assert 15 <= w.failed_attempts <= 25                  # ~2 s doubling, then every 5 minutes
    lead = store.recent_leads()[0]
    assert lead["deliveries"][0]["status"] == "delivered"
    assert lead["deliveries"][0]["attempts"] == w.failed_attempts + 1
    assert store.outbox_counts() == {"delivered": 1}
    clock.now += timedelta(hours=2)
    assert w.run_once() == 0 and len(crm.posts) == w.failed_attempts + 1   # never sent again


def test_only_2xx_counts_as_delivered(store):
    clock = FakeTime()
    statuses = iter([500, 404, 302, 204])
    posts = []

    def post(url, body, headers, timeout_s):
        posts.append(headers[DELIVERY_HEADER])
        return next(statuses)

    store.save_lead("CA1", LEAD, (URL, None))
    w = OutboxWorker(store, {}, post=post, now=lambda: clock.now)
    for _ in range(4):
        w.run_once()
        clock.advance_to_next_due(store)
    assert len(posts) == 4 and len(set(posts)) == 1       # the same delivery id every time
    assert store.outbox_counts() == {"delivered": 1}
    assert store.recent_leads()[0]["deliveries"][0]["attempts"] == 4


def test_the_body_is_signed_with_the_businesses_secret(store):
    clock = FakeTime()
    crm = FakeCrm(None, clock)
    store.save_lead("CA1", LEAD, (URL, "CRM_SECRET"), {"number": "+97235550100", "name": "Locks"})
    worker(store, crm, clock).run_once()
    url, body, headers = crm.posts[0]
    assert url == URL
    assert verify("s3cret", body, headers[SIGNATURE_HEADER], 1_800_000_000)
    assert not verify("other", body, headers[SIGNATURE_HEADER], 1_800_000_000)
    payload = json.loads(body)
    assert payload["event"] == "lead.complete" and payload["delivery_id"] == headers[DELIVERY_HEADER]
    assert payload["lead"]["service"] == "פריצת דלת" and payload["lead"]["phone"] == "+972501234567"
    assert payload["business"] == {"number": "+97235550100", "name": "Locks"}


def test_a_missing_secret_is_retried_not_sent_unsigned(store):
    clock = FakeTime()
    crm = FakeCrm(None, clock)
    store.save_lead("CA1", LEAD, (URL, "CRM_SECRET"))
    w = worker(store, crm, clock, environ={})
    w.run_once()
    assert crm.posts == []
    assert store.recent_leads()[0]["deliveries"][0]["last_error"] == "CRM_SECRET is not set: cannot sign the delivery"
    assert store.outbox_counts() == {"pending": 1}


def test_after_the_retention_window_a_message_is_dead_but_kept(store):
    clock = FakeTime()
    crm = FakeCrm(up_after=clock.now + timedelta(days=30), clock=clock)
    store.save_lead("CA1", LEAD, (URL, "CRM_SECRET"))
    w = worker(store, crm, clock)
    clock.now = utcnow() + timedelta(seconds=RETENTION_S + 1)     # older than the window
    w.run_once()
    assert store.outbox_counts() == {"dead": 1}
    assert store.recent_leads()[0]["deliveries"][0]["last_error"].startswith("ConnectionRefusedError")
    assert store.recent_leads()[0]["status"] == "complete"                 # the lead itself is untouched
