"""Call records: one row per call (SIP Call-ID, numbers, times, end reason) and its turns.

SQLite (WAL) through SQLAlchemy by default, PostgreSQL by URL. Writes never lose a record: if the
database cannot be written (a full disk, a lost connection) the record goes to the spool directory
as a JSON file and the failure is logged. Spooled records are replayed into the database at
start-up and after the next write that succeeds, then removed.

A call row is written when the call is answered (or refused) and completed when it ends, so a
worker that dies mid-call leaves a row that says so, never nothing. Every row carries the
identity of the worker that wrote it (``worker_id``, also ``context.worker``). A worker that died
(kill -9, an abort) leaves the rows of its calls in progress open, and they are closed with
``end_reason: worker-lost``:

- by the worker itself at its next start (:meth:`CallStore.close_lost_calls`): its own only;
- by any live worker sharing the database, once the dead one's heartbeat (the ``workers``
  table, :meth:`CallStore.heartbeat`) is older than ``server.worker_lost_after_s``
  (:meth:`CallStore.close_dead_workers`). Another worker's open rows are otherwise its live
  calls and are left alone.

The schema is migrated by Alembic when the store opens (:mod:`handoff.migrate`, chain
``calls``).

Text from the network is stored escaped where it is not valid UTF-8 (see
:func:`handoff.db.escape_text`), and what the store returns is always JSON-serializable, also for
rows written before that rule.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import JSON, Float, ForeignKey, Integer, String, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from handoff.db import json_safe, open_engine
from handoff.migrate import upgrade

#: ``end_reason`` of a call whose worker died while it was up (found open at the next start).
WORKER_LOST = "worker-lost"


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
    # The worker that wrote the row (also in context.worker, where rows before migration
    # calls_0002 kept it): indexed, so reconciling a dead worker reads only its rows.
    worker_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)


class TurnRow(Base):
    __tablename__ = "call_turns"
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), primary_key=True)
    turn: Mapped[int] = mapped_column(Integer, primary_key=True)
    record: Mapped[dict] = mapped_column(JSON)


class WorkerRow(Base):
    """One live (or dead) worker of the pool: its heartbeat. A worker whose ``last_seen`` is
    older than ``server.worker_lost_after_s`` is dead, and any live worker closes its calls."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float, index=True)


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


def _limits() -> dict[str, int]:
    """String column lengths: PostgreSQL refuses longer values (SQLite would keep them)."""
    return {c.name: c.type.length for c in CallRow.__table__.columns
            if isinstance(c.type, String) and c.type.length}


class CallStore:
    """Thread-safe; each method is one short transaction. Call from a worker thread in async
    code (``asyncio.to_thread``): SQLite writes wait on the disk.

    Args:
        url: SQLAlchemy URL of the database.
        spool_dir: where records go as JSON files when the database cannot be written.
        worker: identity written into each call row's ``context.worker`` (when the record does
            not carry one), so that :meth:`close_lost_calls` closes only this worker's rows.
    """

    def __init__(self, url: str, spool_dir: str | Path = "var/spool",
                 worker: str | None = None) -> None:
        self.engine = open_engine(url)
        upgrade(self.engine, "calls")  # the schema at its newest (handoff.migrate)
        self.spool_dir = Path(spool_dir)
        self.worker = worker
        self._limits = _limits()
        # Held around each write and each replayed file, so that a replay never puts an older
        # spooled state over a newer one written meanwhile.
        self._lock = threading.Lock()
        self._spool_pending = self._has_spool()

    def save_call(self, record: CallRecord) -> None:
        """Insert or update the call row."""
        data = self._call_data(record)
        with self._lock:
            try:
                self._merge_call(data)
            except Exception as error:  # noqa: BLE001
                # the write that triggered it succeeded all the same
                self._spool("call", data["id"], data, error)
                return
            # The database now holds this call's newest state: an older spooled one of it must
            # never be replayed over it.
            for stale in self.spool_dir.glob(f"call-{data['id']}-*.json"):
                if stale.name.rsplit("-", 1)[0] == f"call-{data['id']}":  # not call-<id>-x-
                    stale.unlink(missing_ok=True)
        self._replay_if_pending()

    def save_turn(self, call_id: str, turn: dict[str, Any]) -> None:
        turn = json_safe(turn)
        try:
            with self._lock:
                self._merge_turn(call_id, turn)
        except Exception as error:  # noqa: BLE001
            self._spool("turn", f"{call_id}-{turn.get('turn')}", {"call_id": call_id, **turn},
                        error)
            return
        self._replay_if_pending()

    # -- after a crash ------------------------------------------------------------------------

    def replay_spool(self) -> int:
        """Write spooled records into the database (calls before turns, oldest first) and
        remove their files; returns how many were written. Stops at the first record the
        database still refuses to take; a file that is not JSON is renamed ``*.bad``."""
        files = sorted(self.spool_dir.glob("call-*.json"), key=_mtime) + \
            sorted(self.spool_dir.glob("turn-*.json"), key=_mtime)
        written = 0
        for path in files:
            with self._lock:
                try:
                    data = json.loads(path.read_text())
                    if path.name.startswith("call-"):
                        self._merge_call(self._call_data(CallRecord(**data)))
                    else:
                        call_id = data.pop("call_id")
                        self._merge_turn(call_id, json_safe(data))
                except FileNotFoundError:
                    continue  # another process replayed it
                except (OSError, ValueError, TypeError, KeyError, AttributeError,
                        IntegrityError) as error:
                    # Not a record, or one the database can never take (a turn of a call that
                    # has no row): set aside, not lost, and not retried on every write.
                    logger.error(f"call store: spooled {path.name} cannot be replayed "
                                 f"({error}); kept as {path.name}.bad")
                    path.rename(path.with_name(path.name + ".bad"))
                    continue
                except SQLAlchemyError as error:
                    logger.warning(f"call store: spool replay stopped at {path.name}: {error}")
                    self._spool_pending = True
                    return written
                path.unlink(missing_ok=True)
                written += 1
        self._spool_pending = False
        if written:
            logger.info(f"call store: {written} spooled record(s) written to the database")
        return written

    def close_lost_calls(self, worker: str, *, unowned_before: float | None = None
                         ) -> list[str]:
        """Close the rows that ``worker`` left open when it died: ``end_reason: worker-lost``,
        ``ended_at`` the last time the call is known to have been up (its last caller turn,
        else its answer, else its start). Returns their ids.

        Call it at start-up, before the first call is accepted: every open row of this worker
        is then a call of its previous life. Rows of other workers are left alone (they may be
        live; :meth:`close_dead_workers` closes those of workers that stopped heartbeating).
        Rows that name no worker (written before workers were recorded) are closed when they
        started before ``unowned_before`` (a time no call can have lasted since).
        """
        with self._lock, Session(self.engine) as s, s.begin():
            rows = []
            for row in s.scalars(select(CallRow).where(
                    CallRow.ended_at.is_(None),
                    (CallRow.worker_id == worker) | CallRow.worker_id.is_(None))):
                owner = row.worker_id or (row.context or {}).get("worker")
                if owner == worker or (owner is None and unowned_before is not None
                                       and row.started_at < unowned_before):
                    rows.append(row)
            closed = self._close(s, rows, "closed_at_start_by", worker)
        if closed:
            logger.warning(f"call store: {len(closed)} call(s) left open by a previous run of "
                           f"worker {worker} closed as {WORKER_LOST}")
        return closed

    # -- the pool: heartbeats, and calls of dead workers ----------------------------------------

    def heartbeat(self, now: float | None = None) -> None:
        """Say this worker is alive (its ``workers`` row, ``last_seen`` = now). Call it at
        start-up, before the first call, and then every ``server.heartbeat_interval_s``."""
        if not self.worker:
            raise ValueError("heartbeat(): this CallStore has no worker identity")
        now = time.time() if now is None else now
        with Session(self.engine) as s, s.begin():
            row = s.get(WorkerRow, self.worker)
            if row is None:
                s.add(WorkerRow(id=self.worker, host=socket.gethostname()[:128],
                                pid=os.getpid(), started_at=now, last_seen=now))
            else:
                row.last_seen, row.pid = now, os.getpid()

    def leave(self) -> None:
        """Remove this worker's heartbeat (a clean stop: no call of it is left open, and no
        other worker should wait for it)."""
        if self.worker:
            with Session(self.engine) as s, s.begin():
                row = s.get(WorkerRow, self.worker)
                if row is not None:
                    s.delete(row)

    def workers(self) -> list[dict[str, Any]]:
        """The workers with a heartbeat, most recently seen first."""
        with Session(self.engine) as s:
            return [{"worker_id": w.id, "host": w.host, "pid": w.pid,
                     "started_at": _iso(w.started_at), "last_seen": _iso(w.last_seen)}
                    for w in s.scalars(select(WorkerRow).order_by(WorkerRow.last_seen.desc()))]

    def close_dead_workers(self, lost_after_s: float, now: float | None = None
                           ) -> dict[str, list[str]]:
        """Close the open calls of every other worker whose heartbeat is older than
        ``lost_after_s`` (``end_reason: worker-lost``, ``ended_at`` as in
        :meth:`close_lost_calls`), and forget those workers. Returns the closed call ids by
        worker. Any live worker may run it: on PostgreSQL each dead worker's row is locked
        (``FOR UPDATE SKIP LOCKED``), so two live workers never close the same calls twice.
        A worker that was only slow and comes back writes its calls' real end over it."""
        now = time.time() if now is None else now
        cutoff = now - lost_after_s
        with Session(self.engine) as s:
            dead = list(s.scalars(select(WorkerRow.id).where(WorkerRow.last_seen < cutoff)))
        closed: dict[str, list[str]] = {}
        for worker in dead:
            if worker == self.worker:
                continue
            with self._lock, Session(self.engine) as s, s.begin():
                row = s.scalars(select(WorkerRow).where(WorkerRow.id == worker,
                                                        WorkerRow.last_seen < cutoff)
                                .with_for_update(skip_locked=True)).first()
                if row is None:  # came back, or another live worker has it
                    continue
                rows = list(s.scalars(select(CallRow).where(CallRow.worker_id == worker,
                                                            CallRow.ended_at.is_(None))
                                      .with_for_update()))
                closed[worker] = self._close(s, rows, "closed_by", self.worker or "unknown")
                s.delete(row)
            logger.warning(f"call store: worker {worker} silent for over {lost_after_s:.0f} s; "
                           f"{len(closed[worker])} of its call(s) closed as {WORKER_LOST}")
        return closed

    def _close(self, s: Session, rows: list[CallRow], key: str, by: str) -> list[str]:
        """Close ``rows`` as worker-lost at the last time each call was known up."""
        closed = []
        for row in rows:
            last = max(row.started_at, row.answered_at or 0.0)
            for turn in s.scalars(select(TurnRow).where(TurnRow.call_id == row.id)):
                spoken = (turn.record or {}).get("speech_end_s")
                if isinstance(spoken, int | float):
                    last = max(last, (row.answered_at or row.started_at) + spoken)
            row.ended_at = last
            row.end_reason = WORKER_LOST
            row.context = {**(row.context or {}), key: by}
            closed.append(row.id)
        return closed

    # -- reads ----------------------------------------------------------------------------------
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

    def journey_of(self, caller_number: str, since: float, *, before: float) -> str | None:
        """The journey a new call from ``caller_number`` joins: that of the caller's earliest
        call started in [since, before), or None when there is none."""
        with Session(self.engine) as s:
            row = s.scalars(select(CallRow).where(
                CallRow.caller_number == caller_number, CallRow.started_at >= since,
                CallRow.started_at < before).order_by(CallRow.started_at).limit(1)).first()
            if row is None:
                return None
            return (row.context or {}).get("journey_id") or row.id

    def between(self, since: float, until: float, *, with_turns: bool = True
                ) -> list[dict[str, Any]]:
        """Calls started in [since, until), oldest first, with their turns (unless
        ``with_turns`` is False): the raw material of the report and the dashboard
        (``voice.app.figures``)."""
        period = (CallRow.started_at >= since, CallRow.started_at < until)
        with Session(self.engine) as s:
            rows = list(s.scalars(select(CallRow).where(*period).order_by(CallRow.started_at)))
            turns: dict[str, list[dict]] = {r.id: [] for r in rows}
            if rows and with_turns:  # one join, not an IN list as long as the period's calls
                for t in s.scalars(select(TurnRow).join(CallRow).where(*period)
                                   .order_by(TurnRow.call_id, TurnRow.turn)):
                    turns[t.call_id].append(t.record)
            return [{"call_id": r.id, "caller_number": r.caller_number,
                     "transport": r.transport, "started_at": r.started_at,
                     "answered_at": r.answered_at, "ended_at": r.ended_at,
                     "end_reason": r.end_reason, "context": r.context or {},
                     "turns": turns[r.id]} for r in rows]

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
        """The row as the API returns it: always JSON-serializable (rows stored before text
        was escaped may hold lone surrogates; they come back escaped)."""
        return json_safe({
            "call_id": row.id, "sip_call_id": row.sip_call_id, "transport": row.transport,
            "caller_number": row.caller_number, "called_number": row.called_number,
            "source": row.source, "codec": row.codec,
            "started_at": _iso(row.started_at), "answered_at": _iso(row.answered_at),
            "ended_at": _iso(row.ended_at), "end_reason": row.end_reason,
            "worker_id": row.worker_id or (row.context or {}).get("worker"),
            "context": row.context or {}, "turns": turns})

    # -- internals ----------------------------------------------------------------------------

    def _call_data(self, record: CallRecord) -> dict[str, Any]:
        """The row's values: text escaped, strings cut to their column, the worker stamped."""
        data = json_safe(asdict(record))
        for name, length in self._limits.items():
            if isinstance(data.get(name), str) and len(data[name]) > length:
                data[name] = data[name][:length]
        if self.worker and not (data.get("context") or {}).get("worker"):
            data["context"] = {**(data.get("context") or {}), "worker": self.worker}
        return data

    def _merge_call(self, data: dict[str, Any]) -> None:
        worker = (data.get("context") or {}).get("worker")
        worker = worker[:128] if isinstance(worker, str) and worker else None
        with Session(self.engine) as s, s.begin():
            s.merge(CallRow(**data, worker_id=worker))

    def _merge_turn(self, call_id: str, turn: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(TurnRow(call_id=call_id, turn=int(turn["turn"]), record=turn))

    def _has_spool(self) -> bool:
        try:
            return any(self.spool_dir.glob("*.json"))
        except OSError:
            return False

    def _replay_if_pending(self) -> None:
        if self._spool_pending:
            try:
                self.replay_spool()
            except Exception as error:  # noqa: BLE001
                logger.error(f"call store: spool replay failed: {error}")

    def _spool(self, kind: str, key: str, data: dict[str, Any], error: Exception) -> None:
        self._spool_pending = True
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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
