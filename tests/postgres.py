"""A throwaway PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries, a data folder
and a socket folder under a temp dir, a free TCP port on 127.0.0.1, trust authentication.

``initdb`` refuses to run as root, so when the tests run as root the cluster's commands run as
the ``postgres`` user (``runuser -u postgres --``), and the temp dir is given to that user.

Fixtures (imported by ``tests/conftest.py``):

- ``postgres_cluster`` (session): the running :class:`PostgresCluster`; skipped with the reason
  when no PostgreSQL binaries are installed (``make system-deps`` installs them);
- ``postgres_url`` (session): one database made for the session,
  ``postgresql+psycopg://postgres@127.0.0.1:<port>/ivr_test``;
- ``fresh_postgres_db`` (function): a new empty database for one test, dropped after it.

Outside pytest (a benchmark, a cluster test's workers): ``with PostgresCluster() as pg:
url = pg.create_database("x")``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where to look for initdb/pg_ctl when they are not on PATH (Debian keeps them per version).
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def pg_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``$IVR_PG_BIN``, else PATH, else the
    newest Debian version folder; None when PostgreSQL is not installed."""
    if os.environ.get("IVR_PG_BIN"):
        path = Path(os.environ["IVR_PG_BIN"])
        return path if (path / "initdb").exists() else None
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob(PG_BIN_GLOB),
                      key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                      else 0)
    for folder in reversed(versions):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One PostgreSQL server of its own: ``start()`` makes and starts it, ``stop()`` stops it
    and removes every file. Durability is off (fsync, synchronous commit): test data only."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or pg_bin_dir()
        if self.bin_dir is None:
            raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found: install "
                                    "Debian's postgresql package or set IVR_PG_BIN")
        self.root: Path | None = None
        self.port = 0
        self.user = "postgres"
        self._as_postgres = os.geteuid() == 0  # initdb refuses root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        # Not under pytest's tmp_path: its folders are 0700 root, where the postgres user
        # cannot go.
        self.root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
        self.root.chmod(0o700)
        self.socket_dir.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        for attempt in range(5):  # a free port can be taken before the server binds it
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=200 -c shared_buffers=32MB")
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-l",
                          str(self.root / "server.log"), "-o", options, "-w", "-t", "60",
                          "start")
                return self
            except subprocess.CalledProcessError:
                if attempt == 4:
                    log = self.root / "server.log"
                    raise RuntimeError("PostgreSQL did not start: " +
                                       (log.read_text()[-2000:] if log.exists() else "")
                                       ) from None
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its ``postgresql+psycopg://`` URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120,
                       cwd=self.root)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the test session, stopped and removed at its end."""
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or under "
                    f"{PG_BIN_GLOB}); `make system-deps` installs Debian's postgresql")
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """``postgresql+psycopg://`` URL of a database shared by the session's tests."""
    return postgres_cluster.create_database("ivr_test")


@pytest.fixture
def fresh_postgres_db(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """URL of a new empty database for one test; dropped after it."""
    url = postgres_cluster.create_database()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            postgres_cluster.drop_database(url.rsplit("/", 1)[1])
