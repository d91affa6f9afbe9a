"""A throwaway PostgreSQL cluster for tests and benchmarks, made with the machine's own server.

``TempPostgres(tcp=False)`` runs ``initdb`` and ``pg_ctl`` in a fresh folder (as ``nobody`` when
this runs as root, which PostgreSQL refuses), listening on a Unix socket in that folder, or on a
free loopback TCP port with ``tcp=True`` (what a proxy in front of it needs). ``url(db)`` is a
SQLAlchemy URL for psycopg 3; ``new_database()`` makes an empty database and returns its URL.
``available()`` says whether the server binaries are installed.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def _server_binary(name: str) -> str | None:
    """On PATH, or where Debian's postgresql package puts it (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


INITDB, PG_CTL = _server_binary("initdb"), _server_binary("pg_ctl")


def available() -> bool:
    return bool(INITDB and PG_CTL)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    def __init__(self, tcp: bool = False, port: int | None = None) -> None:
        self.tcp = tcp
        self.port = port or _free_port()
        self.root: Path | None = None

    def start(self) -> "TempPostgres":
        if not available():
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.root = Path(tempfile.mkdtemp(prefix="prosaas-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
        data = self.root / "data"
        subprocess.run(_as_postgres_user([INITDB, "-D", str(data), "-A", "trust", "-U", "prosaas"]),
                       check=True, capture_output=True, timeout=120)
        listen = "127.0.0.1" if self.tcp else "''"
        subprocess.run(_as_postgres_user([PG_CTL, "-D", str(data), "-l", str(self.root / "log"), "-w", "-t", "30",
                                          "-o", f"-k {self.root} -p {self.port} -c listen_addresses={listen} "
                                                "-c max_connections=200", "start"]),
                       check=True, capture_output=True, timeout=60)
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        subprocess.run(_as_postgres_user([PG_CTL, "-D", str(self.root / "data"), "-m", "fast", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "TempPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, db: str = "postgres", host: str | None = None, port: int | None = None) -> str:
        """The URL of database ``db``; ``host``/``port`` reach it another way (through a proxy)."""
        if host is not None or self.tcp:
            return f"postgresql+psycopg://prosaas@{host or '127.0.0.1'}:{port or self.port}/{db}"
        return f"postgresql+psycopg://prosaas@/{db}?host={self.root}&port={self.port}"

    def template(self) -> str:
        """The URL with ``{db}`` in place of the database name."""
        return self.url("{db}")

    def new_database(self) -> str:
        """An empty database in the cluster; its name."""
        return create_database(self.url("postgres"))


def create_database(admin_url: str) -> str:
    """An empty database, made through the cluster's ``postgres`` database at ``admin_url``; its name."""
    from sqlalchemy import create_engine
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return name
