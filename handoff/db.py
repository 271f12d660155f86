"""Opening the stores' databases: one place for what every store needs from SQLite.

The CRM, the handoff store and the call store share the same database settings: SQLite (WAL,
so readers never block the writer; foreign keys on; a busy timeout, so two writers wait for each
other rather than fail) as the embedded default, any SQLAlchemy URL (PostgreSQL) otherwise.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event

_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON",
                   "PRAGMA busy_timeout=5000")


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a relative SQLite file path (``sqlite:///var/crm.sqlite``)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:////"):
        return
    path = url.removeprefix("sqlite:///")
    if path.startswith("file:") or path.startswith(":memory:"):
        return  # a URI filename or an in-memory database: nothing to create
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def open_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url``, with the SQLite settings above when it is SQLite."""
    ensure_sqlite_dir(url)
    engine = create_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()
    return engine
