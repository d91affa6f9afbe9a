"""What a database needs to reach this code's schema: a decision on facts observed in it.

A database is in one of five states when the server starts, told apart by its ``alembic_version``
table (Alembic's record of the revision it is at) and by which of the application's tables exist:

- **empty** (none of our tables, no version): create the schema at head;
- **the previous release's** (our tables, no version table: it made them with ``create_all`` and
  kept no record): adopt it, that is stamp the revision its schema is (``0001``), then upgrade;
- **behind** (a known revision below head): upgrade;
- **at head**: nothing to do;
- **unusable**: a revision this code does not know (a newer release upgraded it), several heads,
  or some of our tables without a version table. Refused with the reason, never touched: running
  old code on a newer schema, or guessing at a partial one, is how rows get lost.

Pure: no database here, only the facts the shell (``runner.py``) reads and the plan it carries out.
"""
from __future__ import annotations

from dataclasses import dataclass

APP_TABLES = frozenset({"businesses", "calls", "leads", "outbox"})
PREVIOUS_RELEASE = "0001"
"""The revision whose schema the previous release's ``create_all`` made (git f7ece1c)."""


class SchemaError(RuntimeError):
    """This database cannot be brought to this code's schema; the message says why and what to do."""


@dataclass(frozen=True)
class Observed:
    tables: frozenset[str]
    versions: tuple[str, ...]
    """The rows of ``alembic_version`` (none when the table is absent or empty)."""
    calls_columns: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CreateAtHead:
    pass


@dataclass(frozen=True)
class AdoptUnversioned:
    stamp: str
    """The revision the unversioned schema is, stamped before upgrading from it."""


@dataclass(frozen=True)
class Upgrade:
    from_revision: str


@dataclass(frozen=True)
class UpToDate:
    revision: str


@dataclass(frozen=True)
class Refuse:
    reason: str


Plan = CreateAtHead | AdoptUnversioned | Upgrade | UpToDate | Refuse


def decide(observed: Observed, known: frozenset[str], head: str) -> Plan:
    if len(observed.versions) > 1:
        return Refuse(f"the database records several schema revisions at once ({', '.join(observed.versions)}); "
                      f"this code has one line of revisions ending at {head}")
    if observed.versions:
        (revision,) = observed.versions
        if revision == head:
            return UpToDate(revision)
        if revision not in known:
            return Refuse(f"the database is at schema revision {revision!r}, which this code does not know "
                          f"(its newest is {head!r}): a newer release has upgraded it. Run that release "
                          f"(or newer) against it, or restore a backup taken before the upgrade")
        return Upgrade(revision)
    present = APP_TABLES & observed.tables
    if not present:
        return CreateAtHead()
    if present != APP_TABLES:
        return Refuse(f"the database has the tables {', '.join(sorted(present))} but not "
                      f"{', '.join(sorted(APP_TABLES - present))}, and no alembic_version: it was not made by "
                      f"this application (or only in part); refusing to change it")
    # calls.timeline_json (0002) without a version table: made by create_all of a build between
    # the previous release and the migrations; its schema is 0002's, so that is what it is stamped.
    return AdoptUnversioned("0002" if "timeline_json" in observed.calls_columns else PREVIOUS_RELEASE)


def describe(plan: Plan, head: str) -> str:
    """What ``upgrade`` did (from which revision to which), in one line."""
    if isinstance(plan, CreateAtHead):
        return f"empty database -> {head} (tables created)"
    if isinstance(plan, AdoptUnversioned):
        return f"previous release's schema, no version table (stamped {plan.stamp}) -> {head}"
    if isinstance(plan, Upgrade):
        return f"{plan.from_revision} -> {head}"
    if isinstance(plan, UpToDate):
        return f"{plan.revision} -> {head}: already at head, nothing to do"
    return f"refused: {plan.reason}"


def where(plan: Plan, head: str) -> str:
    """Where the database stands, before any upgrade, in one line (``python -m server.storage current``)."""
    if isinstance(plan, UpToDate):
        return f"at {plan.revision} (head)"
    if isinstance(plan, Upgrade):
        return f"at {plan.from_revision}; this code's head is {head}: upgrade pending"
    if isinstance(plan, AdoptUnversioned):
        return (f"the previous release's schema without a version table (that is {plan.stamp}); this code's head "
                f"is {head}: upgrade pending")
    if isinstance(plan, CreateAtHead):
        return f"empty; this code's head is {head}: upgrade creates the tables"
    return f"refused: {plan.reason}"
