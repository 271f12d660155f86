"""Opening the stores' databases: one place for what every store needs from its database, and
what every store writes and returns: text that any database and any JSON encoder accept.

The CRM, the handoff store and the call store share the same database settings: SQLite (WAL,
so readers never block the writer; foreign keys on; a busy timeout, so two writers wait for each
other rather than fail) as the embedded default, any SQLAlchemy URL (PostgreSQL) otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

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


def _in_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url \
        or "mode=memory" in url


def normalize_url(url: str) -> str:
    """``url`` with PostgreSQL through psycopg 3: ``postgresql://`` and ``postgres://`` (what
    libpq tools and hosted databases hand out) would make SQLAlchemy look for psycopg2, which
    is not installed."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def open_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url``, with the SQLite settings above when it is SQLite.
    PostgreSQL goes through psycopg 3 (:func:`normalize_url`); its pooled connections are
    checked before use (``pool_pre_ping``), so a restarted server costs no failed write.

    An in-memory SQLite database exists once per connection, so it gets one connection shared
    by every thread (StaticPool): store and CRM calls run in worker threads, off the event
    loop, and must all see the same database."""
    url = normalize_url(url)
    ensure_sqlite_dir(url)
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True)
    if _in_memory(url):
        engine = create_engine(url, poolclass=StaticPool,
                               connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
            cursor.close()
    return engine


def escape_text(text: str) -> str:
    """``text`` with what no UTF-8 database or JSON response can carry written as escapes.

    PJSIP hands Python the raw bytes of a SIP message decoded with ``surrogateescape``, so a
    byte that is not UTF-8 (``FF`` in a From display name) arrives as a lone surrogate
    (``\\udcff``). SQLite refuses it (the write would only reach the spool), JSON columns keep it
    and a JSON response then fails with a 500. Such bytes become ``\\xff``, other lone
    surrogates ``\\ud800``, and NUL (refused by PostgreSQL text) ``\\x00``. Valid text is
    returned unchanged (the same object), so the check costs one encode.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
            text = raw.decode("utf-8", "backslashreplace")
            text.encode("utf-8")
        except UnicodeError:  # surrogates that are not escaped bytes
            text = text.encode("utf-8", "backslashreplace").decode("ascii")
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, strings, numbers) as something every JSON encoder and every
    database takes: strings through :func:`escape_text`, keys too, NaN and infinities as
    ``None`` (a JSON response refuses them), anything else that is not JSON as its ``str``."""
    if isinstance(value, str):
        return escape_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {escape_text(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return escape_text(str(value))
