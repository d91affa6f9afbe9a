"""A throwaway PostgreSQL cluster for the storage tests (``DATABASE_URL=postgresql+psycopg://…``).

``sim/postgres.py`` makes it with the machine's ``initdb``/``pg_ctl`` on a Unix socket. The
``cluster`` fixture (one per test module) yields a URL template with ``{db}`` for the database
name; ``new_database`` makes one database per test in it. Without the server binaries the tests
that use it skip, unless ``PROSAAS_REQUIRE_POSTGRES=1`` (CI sets it): then they fail.
"""
import os

import pytest

from sim.postgres import TempPostgres, available, create_database


def require_postgres() -> None:
    if not available():
        message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed on this machine"
        if os.environ.get("PROSAAS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (PROSAAS_REQUIRE_POSTGRES=1)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def cluster():
    require_postgres()
    with TempPostgres() as pg:
        yield pg.template()


def new_database(cluster: str) -> str:
    """A new empty database in the cluster; its URL."""
    return cluster.format(db=create_database(cluster.format(db="postgres")))
