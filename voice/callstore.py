"""Call records: one row per call (SIP Call-ID, numbers, times, end reason) and its turns.

SQLite (WAL) through SQLAlchemy by default, PostgreSQL by URL. Writes never lose a record: if the
database cannot be written (a full disk, a lost connection) the record goes to the spool directory
as a JSON file and the failure is logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import JSON, Float, ForeignKey, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from handoff.db import open_engine


class Base(DeclarativeBase):
    pass


class CallRow(Base):
    __tablename__ = "calls"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sip_call_id: Mapped[str | None] = mapped_column(String(256), index=True, nullable=True)
    transport: Mapped[str] = mapped_column(String(16), default="sip")
    caller_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    called_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str | None] = mapped_column(String(80), nullable=True)
    codec: Mapped[str | None] = mapped_column(String(24), nullable=True)
    started_at: Mapped[float] = mapped_column(Float, index=True)
    answered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    context: Mapped[dict] = mapped_column(JSON, default=dict)  # X- headers, menu version, stats


class TurnRow(Base):
    __tablename__ = "call_turns"
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), primary_key=True)
    turn: Mapped[int] = mapped_column(Integer, primary_key=True)
    record: Mapped[dict] = mapped_column(JSON)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(
        timespec="milliseconds")


@dataclass
class CallRecord:
    """What the store keeps of one call (times are epoch seconds)."""

    id: str
    started_at: float
    sip_call_id: str | None = None
    transport: str = "sip"
    caller_number: str | None = None
    called_number: str | None = None
    source: str | None = None
    codec: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


class CallStore:
    """Thread-safe; each method is one short transaction. Call from a worker thread in async
    code (``asyncio.to_thread``): SQLite writes wait on the disk."""

    def __init__(self, url: str, spool_dir: str | Path = "var/spool") -> None:
        self.engine = open_engine(url)
        Base.metadata.create_all(self.engine)
        self.spool_dir = Path(spool_dir)

    def save_call(self, record: CallRecord) -> None:
        """Insert or update the call row."""
        try:
            with Session(self.engine) as s, s.begin():
                s.merge(CallRow(**asdict(record)))
        except Exception as error:
            self._spool("call", record.id, asdict(record), error)

    def save_turn(self, call_id: str, turn: dict[str, Any]) -> None:
        try:
            with Session(self.engine) as s, s.begin():
                s.merge(TurnRow(call_id=call_id, turn=int(turn["turn"]), record=turn))
        except Exception as error:
            self._spool("turn", f"{call_id}-{turn.get('turn')}", {"call_id": call_id, **turn},
                        error)

    def latest(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest calls, newest first, each with its turns as ``ivr simulate`` prints them."""
        with Session(self.engine) as s:
            rows = list(s.scalars(select(CallRow).order_by(CallRow.started_at.desc())
                                  .limit(limit)))
            out = []
            for row in rows:
                turns = list(s.scalars(select(TurnRow).where(TurnRow.call_id == row.id)
                                       .order_by(TurnRow.turn)))
                out.append(self._public(row, [t.record for t in turns]))
            return out

    def get(self, call_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(CallRow, call_id)
            if row is None:
                return None
            turns = list(s.scalars(select(TurnRow).where(TurnRow.call_id == call_id)
                                   .order_by(TurnRow.turn)))
            return self._public(row, [t.record for t in turns])

    @staticmethod
    def _public(row: CallRow, turns: list[dict]) -> dict[str, Any]:
        return {"call_id": row.id, "sip_call_id": row.sip_call_id, "transport": row.transport,
                "caller_number": row.caller_number, "called_number": row.called_number,
                "source": row.source, "codec": row.codec,
                "started_at": _iso(row.started_at), "answered_at": _iso(row.answered_at),
                "ended_at": _iso(row.ended_at), "end_reason": row.end_reason,
                "context": row.context or {}, "turns": turns}

    def _spool(self, kind: str, key: str, data: dict[str, Any], error: Exception) -> None:
        logger.error(f"call store: cannot write {kind} {key} ({error}); spooling it")
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            path = self.spool_dir / f"{kind}-{key}-{os.getpid()}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, default=str))
            tmp.replace(path)
        except OSError as spool_error:  # last resort: the log holds the record
            logger.critical(f"call store: spool failed too ({spool_error}): "
                            f"{json.dumps(data, default=str)}")
