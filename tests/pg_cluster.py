"""A throwaway PostgreSQL cluster for the storage tests (``DATABASE_URL=postgresql+psycopg://…``).

``sim/postgres.py`` makes it with the machine's ``initdb``/``pg_ctl`` on a Unix socket. The
``cluster`` fixture (one per test module) yields a URL template with ``{db}`` for the database
name; ``new_database`` makes one database per test in it. Without the server binaries the tests
that use it skip, unless ``PROSAAS_REQUIRE_POSTGRES=1`` (CI sets it): then they fail.
"""
import os

import pytest

from sim.postgres import TempPostgres, available


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
    import uuid

    from sqlalchemy import create_engine
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(cluster.format(db="postgres"))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return cluster.format(db=name)
