"""The store: every database read and write of the server, as short transactions.

``Store(url)`` opens SQLAlchemy 2 on ``DATABASE_URL`` (SQLite file by default; a Postgres URL
works unchanged) and ``create_schema`` brings the database to this code's schema through the
migrations of ``server/storage/migrations`` (on start, or ``python -m server.storage upgrade``).
A lead and its outbox message are written in ONE transaction, so a committed lead always has its
delivery pending and a crash between the two cannot lose it. Outbox messages are claimed
with a conditional UPDATE (a lease), so two worker processes never deliver the same message at
the same time; the receiver dedupes retries on the delivery id.

The calls are short and rare (a call's start and end, a lead), so they run in the calling green
thread; SQLite in WAL mode answers them in about a millisecond.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from server.business.profiles import BusinessProfile, Profiles
from server.leads.capture import LeadSnapshot
from server.storage.migrations import UpgradeResult, upgrade_on_start, upgrade_to_head
from server.storage.models import Business, Call, Lead, OutboxMessage, StreamClaim, utcnow

SMS_SCHEME = "sms:"
"""An outbox message to ``sms:+9725...`` (RFC 5724) is a text message sent through Twilio, not a POST."""
DEFAULT_URL = "sqlite:///" + str(Path(__file__).resolve().parents[2] / "data" / "prosaas.sqlite3")


@dataclass(frozen=True)
class OutboxJob:
    id: int
    delivery_id: str
    url: str
    secret_env: str | None
    body: str
    attempts: int
    created_at: datetime


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")       # readers (the admin page, tests) never block a call
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()


class Store:
    def __init__(self, url: str = DEFAULT_URL, connect_timeout_ms: int = 3000, statement_timeout_ms: int = 5000) -> None:
        """PostgreSQL gets a connect timeout and a statement timeout (a database that stops
        answering costs a write its attempt, never a call its audio: the writes run in the record
        writer's thread, which also abandons an attempt after its own deadline)."""
        self.url = url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        options: dict = {}
        if url.startswith("postgresql"):
            options = {"pool_pre_ping": True, "pool_timeout": max(1, connect_timeout_ms // 1000),
                       "connect_args": {"connect_timeout": max(1, -(-connect_timeout_ms // 1000)),
                                        "options": f"-c statement_timeout={statement_timeout_ms}"}}
        self.engine = create_engine(url, future=True, **options)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> UpgradeResult:
        """Bring the database to this code's schema: an empty one is created at head, the previous
        release's (no version table) is stamped and upgraded, one at head is left alone (under a
        millisecond); one newer than this code raises ``SchemaError`` and is not touched."""
        return upgrade_to_head(self.engine)

    def upgrade_on_start(self) -> UpgradeResult:
        """``create_schema`` at the server's start: a database it cannot serve (newer, unreachable)
        is one log line and exit status 3 (gunicorn: "worker failed to boot"), not a traceback."""
        return upgrade_on_start(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    # --- businesses ---------------------------------------------------------------------------

    def sync_businesses(self, profiles: Profiles) -> dict[str, int]:
        """Insert or update every listed business; a number removed from the file stays (its calls
        refer to it) but is marked inactive and answers no more calls. Returns number -> id."""
        with self.session() as s, s.begin():
            for row in s.scalars(select(Business).where(Business.number.not_in(list(profiles.businesses)))):
                row.active = False
            ids = {}
            for profile in profiles.businesses.values():
                row = s.scalar(select(Business).where(Business.number == profile.number))
                if row is None:
                    row = Business(number=profile.number, name=profile.name, profile_json=profile.to_json())
                    s.add(row)
                else:
                    row.name, row.profile_json, row.active = profile.name, profile.to_json(), True
                s.flush()
                ids[profile.number] = row.id
        return ids

    def business_for(self, number: str) -> tuple[int, BusinessProfile] | None:
        with self.session() as s:
            row = s.scalar(select(Business).where(Business.number == number, Business.active.is_(True)))
            return None if row is None else (row.id, BusinessProfile.from_json(row.profile_json))

    # --- calls --------------------------------------------------------------------------------

    def call_started(self, call_sid: str, stream_sid: str, business_id: int | None, called_number: str,
                     caller_masked: str, business_number: str | None = None) -> None:
        """The call's record (an upsert: the webhook writes it, its stream again). ``business_number``:
        the business is found by its number (the record writer does not know the row ids)."""
        with self.session() as s, s.begin():
            if business_id is None and business_number:
                business_id = s.scalar(select(Business.id).where(Business.number == business_number))
            row = s.scalar(select(Call).where(Call.call_sid == call_sid))
            if row is None:
                s.add(Call(call_sid=call_sid, stream_sid=stream_sid, business_id=business_id,
                           called_number=called_number, caller_masked=caller_masked))
            elif stream_sid:                        # its stream (or a new stream of the same call)
                row.stream_sid = stream_sid

    def claim_stream(self, nonce: str, call_sid: str) -> bool:
        """A stream token's nonce opens one stream, once, on every instance sharing the database:
        True the first time, False when it was claimed before."""
        try:
            with self.session() as s, s.begin():
                s.add(StreamClaim(nonce=nonce, call_sid=call_sid))
        except IntegrityError:
            return False
        return True

    def call_ended(self, call_sid: str, outcome: str, hangup_reason: str, turns: int, responses: int,
                   barge_ins: int, latencies_ms: list[int], transcript: list[tuple[str, str]],
                   timeline: dict | None = None, usage: dict | None = None) -> None:
        """The call's end; ``usage``: its tokens and cost (``cost.total_usd`` is kept apart for sums)."""
        with self.session() as s, s.begin():
            row = s.scalar(select(Call).where(Call.call_sid == call_sid))
            if row is None:
                return
            row.ended_at, row.outcome, row.hangup_reason = utcnow(), outcome, hangup_reason
            row.turns, row.responses, row.barge_ins = turns, responses, barge_ins
            row.latency_median_ms = round(statistics.median(latencies_ms)) if latencies_ms else None
            row.latency_max_ms = max(latencies_ms) if latencies_ms else None
            row.latencies_json = json.dumps(latencies_ms)
            row.transcript_json = json.dumps(transcript, ensure_ascii=False)
            if timeline is not None:
                row.timeline_json = json.dumps(timeline, ensure_ascii=False, separators=(",", ":"))
            if usage is not None:
                _keep_usage(row, usage)

    def call_ending(self, call_sid: str) -> tuple[str, str | None, bool] | None:
        """What the after-stream TwiML needs, from the shared record (any instance may be asked):
        (outcome, hangup reason, ended), or None for a call no instance recorded."""
        with self.session() as s:
            row = s.execute(select(Call.outcome, Call.hangup_reason, Call.ended_at)
                            .where(Call.call_sid == call_sid)).first()
            return None if row is None else (row.outcome, row.hangup_reason, row.ended_at is not None)

    def called_number(self, call_sid: str) -> str | None:
        with self.session() as s:
            return s.scalar(select(Call.called_number).where(Call.call_sid == call_sid))

    def record_summary(self, call_sid: str, text: str | None, deliver_to: tuple[str, str | None] | None,
                       business: dict | None = None, delivery_key: str | None = None,
                       usage: dict | None = None) -> None:
        """The owner's summary on the call; with ``deliver_to``, and a lead on the call, a
        ``lead.summary`` delivery to the CRM in the same transaction (``delivery_key``: see
        ``save_lead``). ``usage``: the call's tokens and cost, now with the summary's."""
        with self.session() as s, s.begin():
            call = s.scalar(select(Call).where(Call.call_sid == call_sid))
            if call is None:
                return
            if usage is not None:
                _keep_usage(call, usage)
            if text is None:
                return
            call.summary = text
            lead = s.scalar(select(Lead).where(Lead.call_id == call.id))
            if deliver_to is None or lead is None:
                return
            delivery_id = _delivery_id(delivery_key)
            if _queued(s, delivery_id):
                return
            body = {"event": "lead.summary", "delivery_id": delivery_id, "lead": {"id": lead.id, "status": lead.status},
                    "summary": text, "business": business or {},
                    "call": {"call_sid": call_sid, "started_at": call.started_at.isoformat() + "Z"}}
            s.add(OutboxMessage(delivery_id=delivery_id, lead_id=lead.id, url=deliver_to[0], secret_env=deliver_to[1],
                                body=json.dumps(body, ensure_ascii=False)))

    def record_recording(self, call_sid: str, path: str, failed: bool = False) -> None:
        """The call's recording file, or (``failed``) why none could be written (``path`` then holds
        the reason): the caller was told the call is recorded, so a failure must show."""
        values = {"recording_error": path[:500], "recording_path": None} if failed else {"recording_path": path}
        with self.session() as s, s.begin():
            s.execute(update(Call).where(Call.call_sid == call_sid).values(**values))

    def record_transfer(self, call_sid: str, **fields) -> None:
        """Merge ``fields`` (reason, to (masked), status) into the call's transfer record."""
        with self.session() as s, s.begin():
            row = s.scalar(select(Call).where(Call.call_sid == call_sid))
            if row is None:
                return
            transfer = json.loads(row.transfer_json or "{}")
            transfer.update({k: v for k, v in fields.items() if v is not None})
            row.transfer_json = json.dumps(transfer, ensure_ascii=False, sort_keys=True)

    # --- leads and their delivery ---------------------------------------------------------------

    def save_lead(self, call_sid: str, lead: LeadSnapshot, deliver_to: tuple[str, str | None] | None,
                  business: dict | None = None, asked_for_person: bool = False,
                  sms: tuple[str, str, str] | None = None, delivery_key: str | None = None) -> int:
        """Write (or update) the call's lead; with ``deliver_to`` = (url, secret_env), queue its
        delivery in the same transaction. Returns the lead id. ``delivery_key``: the write's own
        key (the record writer's): the delivery id is derived from it, so the same write applied
        twice (a retry, a replay from the journal) queues one delivery, not two."""
        with self.session() as s, s.begin():
            call = s.scalar(select(Call).where(Call.call_sid == call_sid))
            if call is None:
                raise LookupError(f"no call {call_sid}")
            row = s.scalar(select(Lead).where(Lead.call_id == call.id))
            if row is None:
                row = Lead(call_id=call.id, business_id=call.business_id, status=lead.status)
                s.add(row)
            row.status, row.service, row.city, row.city_served = lead.status, lead.service, lead.city, lead.city_served
            row.name, row.phone, row.notes = lead.name, lead.phone, lead.notes
            row.missing_json = json.dumps(list(lead.missing))
            row.sources_json = json.dumps(lead.sources, sort_keys=True)
            row.visit_json = None if lead.visit is None else json.dumps(lead.visit, ensure_ascii=False, sort_keys=True)
            s.flush()
            delivery_id = _delivery_id(delivery_key)
            if deliver_to is not None and not _queued(s, delivery_id):
                body = {"event": f"lead.{lead.status}", "delivery_id": delivery_id,
                        "lead": {"id": row.id, "status": lead.status, "service": lead.service, "city": lead.city,
                                 "city_served": lead.city_served, "name": lead.name, "phone": lead.phone,
                                 "notes": lead.notes, "missing": list(lead.missing), "visit": lead.visit},
                        "business": business or {}, "call": {"call_sid": call_sid,
                                                             "started_at": call.started_at.isoformat() + "Z",
                                                             "asked_for_person": asked_for_person}}
                s.add(OutboxMessage(delivery_id=delivery_id, lead_id=row.id, url=deliver_to[0],
                                    secret_env=deliver_to[1], body=json.dumps(body, ensure_ascii=False)))
            if sms is not None and lead.status == "complete" and s.scalar(select(func.count()).where(
                    OutboxMessage.lead_id == row.id, OutboxMessage.url.like(f"{SMS_SCHEME}%"))) == 0:
                to, from_, text = sms                  # one confirmation per lead, however often it is saved
                s.add(OutboxMessage(delivery_id=f"sms_{uuid.uuid4().hex}", lead_id=row.id, url=SMS_SCHEME + to,
                                    secret_env=None, body=json.dumps({"from": from_, "body": text},
                                                                     ensure_ascii=False)))
            return row.id

    def claim_due(self, now: datetime, lease_s: int, limit: int = 10) -> list[OutboxJob]:
        """Pending messages whose time has come, each leased to this worker for ``lease_s``."""
        with self.session() as s, s.begin():
            rows = s.scalars(select(OutboxMessage).where(
                OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                (OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now))
                .order_by(OutboxMessage.next_attempt_at).limit(limit)).all()
            claimed = []
            for row in rows:
                won = s.execute(update(OutboxMessage).where(
                    OutboxMessage.id == row.id, OutboxMessage.status == "pending",
                    (OutboxMessage.lease_until.is_(None)) | (OutboxMessage.lease_until < now))
                    .values(lease_until=now + timedelta(seconds=lease_s))
                    .execution_options(synchronize_session=False)).rowcount
                if won == 1:
                    claimed.append(OutboxJob(row.id, row.delivery_id, row.url, row.secret_env, row.body,
                                             row.attempts, row.created_at))
            return claimed

    def delivery_succeeded(self, job_id: int, now: datetime) -> None:
        with self.session() as s, s.begin():
            s.execute(update(OutboxMessage).where(OutboxMessage.id == job_id).values(
                status="delivered", delivered_at=now, attempts=OutboxMessage.attempts + 1,
                lease_until=None, last_error=None))

    def delivery_failed(self, job_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """A failed attempt: retried at ``next_attempt_at``, or ``dead`` (kept, never deleted) when None."""
        values = {"attempts": OutboxMessage.attempts + 1, "lease_until": None, "last_error": error[:500]}
        if next_attempt_at is None:
            values["status"] = "dead"
        else:
            values["next_attempt_at"] = next_attempt_at
        with self.session() as s, s.begin():
            s.execute(update(OutboxMessage).where(OutboxMessage.id == job_id).values(**values))

    def next_due_at(self) -> datetime | None:
        with self.session() as s:
            return s.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.status == "pending"))

    # --- read-only listings -----------------------------------------------------------------------

    def recent_calls(self, limit: int = 50) -> list[dict]:
        with self.session() as s:
            rows = s.execute(select(Call, Business.name).outerjoin(Business, Call.business_id == Business.id)
                             .order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)).all()
            return [_call_dict(c, name) for c, name in rows]

    def recent_leads(self, limit: int = 50) -> list[dict]:
        with self.session() as s:
            rows = s.execute(select(Lead, Call.call_sid, Business.name)
                             .join(Call, Lead.call_id == Call.id)
                             .outerjoin(Business, Lead.business_id == Business.id)
                             .order_by(Lead.created_at.desc(), Lead.id.desc()).limit(limit)).all()
            deliveries: dict[int, list[OutboxMessage]] = {}
            ids = [lead.id for lead, _, _ in rows]
            for message in s.scalars(select(OutboxMessage).where(OutboxMessage.lead_id.in_(ids))
                                     .order_by(OutboxMessage.id)):
                deliveries.setdefault(message.lead_id, []).append(message)
            return [_lead_dict(lead, call_sid, business, deliveries.get(lead.id, []))
                    for lead, call_sid, business in rows]

    def costs_by_day(self, since: datetime, limit: int = 100_000) -> list[dict]:
        """Per business and per day (UTC) since ``since``: calls, call minutes, and what they cost
        (``cost_usd`` sums the calls whose cost is known; ``unknown`` counts the others)."""
        with self.session() as s:
            rows = s.execute(select(Call.started_at, Call.ended_at, Call.cost_usd, Business.name)
                             .outerjoin(Business, Call.business_id == Business.id)
                             .where(Call.started_at >= since).order_by(Call.started_at).limit(limit)).all()
        days: dict[tuple[str, str], dict] = {}
        for started, ended, cost, business in rows:
            key = (business or "(default)", started.date().isoformat())
            day = days.setdefault(key, {"business": key[0], "day": key[1], "calls": 0, "minutes": 0.0,
                                        "cost_usd": 0.0, "unknown": 0})
            day["calls"] += 1
            if ended is not None:
                day["minutes"] += (ended - started).total_seconds() / 60
            if cost is None:
                day["unknown"] += 1
            else:
                day["cost_usd"] += cost
        return [{**d, "minutes": round(d["minutes"], 2), "cost_usd": round(d["cost_usd"], 6)}
                for _, d in sorted(days.items(), key=lambda kv: (kv[0][1], kv[0][0]), reverse=True)]

    def list_calls(self, business_id: int | None = None, outcome: str | None = None, offset: int = 0,
                   limit: int = 25) -> tuple[list[dict], int]:
        """One page of calls, newest first, of one business and/or one outcome when given, and how
        many calls match in all."""
        where = ([Call.business_id == business_id] if business_id is not None else []) + \
                ([Call.outcome == outcome] if outcome else [])
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(Call).where(*where))
            rows = s.execute(select(Call, Business.name).outerjoin(Business, Call.business_id == Business.id)
                             .where(*where).order_by(Call.started_at.desc(), Call.id.desc())
                             .offset(max(0, offset)).limit(max(0, limit))).all()
            return [_call_dict(c, name) for c, name in rows], int(total or 0)

    def businesses(self) -> list[dict]:
        """Every business ever listed (inactive ones too: their calls stay), by name."""
        with self.session() as s:
            return [{"id": b.id, "name": b.name, "number": b.number, "active": b.active}
                    for b in s.scalars(select(Business).order_by(Business.name, Business.id))]

    def call_outcomes(self) -> list[str]:
        """The outcomes the stored calls have, sorted."""
        with self.session() as s:
            return sorted(s.scalars(select(Call.outcome).distinct()))

    def call_detail(self, call_sid: str) -> dict | None:
        """One call with its transcript, its lead and the lead's deliveries, and its timeline
        (parsed; None when none was recorded or it cannot be read); None for an unknown call."""
        with self.session() as s:
            found = s.execute(select(Call, Business.name).outerjoin(Business, Call.business_id == Business.id)
                              .where(Call.call_sid == call_sid)).first()
            if found is None:
                return None
            call, business = found
            lead = s.scalar(select(Lead).where(Lead.call_id == call.id))
            deliveries = [] if lead is None else s.scalars(
                select(OutboxMessage).where(OutboxMessage.lead_id == lead.id).order_by(OutboxMessage.id)).all()
            summary = _call_dict(call, business)
            summary.update(stream_sid=call.stream_sid, latencies_ms=json.loads(call.latencies_json or "[]"))
            return {"call": summary, "transcript": summary["transcript"],
                    "lead": None if lead is None else _lead_dict(lead, call_sid, business, deliveries),
                    "timeline": _parse_timeline(call.timeline_json)}

    def outbox_pending(self) -> tuple[int, datetime | None]:
        """Messages waiting for delivery, and when the oldest of them was queued (UTC)."""
        with self.session() as s:
            count, oldest = s.execute(select(func.count(), func.min(OutboxMessage.created_at))
                                      .where(OutboxMessage.status == "pending")).one()
            return int(count), oldest

    def outbox_counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
            return {status: n for status, n in rows}


def _delivery_id(key: str | None) -> str:
    """A random delivery id, or one derived from a write's idempotency key."""
    if key is None:
        return f"dlv_{uuid.uuid4().hex}"
    return "dlv_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _queued(s: Session, delivery_id: str) -> bool:
    return s.scalar(select(func.count()).where(OutboxMessage.delivery_id == delivery_id)) > 0


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def _keep_usage(call: Call, usage: dict) -> None:
    """The call's tokens and cost (``business.pricing.usage_record``); the total apart, for sums."""
    call.usage_json = json.dumps(usage, sort_keys=True)
    call.cost_usd = (usage.get("cost") or {}).get("total_usd")


def _call_dict(c: Call, business: str | None) -> dict:
    return {"call_sid": c.call_sid, "business": business, "called_number": c.called_number,
            "caller": c.caller_masked, "started_at": _iso(c.started_at), "ended_at": _iso(c.ended_at),
            "outcome": c.outcome, "hangup_reason": c.hangup_reason, "turns": c.turns, "responses": c.responses,
            "barge_ins": c.barge_ins, "latency_median_ms": c.latency_median_ms, "latency_max_ms": c.latency_max_ms,
            "transcript": json.loads(c.transcript_json or "[]"),
            "transfer": json.loads(c.transfer_json) if c.transfer_json else None,
            "recording": c.recording_path, "recording_error": c.recording_error, "summary": c.summary,
            "cost_usd": c.cost_usd, "usage": json.loads(c.usage_json) if c.usage_json else None}


def _lead_dict(lead: Lead, call_sid: str, business: str | None, deliveries: Iterable[OutboxMessage]) -> dict:
    return {"id": lead.id, "call_sid": call_sid, "business": business, "status": lead.status,
            "service": lead.service, "city": lead.city, "city_served": lead.city_served, "name": lead.name,
            "phone": lead.phone, "notes": lead.notes, "missing": json.loads(lead.missing_json or "[]"),
            "sources": json.loads(lead.sources_json or "{}"), "created_at": _iso(lead.created_at),
            "visit": json.loads(lead.visit_json) if lead.visit_json else None,
            "deliveries": [{"delivery_id": d.delivery_id, "status": d.status, "attempts": d.attempts,
                            "last_error": d.last_error, "delivered_at": _iso(d.delivered_at)} for d in deliveries]}


def _parse_timeline(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        timeline = json.loads(text)
    except ValueError:
        return None
    return timeline if isinstance(timeline, dict) else None
