"""The store and the outbox on PostgreSQL (``DATABASE_URL=postgresql+psycopg://…``), not only SQLite.

A throwaway cluster (``tests/pg_cluster.py``: the machine's ``initdb``/``pg_ctl`` on a Unix socket),
one database per test. The outbox tests of ``test_outbox.py`` run here unchanged against it.
"""
import uuid

import pytest

from server.business.profiles import BusinessProfile, Profiles
from server.storage.db import Store
from tests import test_outbox
from tests.pg_cluster import cluster  # noqa: F401 - the shared fixture


@pytest.fixture()
def store(cluster) -> Store:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = Store(cluster.format(db="postgres"))
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.close()
    s = Store(cluster.format(db=name))
    s.create_schema()
    s.sync_businesses(Profiles({"+97235550100": BusinessProfile("+97235550100", "Locks")}, BusinessProfile("", "d")))
    s.call_started("CA1", "MZ1", 1, "+97235550100", "+97*******4567")
    yield s
    s.close()


def test_the_engine_really_is_postgres(store):
    assert store.engine.dialect.name == "postgresql"


def test_a_lease_is_exclusive_across_two_connections(store, cluster):
    from server.storage.models import utcnow
    store.save_lead("CA1", test_outbox.LEAD, (test_outbox.URL, None))
    other = Store(str(store.engine.url.render_as_string(hide_password=False)))
    now = utcnow()
    assert len(store.claim_due(now, 60)) == 1 and other.claim_due(now, 60) == []
    other.close()


test_crm_down_for_an_hour_on_postgres = test_outbox.test_a_crm_down_for_an_hour_gets_the_lead_exactly_once_after_it_is_back
test_only_2xx_on_postgres = test_outbox.test_only_2xx_counts_as_delivered
test_signed_body_on_postgres = test_outbox.test_the_body_is_signed_with_the_businesses_secret
test_dead_but_kept_on_postgres = test_outbox.test_after_the_retention_window_a_message_is_dead_but_kept
