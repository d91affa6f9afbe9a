"""``python -m server.storage upgrade|init|current``: the database's schema from the command line.

- ``upgrade`` brings DATABASE_URL to this code's schema (``server/storage/migrations``) and says
  from which revision to which: an empty database is created, the previous release's (no version
  table) is adopted and upgraded, one at head is left alone.
- ``init`` does the same, then loads the business profiles (BUSINESSES_FILE).
- ``current`` says where the database stands, changing nothing.

The server upgrades on start too; these are for a database prepared ahead (a new Postgres, a
deploy step before the new release starts). Reads DATABASE_URL and BUSINESSES_FILE like the server
(``.env`` included). A database that cannot be served (newer than this code, unreachable, a bad
URL) is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dotenv import load_dotenv
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from server.business.profiles import DEFAULT_FILE, ProfileError, Profiles, load_profiles
from server.storage.db import DEFAULT_URL, Store
from server.storage.migrations import SchemaError, head_revision, plan_for
from server.storage.migrations.plan import Refuse, where
from server.storage.migrations.runner import failure_line

COMMANDS = {"upgrade": "bring the database to this code's schema and say from which revision to which",
            "init": "upgrade, then load the business profiles",
            "current": "say which schema revision the database is at, changing nothing"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.storage", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=list(COMMANDS),
                        help="; ".join(f"{name}: {what}" for name, what in COMMANDS.items()))
    command = parser.parse_args(argv).command
    load_dotenv()
    url = os.environ.get("DATABASE_URL", "").strip() or DEFAULT_URL
    profiles = None
    if command == "init":
        try:
            profiles = load_profiles(os.environ.get("BUSINESSES_FILE", "").strip() or DEFAULT_FILE)
        except ProfileError as exc:
            return _fail(str(exc))
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _fail("DATABASE_URL is not a database URL (expected e.g. sqlite:///path/to/file.sqlite3 or "
                     "postgresql+psycopg://user:password@host:5432/dbname)")
    try:
        store = Store(url)
    except ArgumentError as exc:          # an unknown dialect or driver name
        return _fail(f"DATABASE_URL {shown}: {exc} (PostgreSQL is postgresql+psycopg://...)")
    except ImportError as exc:
        return _fail(f"DATABASE_URL {shown}: its driver is not installed ({exc})")
    try:
        return _run(command, store, shown, profiles)
    except SchemaError as exc:
        return _fail(f"{shown}: {exc}")
    except SQLAlchemyError as exc:
        return _fail(f"cannot use the database {shown}: {failure_line(exc)}")
    finally:
        store.close()


def _run(command: str, store: Store, shown: str, profiles: Profiles | None) -> int:
    if command == "current":
        if store.engine.dialect.name == "sqlite" and not _sqlite_file_exists(store):
            print(f"{shown}: no database file yet; this code's head is {head_revision()}: upgrade creates it")
            return 0
        plan, head = plan_for(store.engine)
        if isinstance(plan, Refuse):
            raise SchemaError(plan.reason)
        print(f"{shown}: {where(plan, head)}")
        return 0
    result = store.create_schema()
    if command == "upgrade":
        print(f"{shown}: {result.summary}")
        return 0
    count = len(store.sync_businesses(profiles))
    print(f"schema ready on {shown}; {count} businesses loaded from {profiles.source}")
    return 0


def _sqlite_file_exists(store: Store) -> bool:
    database = store.engine.url.database
    return not database or database == ":memory:" or Path(database).exists()


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
