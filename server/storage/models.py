"""Tables: businesses, calls, leads, and the outbox of lead deliveries to each business's CRM.

Times are UTC; JSON columns are text (portable between SQLite and Postgres). A call's caller
number is stored masked (like the logs); a lead's callback phone is stored in full, because
calling the caller back is the point of the lead.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Business(Base):
    __tablename__ = "businesses"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    profile_json: Mapped[str] = mapped_column(Text)
    """The whole ``BusinessProfile`` as JSON (the columns above are for queries)."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    """False once the number is no longer in the profiles file: kept for the old calls, never answers."""
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Call(Base):
    __tablename__ = "calls"
    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    stream_sid: Mapped[str] = mapped_column(String(64), default="")
    business_id: Mapped[int | None] = mapped_column(ForeignKey("businesses.id"), nullable=True)
    called_number: Mapped[str] = mapped_column(String(32), default="")
    caller_masked: Mapped[str] = mapped_column(String(32), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(32), default="in_progress")
    """in_progress, lead_captured, partial_lead, no_lead, failed."""
    hangup_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    responses: Mapped[int] = mapped_column(Integer, default=0)
    barge_ins: Mapped[int] = mapped_column(Integer, default=0)
    latency_median_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_max_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latencies_json: Mapped[str] = mapped_column(Text, default="[]")
    """End of the caller's speech -> first AI audio, per answered turn (ms)."""
    transcript_json: Mapped[str] = mapped_column(Text, default="[]")
    """[[role, text], ...] in order."""
    timeline_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The call's timeline (``server/core/timeline.py``): spans and events per lane, written at the end."""
    transfer_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    """A call handed to a person: ``{"reason", "to" (masked), "status"}`` (Twilio's DialCallStatus once known)."""
    recording_path: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """The call's stereo WAV (``server/call/recording_keeper.py``), for businesses that record."""
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    """A few lines for the business's owner, written by the model after the call (``server/call/owner_summary.py``)."""
    recording_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the call's recording could not be written (the caller was told it was recorded)."""
    usage_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The model's tokens by kind, those of replies abandoned unheard, transcription seconds, and the
    cost split (model, transcription, phone, abandoned, total; None where a price is unknown)."""
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The call's total cost in USD; NULL when unknown (a model without a price) or not counted."""


class Lead(Base):
    __tablename__ = "leads"
    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), unique=True, index=True)
    business_id: Mapped[int | None] = mapped_column(ForeignKey("businesses.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    """complete or partial."""
    service: Mapped[str | None] = mapped_column(String(200), nullable=True)
    city: Mapped[str | None] = mapped_column(String(100), nullable=True)
    city_served: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    missing_json: Mapped[str] = mapped_column(Text, default="[]")
    sources_json: Mapped[str] = mapped_column(Text, default="{}")
    """Where each field came from: ``tool`` (the model's save_lead) or ``transcript``."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    visit_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The visit booked for it (start, says, status: booked or unavailable); NULL: none. Last, as
    revision 0005 adds it."""


class OutboxMessage(Base):
    """One delivery of one lead version to one CRM URL; written in the lead's own transaction."""
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    """Sent as X-ProSaaS-Delivery: the receiver's idempotency key."""
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret_env: Mapped[str | None] = mapped_column(String(100), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    """pending, delivered, dead (gave up after the retention window; still stored)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class StreamClaim(Base):
    """A stream token's nonce, once it opened a media stream (``server/call/stream_tokens.py``)."""
    __tablename__ = "stream_claims"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
