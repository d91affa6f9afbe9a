"""Schema migrations (``server/storage/migrations``) on SQLite and on PostgreSQL.

A database made by the previous release (its frozen models, ``tests/previous_release_models.py``,
holding a row of every kind) is upgraded without losing or changing a value; revision 0001 is that
release's schema to the constraint names; the revisions replayed give exactly the models' schema
(Alembic's ``compare_metadata`` finds nothing), and so does the create-at-head road of an empty
database; upgrading is idempotent; a database newer than this code or not ours is refused with a
clear error and left alone; two instances starting at once on PostgreSQL take turns; the command
line does the same from any working directory, and says why it cannot in one line.
"""
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, insert, select, text

from server.settings import Settings
from server.storage.db import Store
from server.storage.migrations import SchemaError, head_revision
from server.storage.migrations.plan import (AdoptUnversioned, CreateAtHead, Observed, Refuse, Upgrade, UpToDate,
                                            decide)
from server.storage.migrations.runner import PG_UPGRADE_LOCK_KEY, alembic_config
from server.storage.models import Base
from tests import previous_release_models as previous
from tests.pg_cluster import cluster, new_database  # noqa: F401 - the shared fixture

ROOT = Path(__file__).resolve().parents[1]
T = datetime(2026, 11, 29, 10, 15, 30, 123456)
APP_TABLES = ["businesses", "calls", "leads", "outbox"]


# --- the decision, on facts alone ------------------------------------------------------------------

KNOWN = frozenset({"0001", "0002"})
ALL = frozenset(APP_TABLES)


@pytest.mark.parametrize("observed, plan", [
    (Observed(frozenset(), ()), CreateAtHead()),
    (Observed(frozenset({"someone_elses"}), ()), CreateAtHead()),
    (Observed(ALL, ()), AdoptUnversioned("0001")),
    (Observed(ALL | {"alembic_version"}, ()), AdoptUnversioned("0001")),          # an empty version table
    (Observed(ALL, (), frozenset({"id", "timeline_json"})), AdoptUnversioned("0002")),
    (Observed(ALL | {"alembic_version"}, ("0001",)), Upgrade("0001")),
    (Observed(ALL | {"alembic_version"}, ("0002",)), UpToDate("0002")),
])
def test_what_each_state_of_a_database_needs(observed, plan):
    assert decide(observed, KNOWN, "0002") == plan


@pytest.mark.parametrize("observed, words", [
    (Observed(ALL | {"alembic_version"}, ("0099",)), "revision '0099', which this code does not know"),
    (Observed(ALL | {"alembic_version"}, ("0001", "0002")), "several schema revisions"),
    (Observed(frozenset({"businesses", "calls"}), ()), "but not leads, outbox"),
])
def test_a_database_this_code_cannot_serve_is_refused(observed, words):
    plan = decide(observed, KNOWN, "0002")
    assert isinstance(plan, Refuse) and words in plan.reason


# --- databases on both dialects ----------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request, tmp_path):
    """A factory of new empty databases of one dialect."""
    if request.param == "sqlite":
        names = iter(range(100))
        return lambda: f"sqlite:///{tmp_path}/db{next(names)}.sqlite3"
    pg = request.getfixturevalue("cluster")
    return lambda: new_database(pg)


@pytest.fixture()
def engines():
    made = []

    def engine(url: str):
        made.append(create_engine(url))
        return made[-1]
    yield engine
    for e in made:
        e.dispose()


def previous_release_database(url: str, engine) -> dict:
    """A database as the previous release left it: its create_all, then a row of every kind
    (two businesses, two calls, a lead, an outbox message in each status; ids from the database,
    1, 2, 3 in order). Returns every row."""
    previous.Base.metadata.create_all(engine)
    b, c, lead, o = (previous.Base.metadata.tables[name] for name in APP_TABLES)
    with engine.begin() as conn:
        conn.execute(insert(b), [
            dict(number="+97235550100", name="מנעולן השרון", profile_json='{"name": "מנעולן"}', active=True,
                 updated_at=T),
            dict(number="+97235550200", name="Clean & Shine", profile_json="{}", active=False, updated_at=T)])
        conn.execute(insert(c), [
            dict(call_sid="CA" + "1" * 32, stream_sid="MZ" + "1" * 32, business_id=1,
                 called_number="+97235550100", caller_masked="+97250*****67", started_at=T,
                 ended_at=datetime(2026, 11, 29, 10, 17, 2, 5), outcome="lead_captured", hangup_reason="goodbye",
                 turns=4, responses=5, barge_ins=1, latency_median_ms=640, latency_max_ms=910,
                 latencies_json="[640, 910, 580]", transcript_json='[["caller", "אני צריך מנעולן"]]'),
            dict(call_sid="CA" + "2" * 32, stream_sid="", business_id=None, called_number="",
                 caller_masked="", started_at=datetime(2026, 11, 29, 11, 0, 0), ended_at=None,
                 outcome="in_progress", hangup_reason=None, turns=0, responses=0, barge_ins=0,
                 latency_median_ms=None, latency_max_ms=None, latencies_json="[]", transcript_json="[]")])
        conn.execute(insert(lead), [dict(
            call_id=1, business_id=1, status="complete", service="התקנת מנעול חכם", city="רמת גן",
            city_served=True, name="דנה", phone="+972501234567", notes="דחוף", missing_json="[]",
            sources_json='{"city": "tool"}', created_at=T, updated_at=T)])
        message = dict(lead_id=1, url="https://crm.example.com/leads", secret_env="CRM_SECRET", body='{"a": 1}',
                       attempts=0, next_attempt_at=T, lease_until=None, last_error=None, created_at=T,
                       delivered_at=None)
        conn.execute(insert(o), [
            {**message, "delivery_id": "dlv_pending", "status": "pending", "lease_until": T},
            {**message, "delivery_id": "dlv_delivered", "status": "delivered", "attempts": 2,
             "delivered_at": T},
            {**message, "delivery_id": "dlv_dead", "status": "dead", "attempts": 9, "secret_env": None,
             "last_error": "HTTP 500 from the CRM"}])
    return every_row(engine)


def every_row(engine) -> dict:
    """Every value of every column the previous release had, table by table, in id order."""
    with engine.connect() as conn:
        return {name: [row._asdict() for row in conn.execute(select(table).order_by(table.c.id))]
                for name, table in previous.Base.metadata.tables.items()}


def version(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def differences(engine, metadata) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, metadata)


def snapshot(engine) -> dict:
    """The schema as the database reports it: columns (type, nullability, default), keys with
    their names, indexes, unique constraints; on SQLite also the stored CREATE statements."""
    insp = inspect(engine)
    shape = {}
    for t in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        shape[t] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t),
            "fks": sorted((f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"])
                          for f in insp.get_foreign_keys(t)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
            "uniques": sorted((u["name"] or "", tuple(u["column_names"])) for u in insp.get_unique_constraints(t))}
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            shape["sqlite_master"] = sorted(conn.execute(text(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version'")).all())
    return shape


def replay(engine, revision: str) -> None:
    """Run the revisions themselves up to ``revision`` (not the create-at-head road)."""
    with engine.connect() as conn, conn.begin():
        command.upgrade(alembic_config(conn), revision)


def test_a_previous_release_database_is_upgraded_without_losing_a_row(new_url, engines):
    url = new_url()
    engine = engines(url)
    before = previous_release_database(url, engine)
    assert [len(before[t]) for t in APP_TABLES] == [2, 2, 1, 3]
    assert "alembic_version" not in inspect(engine).get_table_names()

    store = Store(url)
    result = store.create_schema()
    assert result.summary == "previous release's schema, no version table (stamped 0001) -> 0006"
    assert version(engine) == ["0006"]
    assert every_row(engine) == before
    assert {"timeline_json", "transfer_json"} <= {c["name"] for c in inspect(engine).get_columns("calls")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, timeline_json, transfer_json FROM calls ORDER BY id")).all() == \
            [(1, None, None), (2, None, None)]
    assert differences(engine, Base.metadata) == []
    leads = store.recent_leads()                  # today's store reads the old rows through today's models
    assert [(x["name"], [d["status"] for d in x["deliveries"]]) for x in leads] == \
        [("דנה", ["pending", "delivered", "dead"])]
    assert [c["outcome"] for c in store.recent_calls()] == ["in_progress", "lead_captured"]
    store.call_started("CA" + "3" * 32, "MZ3", 1, "+97235550100", "+97250*****99")    # ids go on where they were
    with engine.connect() as conn:
        assert conn.execute(text("SELECT max(id) FROM calls")).scalar() == 3
    store.close()


def test_revision_0001_is_the_previous_release_schema_to_the_constraint_names(new_url, engines):
    made_then, replayed = engines(new_url()), engines(new_url())
    previous.Base.metadata.create_all(made_then)
    replay(replayed, "0001")
    assert snapshot(replayed) == snapshot(made_then)
    assert differences(replayed, previous.Base.metadata) == []
    # the comparison can fail: today's models have columns more
    added = differences(replayed, Base.metadata)
    columns = [(a[0], a[2], a[3].name) for a in added if a[0] == "add_column"]
    assert columns == [("add_column", "calls", "timeline_json"), ("add_column", "calls", "transfer_json"),
                       ("add_column", "calls", "recording_path"), ("add_column", "calls", "summary"),
                       ("add_column", "calls", "recording_error"), ("add_column", "calls", "usage_json"),
                       ("add_column", "calls", "cost_usd"), ("add_column", "leads", "visit_json")]
    assert [a[1].name for a in added if a[0] == "add_table"] == ["stream_claims"]


def test_the_revisions_give_exactly_the_models_schema_and_so_does_create_at_head(new_url, engines):
    replayed, created = engines(new_url()), engines(new_url())
    replay(replayed, "head")
    assert differences(replayed, Base.metadata) == []
    result = Store(str(created.url.render_as_string(hide_password=False))).create_schema()
    assert isinstance(result.plan, CreateAtHead) and result.summary == "empty database -> 0006 (tables created)"
    assert version(created) == version(replayed) == [head_revision()] == ["0006"]
    assert differences(created, Base.metadata) == []
    shape_replayed, shape_created = snapshot(replayed), snapshot(created)
    # SQLite keeps each table's CREATE text: ALTER ... ADD COLUMN writes it differently from CREATE
    shape_replayed.pop("sqlite_master", None), shape_created.pop("sqlite_master", None)
    assert shape_replayed == shape_created


def test_downgrading_to_0001_gives_back_the_previous_release_and_upgrading_again_keeps_the_rows(new_url, engines):
    url = new_url()
    engine = engines(url)
    before = previous_release_database(url, engine)
    store = Store(url)
    store.create_schema()
    with engine.connect() as conn, conn.begin():
        command.downgrade(alembic_config(conn), "0001")
    assert version(engine) == ["0001"]
    assert differences(engine, previous.Base.metadata) == []
    assert every_row(engine) == before
    assert store.create_schema().summary == "0001 -> 0006"          # a versioned database behind head
    assert every_row(engine) == before and differences(engine, Base.metadata) == []
    store.close()


def test_upgrading_twice_changes_nothing(new_url, engines):
    url = new_url()
    engine = engines(url)
    store = Store(url)
    assert isinstance(store.create_schema().plan, CreateAtHead)
    shape = snapshot(engine)
    again = store.create_schema()
    assert again.plan == UpToDate("0006") and not again.changed
    assert again.summary == "0006 -> 0006: already at head, nothing to do"
    assert snapshot(engine) == shape and version(engine) == ["0006"]
    store.close()


def test_a_database_newer_than_this_code_is_refused_and_left_alone(new_url, engines):
    url = new_url()
    engine = engines(url)
    store = Store(url)
    store.create_schema()
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    shape = snapshot(engine)
    with pytest.raises(SchemaError, match=r"revision '0099', which this code does not know \(its newest is "
                                          r"'0006'\): a newer release has upgraded it"):
        store.create_schema()
    assert snapshot(engine) == shape and version(engine) == ["0099"]
    store.close()


def test_a_database_with_only_some_of_our_tables_is_refused(tmp_path, engines):
    url = f"sqlite:///{tmp_path}/partial.sqlite3"
    engine = engines(url)
    previous.Base.metadata.tables["businesses"].create(engine)
    with pytest.raises(SchemaError, match="has the tables businesses but not calls, leads, outbox"):
        Store(url).create_schema()
    assert inspect(engine).get_table_names() == ["businesses"]


# --- two instances starting at once ----------------------------------------------------------------

def start_together(url: str, count: int) -> tuple[list[threading.Thread], list]:
    results: list = []

    def run():
        store = Store(url)
        try:
            results.append(store.create_schema())
        except Exception as exc:                      # noqa: BLE001 - reported by the assertion
            results.append(exc)
        finally:
            store.close()
    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads, results


def plan_names(results: list) -> list[str]:
    return [type(r.plan).__name__ if hasattr(r, "plan") else repr(r) for r in results]


def test_two_instances_starting_at_once_on_postgres_take_turns(cluster, engines):  # noqa: F811
    url = new_database(cluster)
    engine = engines(url)
    holder = engine.connect()
    holder.begin()
    holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_UPGRADE_LOCK_KEY})   # hold the door
    threads, results = start_together(url, 2)
    waiting = 0
    for _ in range(400):                              # both instances queue on the lock (5 s at most)
        with engine.connect() as conn:
            waiting = conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                        "AND NOT granted")).scalar()
        if waiting == 2 or results:
            break
        time.sleep(0.0125)
    assert (waiting, results) == (2, [])
    holder.rollback()
    holder.close()
    for t in threads:
        t.join(timeout=30)
    assert sorted(plan_names(results)) == ["CreateAtHead", "UpToDate"], results
    assert version(engine) == ["0006"] and differences(engine, Base.metadata) == []


def test_two_instances_starting_at_once_on_sqlite_take_turns(tmp_path, engines):
    path = tmp_path / "shared.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")                 # the file's write lock, as another process would
    threads, results = start_together(f"sqlite:///{path}", 2)
    time.sleep(0.3)                                   # both reach their own BEGIN IMMEDIATE and wait
    assert results == []
    holder.execute("COMMIT")
    holder.close()
    for t in threads:
        t.join(timeout=30)
    assert sorted(plan_names(results)) == ["CreateAtHead", "UpToDate"], results
    assert differences(engines(f"sqlite:///{path}"), Base.metadata) == []


# --- the server's start -----------------------------------------------------------------------------

def test_the_server_start_upgrades_a_previous_release_database(tmp_path, engines):
    from server.app import create_app
    url = f"sqlite:///{tmp_path}/app.sqlite3"
    engine = engines(url)
    before = previous_release_database(url, engine)
    create_app(Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_SIGNATURE_VALIDATION": "off",
                                  "OUTBOX_WORKER": "off", "DATABASE_URL": url}))
    assert version(engine) == ["0006"]
    after = every_row(engine)
    assert [(b["id"], b["number"], b["active"]) for b in after["businesses"]] == \
        [(1, "+97235550100", True), (2, "+97235550200", True)]          # the profiles file was loaded after
    assert {t: after[t] for t in ["calls", "leads", "outbox"]} == {t: before[t] for t in ["calls", "leads", "outbox"]}


def test_the_server_start_on_a_newer_database_stops_in_one_line(tmp_path, engines, caplog):
    from server.app import create_app
    url = f"sqlite:///{tmp_path}/newer.sqlite3"
    Store(url).create_schema()
    with engines(url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(SystemExit) as stopped:
        create_app(Settings.from_env({"OPENAI_API_KEY": "sk-test-abcdef", "TWILIO_SIGNATURE_VALIDATION": "off",
                                      "OUTBOX_WORKER": "off", "DATABASE_URL": url}))
    assert stopped.value.code == 3                    # gunicorn: "worker failed to boot", the arbiter halts
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert line.startswith(f"database {url} cannot be served: the database is at schema revision '0099'")


# --- the command line ---------------------------------------------------------------------------------

def storage_command(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "DATABASE_URL": url,
           "BUSINESSES_FILE": ""}
    return subprocess.run([sys.executable, "-m", "server.storage", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_command_line_upgrades_a_previous_release_file_from_any_directory(tmp_path, engines):
    db = tmp_path / "old.sqlite3"
    url = f"sqlite:///{db}"
    engine = engines(url)
    before = previous_release_database(url, engine)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    current = storage_command(["current"], url, elsewhere)
    assert (current.returncode, current.stderr) == (0, "")
    assert current.stdout == (f"{url}: the previous release's schema without a version table (that is 0001); "
                              f"this code's head is 0006: upgrade pending\n")
    done = storage_command(["upgrade"], url, elsewhere)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{url}: previous release's schema, no version table (stamped 0001) -> 0006\n"
    assert every_row(engine) == before and version(engine) == ["0006"]
    again = storage_command(["upgrade"], url, elsewhere)
    assert (again.returncode, again.stdout) == (0, f"{url}: 0006 -> 0006: already at head, nothing to do\n")
    assert storage_command(["current"], url, elsewhere).stdout == f"{url}: at 0006 (head)\n"
    assert list(elsewhere.iterdir()) == []          # nothing written where it ran


def test_the_command_line_refuses_a_newer_database_in_one_line(tmp_path, engines):
    url = f"sqlite:///{tmp_path}/newer.sqlite3"
    Store(url).create_schema()
    with engines(url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    for args in (["upgrade"], ["current"], ["init"]):
        done = storage_command(args, url, tmp_path)
        assert (done.returncode, done.stdout) == (2, ""), args
        assert done.stderr.startswith(f"error: {url}: the database is at schema revision '0099', which this code "
                                      "does not know (its newest is '0006'): a newer release has upgraded it.")
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url, message", [
    ("not a url", "error: DATABASE_URL is not a database URL (expected e.g. sqlite:///path/to/file.sqlite3 or "
                  "postgresql+psycopg://user:password@host:5432/dbname)\n"),
    ("postgres://agent:s3cret@127.0.0.1/calls", "error: DATABASE_URL postgres://agent:***@127.0.0.1/calls: "
                                                "Can't load plugin: sqlalchemy.dialects:postgres (PostgreSQL is "
                                                "postgresql+psycopg://...)\n"),
    ("postgresql+psycopg://agent:s3cret@127.0.0.1:{port}/calls",
     "error: cannot use the database postgresql+psycopg://agent:***@127.0.0.1:{port}/calls: connection failed: "),
], ids=["not_a_url", "unknown_dialect", "nothing_listening"])
def test_the_command_line_says_in_one_line_why_it_cannot_reach_the_database(tmp_path, url, message):
    port = closed_loopback_port()
    done = storage_command(["upgrade"], url.format(port=port), tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(message.format(port=port)), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "s3cret" not in done.stderr

