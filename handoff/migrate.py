"""Schema migrations of the stores (Alembic), run by each store when it opens.

Three stores keep tables, and each may have a database of its own (the SQLite defaults:
``var/ivr.sqlite``, ``var/handoffs.sqlite``, ``var/crm.sqlite``) or share one (a PostgreSQL
URL for the pool). So each store is its own migration chain, with its own version table:

========== =============================== =========================================
chain      tables                          version table
========== =============================== =========================================
calls      calls, call_turns, workers      alembic_version_calls
handoffs   handoffs, deliveries,           alembic_version_handoffs
           handoff_dispositions
crm        customers, accounts, orders,    alembic_version_crm
           charges, cases, callbacks
========== =============================== =========================================

The scripts live in ``handoff/migrations/<chain>/versions`` (inside the package, so that an
installed ``ivr`` finds them). Each chain's first revision is the schema the stores made with
``create_all`` before migrations existed, and it creates only the tables that are missing: a
database made by ``create_all`` (no version table yet) is brought under Alembic by the same
``upgrade head`` as an empty one, its rows kept.

Several workers may open one database at once: on PostgreSQL the upgrade holds a transaction
advisory lock, on a SQLite file an exclusive ``flock`` of the file, so one migrates and the
others then find it done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

CHAINS = ("calls", "handoffs", "crm")
MIGRATIONS = Path(__file__).parent / "migrations"
#: pg_advisory_xact_lock key of the migrations ("ivr" + "mig" in ASCII).
_PG_LOCK_KEY = 0x697672_6D6967


def version_table(chain: str) -> str:
    return f"alembic_version_{chain}"


def _config(chain: str):
    from alembic.config import Config

    if chain not in CHAINS:
        raise ValueError(f"unknown migration chain {chain!r}; one of {CHAINS}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / chain))
    config.attributes["version_table"] = version_table(chain)
    return config


def upgrade(engine: Engine, chain: str, revision: str = "head") -> None:
    """Bring ``chain``'s tables in ``engine``'s database to ``revision`` (``head``: the
    newest). Idempotent: a database already there is left as it is."""
    from alembic import command

    config = _config(chain)
    with _file_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current(engine: Engine, chain: str) -> str | None:
    """The revision ``chain`` is at in ``engine``'s database (None: not under Alembic)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": version_table(chain)})
        return context.get_current_revision()


def head(chain: str) -> str:
    """The newest revision of ``chain``."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(chain)).get_current_head()


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive ``flock`` of a SQLite database file while it migrates. (SQLite's own
    locks are POSIX record locks, which flock does not touch on Linux, so this only orders
    the migrators.) Nothing for PostgreSQL and in-memory databases."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # unwritable or not a file: SQLite's own error says so to the store
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def run_env(context) -> None:
    """The body of every chain's ``env.py``: migrate on the connection :func:`upgrade` hands
    over (a store always gives one; offline SQL generation is not offered)."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("the IVR's migrations run through handoff.migrate.upgrade() or "
                           "`ivr db upgrade`, which give them the store's connection")
    context.configure(connection=connection,
                      version_table=config.attributes["version_table"],
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def upgrade_all(urls: dict[str, str]) -> list[tuple[str, str, str | None, str | None]]:
    """Bring each chain's database (``{"calls": url, ...}``) to head, each database opened
    once; returns ``(chain, url without its password, revision before, revision after)``.
    What ``ivr db upgrade`` runs (the stores also do it when they open)."""
    from sqlalchemy.engine import make_url

    from handoff.db import normalize_url, open_engine

    engines: dict[str, Engine] = {}
    done = []
    try:
        for chain, url in urls.items():
            url = normalize_url(url)
            engine = engines.setdefault(url, open_engine(url))
            before = current(engine, chain)
            upgrade(engine, chain)
            shown = make_url(url).render_as_string(hide_password=True)
            done.append((chain, shown, before, current(engine, chain)))
    finally:
        for engine in engines.values():
            engine.dispose()
    return done
