"""Bringing a database to this code's schema: the shell that carries out ``plan.decide``.

One transaction does it all: the lock, the look at what is there, the work, the version stamp.

- **The lock.** PostgreSQL: ``pg_advisory_xact_lock`` first thing in the transaction. A second
  instance starting at the same moment waits on it, then looks (READ COMMITTED: it sees the first
  one's committed work), finds the database at head and does nothing. The lock ends with the
  transaction, so a crash leaves neither a held lock nor half a schema: PostgreSQL's DDL is
  transactional. SQLite: ``BEGIN IMMEDIATE`` takes the file's write lock before anything is
  read (a second process waits up to the store's 5 s busy timeout), and SQLite's DDL is
  transactional too once a BEGIN is out (the driver would otherwise run DDL outside any).
- **An empty database** is made by ``create_all`` from the models and stamped at head (Alembic's
  cookbook, "Building an Up to Date Database from Scratch"): on SQLite about 4 ms, against 8 to
  10 ms for replaying every revision (3 to 3.7 ms for the bare ``create_all`` of old), and the
  test suite makes hundreds of stores. The two roads cannot drift apart unnoticed:
  ``tests/test_migrations.py`` holds both to the models exactly.
- **Everything else** goes through Alembic's ``command.upgrade`` on this connection (``env.py``).

The version is read with one SELECT rather than through Alembic, so a start at head (every start
but the first after a release) costs the lock and three small queries: 0.4 to 0.8 ms on SQLite,
as the old ``create_all`` of a database that has its tables.

At the server's start (``upgrade_on_start``) a database the server cannot serve (newer than this
code, not ours, unreachable) is one log line and exit status 3: gunicorn's "worker failed to
boot", on which the arbiter stops instead of restarting the worker in a loop.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from server.storage.migrations.plan import (AdoptUnversioned, CreateAtHead, Observed, Plan, Refuse, SchemaError,
                                            Upgrade, UpToDate, decide, describe)
from server.storage.models import Base

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
PG_UPGRADE_LOCK_KEY = 0x70726F7361617301
"""Any constant shared by every instance of the application ("prosaas" + 1). Advisory locks are
per cluster: another database of the same cluster upgrading at the same moment only waits its turn."""
WORKER_BOOT_ERROR = 3
"""gunicorn's exit status for a worker that could not boot: the arbiter halts on it."""


@dataclass(frozen=True)
class UpgradeResult:
    plan: Plan
    head: str

    @property
    def summary(self) -> str:
        return describe(self.plan, self.head)

    @property
    def changed(self) -> bool:
        return not isinstance(self.plan, UpToDate)


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


@functools.cache
def _known() -> tuple[frozenset[str], str]:
    scripts = _scripts()
    return frozenset(s.revision for s in scripts.walk_revisions()), scripts.get_current_head()


def head_revision() -> str:
    return _known()[1]


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for this package's revisions, on ``connection`` (see ``env.py``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def observe(conn: Connection) -> Observed:
    tables = frozenset(inspect(conn).get_table_names())
    versions: tuple[str, ...] = ()
    if VERSION_TABLE in tables:
        versions = tuple(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    calls = frozenset(c["name"] for c in inspect(conn).get_columns("calls")) if "calls" in tables else frozenset()
    return Observed(tables, versions, calls)


def plan_for(engine: Engine) -> tuple[Plan, str]:
    """What ``upgrade_to_head`` would do now (read only, no lock): for ``python -m server.storage current``."""
    known, head = _known()
    with engine.connect() as conn:
        return decide(observe(conn), known, head), head


def upgrade_to_head(engine: Engine) -> UpgradeResult:
    """Create, adopt or upgrade the database to head; raise ``SchemaError`` when it cannot be."""
    known, head = _known()
    with engine.connect() as conn:
        with conn.begin():
            _lock(conn)
            plan = decide(observe(conn), known, head)
            if isinstance(plan, Refuse):
                raise SchemaError(plan.reason)
            _carry_out(conn, plan)
    return UpgradeResult(plan, head)


def upgrade_on_start(engine: Engine) -> UpgradeResult:
    """``upgrade_to_head`` at the server's start: what cannot be served ends the start in one line."""
    try:
        result = upgrade_to_head(engine)
    except (SchemaError, SQLAlchemyError) as exc:
        log.critical("database %s cannot be served: %s", engine.url.render_as_string(hide_password=True),
                     failure_line(exc))
        raise SystemExit(WORKER_BOOT_ERROR) from None
    if result.changed:
        log.info("database schema: %s", result.summary)
    return result


def failure_line(exc: Exception) -> str:
    """One line on why: ours as is; a driver's own first line, without SQLAlchemy's statement dump
    and background link (the driver's message carries no password)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_UPGRADE_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _carry_out(conn: Connection, plan: Plan) -> None:
    if isinstance(plan, UpToDate):
        return
    if isinstance(plan, CreateAtHead):
        Base.metadata.create_all(conn)
        _stamp(conn, "head")
        return
    if isinstance(plan, AdoptUnversioned):
        _stamp(conn, plan.stamp)
    assert isinstance(plan, (AdoptUnversioned, Upgrade)), plan
    command.upgrade(alembic_config(conn), "head")


def _stamp(conn: Connection, revision: str) -> None:
    MigrationContext.configure(conn, opts={"transactional_ddl": True}).stamp(_scripts(), revision)
