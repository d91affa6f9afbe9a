"""The record writer (``server.storage.record_writer``): a call's writes kept until the database
takes them, in order, once; journaled and taken over by the next process; a database that is down,
a disk that is full."""
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from server.leads.capture import LeadSnapshot
from server.storage.models import Call, Lead, OutboxMessage
from server.storage.record_writer import RecordWriter, lead_args
from tests.store_helpers import profiles, store  # noqa: F401 - fixtures

CALL = "CA" + "1" * 32
LOCKSMITH = "+97235550100"
LEAD = LeadSnapshot("complete", "התקנת מנעול חכם", "תל אביב-יפו", True, "דני", "+972501234567", None, (),
                    {"service": "tool"})
CRM = ["https://crm.example.com/leads", "CRM_SECRET_LOCKSMITH"]
BUSINESS = {"number": LOCKSMITH, "name": "מנעולן השרון"}


def count(store, model, *where) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def put_call(writer) -> None:
    writer.put("call_started", CALL, stream_sid="MZ1", business_number=LOCKSMITH, called=LOCKSMITH,
               caller_masked="+97250*****67")
    writer.put("save_lead", CALL, lead=lead_args(LEAD), deliver_to=CRM, business=BUSINESS, asked_for_person=False,
               sms=None)
    writer.put("call_ended", CALL, outcome="lead_captured", hangup_reason="lead_captured", turns=3, responses=5,
               barge_ins=0, latencies_ms=[740], transcript=[["user", "שלום"]], timeline=None)


class Outage:
    """Every connection the store opens fails while ``down`` (a database that is gone)."""

    def __init__(self, store) -> None:
        self.down = False
        event.listen(store.engine, "do_connect", self._connect)
        store.engine.dispose()

    def _connect(self, dialect, conn_rec, cargs, cparams):
        if self.down:
            raise OperationalError("connect", {}, Exception("could not connect to server: Connection refused"))
        return None


def test_without_its_thread_a_write_is_applied_at_once(store):
    writer = RecordWriter(store)
    put_call(writer)
    assert writer.pending == 0 and writer.stored == 3
    assert count(store, Lead) == 1 and count(store, OutboxMessage) == 1
    with store.session() as s:
        call = s.scalar(select(Call))
    assert (call.outcome, call.business_id is not None, call.stream_sid) == ("lead_captured", True, "MZ1")


def test_writes_wait_in_order_while_the_database_is_down_and_all_go_in_once_it_is_back(store):
    outage = Outage(store)
    outage.down = True
    writer = RecordWriter(store, retry_max_s=4)
    put_call(writer)                                   # the first fails at once; the others queue behind it
    assert writer.pending == 3 and writer.failures == 1
    waits = [writer.step() for _ in range(6)]
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]    # backoff doubling to retry_max_s
    assert writer.pending == 3 and writer.failures == 7 and writer.oldest_pending_s >= 0
    outage.down = False
    assert count(store, Call) == 0                     # nothing was written while it was down
    assert writer.drain(timeout_s=5)
    assert writer.failures == 7 and writer.stored == 3
    assert count(store, Lead) == 1 and count(store, OutboxMessage) == 1     # one delivery, not one per try


def test_a_write_applied_twice_queues_one_delivery(store):
    writer = RecordWriter(store)
    put_call(writer)
    # the same job again (a replay after a crash between the commit and the journal's "done")
    job_key = f"{CALL}/save_lead/1"
    store.save_lead(CALL, LEAD, tuple(CRM), business=BUSINESS, delivery_key=job_key)
    store.record_summary(CALL, "סיכום", tuple(CRM), BUSINESS, delivery_key=f"{CALL}/summary/1")
    store.record_summary(CALL, "סיכום", tuple(CRM), BUSINESS, delivery_key=f"{CALL}/summary/1")
    assert count(store, OutboxMessage) == 2                                  # the lead's and the summary's
    store.save_lead(CALL, LEAD, tuple(CRM), business=BUSINESS, delivery_key=f"{CALL}/save_lead/2")
    assert count(store, OutboxMessage) == 3                                  # a later change is delivered


def test_a_write_that_can_never_succeed_is_set_aside_and_the_others_go_on(store):
    writer = RecordWriter(store)
    writer.put("save_lead", "CA_no_such_call", lead=lead_args(LEAD), deliver_to=None, business=BUSINESS,
               asked_for_person=False, sms=None)                             # LookupError: no call
    put_call(writer)
    assert writer.dead == 1 and writer.pending == 0 and count(store, Lead) == 1
    with pytest.raises(ValueError):
        writer.put("no_such_kind", CALL)


def test_a_full_queue_refuses_with_a_count_never_silently(store):
    outage = Outage(store)
    outage.down = True
    writer = RecordWriter(store, max_pending=2)
    put_call(writer)
    assert writer.pending == 2 and writer.refused == 1


def test_the_journal_is_taken_over_by_the_next_process(store, tmp_path):
    """A process that stopped with writes pending (the database was down): the next one started on
    the same journal folder stores them, once."""
    journal = tmp_path / "journal"
    code = f"""
import sys
sys.path.insert(0, {str(os.getcwd())!r})
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from server.storage.db import Store
from server.storage.record_writer import RecordWriter
from tests.test_record_writer import put_call
store = Store({store.url!r})
def refuse(*a):
    raise OperationalError("connect", {{}}, Exception("refused"))
event.listen(store.engine, "do_connect", refuse)
writer = RecordWriter(store, journal_dir={str(journal)!r})
put_call(writer)
print(writer.pending)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "3", done.stderr
    [left] = list(journal.glob("records-*.jsonl"))
    assert [json.loads(line).get("put", {}).get("kind") for line in left.read_text().splitlines()] == \
        ["call_started", "save_lead", "call_ended"]
    writer = RecordWriter(store, journal_dir=str(journal))      # this process: the other one is gone
    assert writer.pending == 3
    assert writer.drain(timeout_s=5)
    assert count(store, Lead) == 1 and count(store, OutboxMessage) == 1
    assert not left.exists()
    again = RecordWriter(store, journal_dir=str(journal))
    assert again.pending == 0                                    # nothing is replayed twice


def test_a_full_sqlite_disk_is_waited_out(tmp_path, profiles):  # noqa: F811
    """SQLite's "database or disk is full" (a page limit stands for the disk) is a write to try again:
    once there is room, everything is stored."""
    from server.storage.db import Store
    store = Store(f"sqlite:///{tmp_path}/full.sqlite3")
    store.create_schema()
    store.sync_businesses(profiles)
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    limit = {"pages": pages}

    @event.listens_for(store.engine, "connect")
    def _cap(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA max_page_count={limit['pages']}")

    store.engine.dispose()
    writer = RecordWriter(store)
    big = [["user", "א" * 2000]] * 40                          # a transcript that needs new pages
    writer.put("call_started", CALL, stream_sid="MZ1", business_number=LOCKSMITH, called=LOCKSMITH, caller_masked="")
    writer.put("call_ended", CALL, outcome="no_lead", hangup_reason="caller_hung_up", turns=1, responses=1,
               barge_ins=0, latencies_ms=[], transcript=big, timeline=None)
    assert writer.pending >= 1 and writer.failures >= 1
    limit["pages"] = 100_000                                   # the disk has room again
    store.engine.dispose()
    assert writer.drain(timeout_s=5)
    with store.session() as s:
        assert s.scalar(select(Call.outcome)) == "no_lead"
    store.close()
