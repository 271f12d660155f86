"""Where handoff packages, transfer outcomes and webhook deliveries are kept.

SQLite (WAL) through SQLAlchemy by default; a PostgreSQL URL serves several IVR nodes. Nothing
is lost when the database fails (disk full, read-only, locked): the write goes to a spool
directory as a JSON file and an error is logged; ``recover()`` replays the spool into the
database once it works again. The store recovers by itself: when it opens (``ivr serve``
start-up) and before the next write once it has spooled, so spooled changes land in their order
and before any later one.

What it returns is always JSON-serializable: text that is not valid UTF-8 (a caller's name from
a SIP header) comes back escaped (:func:`handoff.db.json_safe`), never as a 500.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from handoff.db import json_safe, open_engine
from handoff.migrate import upgrade
from handoff.package import HandoffPackage, TransferOutcome, now_iso, validated_dict

OUTCOMES: tuple[str, ...] = TransferOutcome.__args__  # type: ignore[attr-defined]
#: An agent's one-click verdict after a transfer: the escalation was right, or the IVR could
#: have served the caller itself (escalation accuracy from the agents' side).
DISPOSITIONS = ("needed-human", "could-have-been-served")
#: PostgreSQL channel on which every new handoff and transfer change is announced.
NOTIFY_CHANNEL = "ivr_handoffs"


class _Base(DeclarativeBase):
    pass


class HandoffRow(_Base):
    __tablename__ = "handoffs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[str] = mapped_column(String(40), index=True)
    package: Mapped[dict[str, Any]] = mapped_column(JSON)
    transfer_outcome: Mapped[str] = mapped_column(String(16), default="pending")
    updated_at: Mapped[str] = mapped_column(String(40), index=True)  # what the live feed polls
    # The worker whose call it came from (migration handoffs_0002); None before it.
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class DeliveryRow(_Base):
    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), index=True)
    target_url: Mapped[str] = mapped_column(String(500))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[str] = mapped_column(String(40))
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)


class DispositionRow(_Base):
    """An agent's verdict, one per handoff (a table of its own since before migrations)."""

    __tablename__ = "handoff_dispositions"
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), primary_key=True)
    disposition: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(128))
    at: Mapped[str] = mapped_column(String(40), index=True)


@dataclass(frozen=True)
class Delivery:
    """One webhook attempt, as recorded."""

    url: str
    attempt: int
    status_code: int | None
    error: str | None
    at: str
    delivered: bool


class HandoffStore:
    """Save packages, follow their transfer, record webhook deliveries, list the latest."""

    def __init__(self, url: str = "sqlite:///var/handoffs.sqlite",
                 spool_dir: Path | str = "var/handoff-spool", *,
                 worker: str | None = None) -> None:
        self.url = url
        self.spool_dir = Path(spool_dir)
        self.worker = worker  # stamped on each handoff row written here (worker_id)
        self.engine = open_engine(url)  # WAL: the desktop reads while calls write
        self._spool_pending = bool(self.spooled())
        try:
            upgrade(self.engine, "handoffs")  # the schema at its newest (handoff.migrate)
        except SQLAlchemyError as error:  # writes will spool until the database comes back
            logger.error(f"handoff store {url} unavailable, spooling to {self.spool_dir}: "
                         f"{error}")
            return
        if self._spool_pending:
            self._replay_first()

    # -- writes ------------------------------------------------------------------------------------

    def save(self, package: HandoffPackage | dict[str, Any]) -> str:
        """Store a package (validated and scanned for secrets); returns its handoff id."""
        data = package.to_dict() if isinstance(package, HandoffPackage) else \
            validated_dict(package)
        if not self._replay_first():
            self._spool("package", data, None)
            return data["handoff_id"]
        try:
            self._insert(data)
        except SQLAlchemyError as error:
            self._spool("package", data, error)
        return data["handoff_id"]

    def update_transfer(self, handoff_id: str, outcome: str, *, agent_uri: str | None = None,
                        attempt_result: str | None = None, at: str | None = None) -> None:
        """The transfer's outcome so far; ``attempt_result`` also appends an attempt on
        ``agent_uri`` (e.g. 'no-answer' then 'connected' on the next agent)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"transfer outcome must be one of {OUTCOMES}, not {outcome!r}")
        if attempt_result is not None and agent_uri is None:
            raise ValueError("an attempt needs the agent_uri it was made on")
        change = {"handoff_id": handoff_id, "outcome": outcome, "agent_uri": agent_uri,
                  "attempt_result": attempt_result, "at": at or now_iso()}
        if not self._replay_first():
            self._spool("transfer", change, None)
            return
        try:
            self._apply_transfer(change)
        except SQLAlchemyError as error:
            self._spool("transfer", change, error)
        except KeyError as error:
            if not any(p.stem.endswith(f"-package-{handoff_id}") for p in self.spooled()):
                raise
            self._spool("transfer", change, error)  # its package waits in the spool: queue behind

    def record_delivery(self, handoff_id: str, url: str, attempt: int, *,
                        status_code: int | None = None, error: str | None = None,
                        delivered: bool = False, at: str | None = None) -> None:
        row = {"handoff_id": handoff_id, "url": url, "attempt": attempt,
               "status_code": status_code, "error": error, "delivered": delivered,
               "at": at or now_iso()}
        if not self._replay_first():
            self._spool("delivery", row, None)
            return
        try:
            self._insert_delivery(row)
        except SQLAlchemyError as failure:
            self._spool("delivery", row, failure)

    def set_disposition(self, handoff_id: str, disposition: str, agent: str, *,
                        at: str | None = None) -> None:
        """Record an agent's disposition of a transfer; a second one replaces the first (the
        agent changed their mind). Raises ValueError for an unknown disposition, KeyError for
        an unknown handoff."""
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {DISPOSITIONS}, not {disposition!r}")
        row = {"handoff_id": handoff_id, "disposition": disposition, "agent": agent,
               "at": at or now_iso()}
        if not self._replay_first():
            self._spool("disposition", row, None)
            return
        try:
            self._merge_disposition(row)
        except SQLAlchemyError as error:
            self._spool("disposition", row, error)

    # -- reads -------------------------------------------------------------------------------------

    def disposition(self, handoff_id: str) -> dict[str, Any] | None:
        """The agent's disposition of a transfer (``disposition``, ``agent``, ``at``), or None.
        Kept beside the package, not in it: the package is the schema's, as it was sent."""
        with Session(self.engine) as s:
            return self._dispositions(s, [handoff_id]).get(handoff_id)

    def since(self, since_iso: str) -> list[dict[str, Any]]:
        """Packages created at or after ``since_iso``, oldest first, each with its
        ``disposition`` (or None): what the report and the dashboard count."""
        with Session(self.engine) as s:
            rows = list(s.scalars(select(HandoffRow).where(HandoffRow.created_at >= since_iso)
                                  .order_by(HandoffRow.created_at)))
            verdicts = self._dispositions(s, [r.id for r in rows])
            return json_safe([{**r.package, "disposition": verdicts.get(r.id)} for r in rows])

    def get(self, handoff_id: str) -> dict[str, Any] | None:
        """The package with its current ``transfer`` and its ``deliveries``."""
        with Session(self.engine) as s:
            row = s.get(HandoffRow, handoff_id)
            if row is None:
                return None
            return json_safe(self._with_deliveries(s, [row])[0])

    def latest(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest packages first, each with its ``transfer`` and ``deliveries``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        with Session(self.engine) as s:
            rows = list(s.scalars(select(HandoffRow).order_by(HandoffRow.created_at.desc(),
                                                              HandoffRow.id).limit(limit)))
            return json_safe(self._with_deliveries(s, rows))

    def changed_since(self, updated_iso: str, limit: int = 200) -> list[dict[str, Any]]:
        """Handoffs created or changed at or after ``updated_iso``, oldest change first, as
        ``{"handoff_id", "updated_at", "outcome", "worker_id"}``: what the live feed polls
        where there is no LISTEN/NOTIFY (SQLite)."""
        with Session(self.engine) as s:
            return [{"handoff_id": r.id, "updated_at": r.updated_at,
                     "outcome": r.transfer_outcome, "worker_id": r.worker_id}
                    for r in s.execute(select(HandoffRow.id, HandoffRow.updated_at,
                                              HandoffRow.transfer_outcome, HandoffRow.worker_id)
                                       .where(HandoffRow.updated_at >= updated_iso)
                                       .order_by(HandoffRow.updated_at, HandoffRow.id)
                                       .limit(limit))]

    def deliveries(self, handoff_id: str) -> list[Delivery]:
        with Session(self.engine) as s:
            return [_delivery(r) for r in s.scalars(
                select(DeliveryRow).where(DeliveryRow.handoff_id == handoff_id)
                .order_by(DeliveryRow.id))]

    # -- the spool ---------------------------------------------------------------------------------

    def spooled(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.json")) if self.spool_dir.is_dir() else []

    def recover(self) -> int:
        """Replay spooled writes into the database, oldest first; returns how many applied.
        A write that fails again stays in the spool."""
        applied = 0
        for path in self.spooled():
            try:
                entry = json.loads(path.read_text())
                kind, data = entry["kind"], json_safe(entry["data"])
                if kind == "package":
                    with Session(self.engine) as s:
                        exists = s.get(HandoffRow, data["handoff_id"]) is not None
                    if not exists:
                        self._insert(data)
                elif kind == "transfer":
                    self._apply_transfer(data)
                elif kind == "disposition":
                    self._merge_disposition(data)
                else:
                    self._insert_delivery(data)
            except FileNotFoundError:
                continue  # another process replayed it
            except (IntegrityError, OSError, ValueError, TypeError, KeyError) as error:
                # Not an entry, or one the database can never take (a change of a package
                # that is nowhere): set aside, not lost, and not in the way of the others.
                logger.error(f"handoff spool {path.name} cannot be replayed ({error}); kept as "
                             f"{path.name}.bad")
                path.rename(path.with_name(path.name + ".bad"))
                continue
            except SQLAlchemyError as error:
                logger.error(f"handoff spool {path.name} still cannot be written: {error}")
                break  # keep the order: a later change must not overtake this one
            path.unlink()
            applied += 1
        self._spool_pending = bool(self.spooled())
        if applied:
            logger.info(f"handoff store: {applied} spooled write(s) replayed")
        return applied

    def close(self) -> None:
        self.engine.dispose()

    # -- internals ---------------------------------------------------------------------------------

    def _replay_first(self) -> bool:
        """Replay what is spooled before a new write; False while some of it still cannot be
        written (the new write then queues behind it in the spool)."""
        if not self._spool_pending:
            return True
        try:
            self.recover()
        except SQLAlchemyError as error:  # the database is still away: keep spooling
            logger.error(f"handoff store: spool replay failed: {error}")
        return not self._spool_pending

    def _insert(self, data: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(HandoffRow(id=data["handoff_id"], call_id=data["call"]["call_id"],
                             created_at=data["created_at"], package=data,
                             transfer_outcome=data["transfer"]["outcome"],
                             updated_at=data["transfer"]["updated_at"],
                             worker_id=self.worker))
            self._notify(s, "package", data["handoff_id"], data["transfer"]["outcome"])

    def _notify(self, s: Session, kind: str, handoff_id: str, outcome: str) -> None:
        """On PostgreSQL, tell every listening worker (``LISTEN ivr_handoffs``) of the change;
        sent at commit, so a listener that reads the row finds it. The payload is small
        (NOTIFY carries at most 8000 bytes): listeners read the package from the table."""
        if self.engine.dialect.name != "postgresql":
            return  # SQLite: the live feed polls (handoff.live)
        payload = json.dumps({"kind": kind, "handoff_id": handoff_id, "outcome": outcome,
                              "worker": self.worker})
        s.execute(text("SELECT pg_notify(:channel, :payload)"),
                  {"channel": NOTIFY_CHANNEL, "payload": payload})

    def _apply_transfer(self, change: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(HandoffRow, change["handoff_id"])
            if row is None:
                raise KeyError(f"no handoff {change['handoff_id']}")
            package = dict(row.package)
            transfer = dict(package["transfer"])
            transfer["outcome"] = change["outcome"]
            if change["agent_uri"] is not None:
                transfer["agent_uri"] = change["agent_uri"]
            if change["attempt_result"] is not None:
                transfer["attempts"] = [*transfer["attempts"], {
                    "agent_uri": change["agent_uri"], "result": change["attempt_result"],
                    "at": change["at"]}]
            transfer["updated_at"] = change["at"]
            package["transfer"] = transfer
            row.package = validated_dict(package)  # a new dict: SQLAlchemy sees the change
            row.transfer_outcome, row.updated_at = change["outcome"], change["at"]
            self._notify(s, "transfer", row.id, change["outcome"])

    def _merge_disposition(self, row: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            if s.get(HandoffRow, row["handoff_id"]) is None:
                raise KeyError(f"no handoff {row['handoff_id']}")
            s.merge(DispositionRow(**row))

    @staticmethod
    def _dispositions(s: Session, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {d.handoff_id: {"disposition": d.disposition, "agent": d.agent, "at": d.at}
                for d in s.scalars(select(DispositionRow)
                                   .where(DispositionRow.handoff_id.in_(ids)))}

    def _insert_delivery(self, row: dict[str, Any]) -> None:
        with Session(self.engine) as s, s.begin():
            s.add(DeliveryRow(handoff_id=row["handoff_id"], target_url=row["url"],
                              attempt=row["attempt"], status_code=row["status_code"],
                              error=row["error"], at=row["at"], delivered=row["delivered"]))

    def _with_deliveries(self, s: Session, rows: list[HandoffRow]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        by_id: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            for d in s.scalars(select(DeliveryRow).where(DeliveryRow.handoff_id.in_(ids))
                               .order_by(DeliveryRow.id)):
                by_id[d.handoff_id].append(asdict(_delivery(d)))
        return [{**r.package, "worker_id": r.worker_id, "deliveries": by_id[r.id]}
                for r in rows]

    def _spool(self, kind: str, data: dict[str, Any], error: Exception | None) -> Path:
        """Write ``data`` where the database cannot lose it; raises only if the disk refuses
        both (then nothing else could keep it either). ``error`` is None for a write queued
        behind earlier spooled ones."""
        self._spool_pending = True
        data = json_safe(data)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        unique = uuid.uuid4().hex[:6]  # two writes in the same microsecond
        path = self.spool_dir / f"{stamp}-{unique}-{kind}-{data['handoff_id']}.json"
        payload = json.dumps({"kind": kind, "data": data}, ensure_ascii=False)
        # Write then rename, so that a crash never leaves half a file for recover() to choke on.
        handle, temporary = tempfile.mkstemp(dir=self.spool_dir, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(payload)
        os.replace(temporary, path)
        if error is None:
            logger.warning(f"handoff store: {kind} {data.get('handoff_id')} queued behind "
                           f"earlier spooled writes in {path}")
        else:
            logger.error(f"handoff store write failed ({kind} {data.get('handoff_id')}): "
                         f"{type(error).__name__}: {error}; spooled to {path}")
        return path


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(row.target_url, row.attempt, row.status_code, row.error, row.at,
                    row.delivered)
