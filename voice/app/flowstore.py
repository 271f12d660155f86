"""Which flow version is live, who changed it and why, and the eval runs that justify a change.

Three tables beside the call records (SQLite by default, any SQLAlchemy URL): ``flow_active``
(one row: the version new calls get), ``flow_audit`` (every promotion and rollback: who, when,
why, the eval run cited, whether it was forced) and ``eval_runs`` (every ``ivr eval``: cohort,
candidate and baseline with their content digests, the verdict and the full report).
"""

from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from handoff.db import json_safe, open_engine


class Base(DeclarativeBase):
    pass


class ActiveRow(Base):
    __tablename__ = "flow_active"
    key: Mapped[str] = mapped_column(String(16), primary_key=True)  # always "active"
    version: Mapped[str] = mapped_column(String(120))
    digest: Mapped[str] = mapped_column(String(64))
    since: Mapped[float] = mapped_column(Float)


class AuditRow(Base):
    __tablename__ = "flow_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    who: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(16))  # promote | rollback
    version: Mapped[str] = mapped_column(String(120))
    previous: Mapped[str | None] = mapped_column(String(120), nullable=True)
    reason: Mapped[str] = mapped_column(String(500), default="")
    eval_run: Mapped[str | None] = mapped_column(String(32), nullable=True)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)


class EvalRow(Base):
    __tablename__ = "eval_runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    cohort: Mapped[str] = mapped_column(String(120))
    cohort_digest: Mapped[str] = mapped_column(String(64))
    candidate: Mapped[str] = mapped_column(String(120), index=True)
    candidate_digest: Mapped[str] = mapped_column(String(64))
    baseline: Mapped[str] = mapped_column(String(120))
    baseline_digest: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[dict] = mapped_column(JSON)


@dataclass(frozen=True)
class Active:
    version: str
    digest: str
    since: float


def who_am_i() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


class FlowStore:
    """Thread-safe, one short transaction per method; call it off the event loop."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        Base.metadata.create_all(self.engine)

    def active(self) -> Active | None:
        with Session(self.engine) as s:
            row = s.get(ActiveRow, "active")
            return Active(row.version, row.digest, row.since) if row else None

    def set_active(self, version: str, digest: str, *, action: str, reason: str,
                   who: str | None = None, eval_run: str | None = None,
                   forced: bool = False) -> None:
        """Make ``version`` live and write the audit row, in one transaction."""
        now = time.time()
        with Session(self.engine) as s, s.begin():
            row = s.get(ActiveRow, "active")
            previous = row.version if row else None
            s.merge(ActiveRow(key="active", version=version, digest=digest, since=now))
            s.add(AuditRow(at=now, who=who or who_am_i(), action=action, version=version,
                           previous=previous, reason=reason[:500], eval_run=eval_run,
                           forced=forced))

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest changes, newest first."""
        with Session(self.engine) as s:
            rows = s.scalars(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit))
            return [{"at": r.at, "who": r.who, "action": r.action, "version": r.version,
                     "previous": r.previous, "reason": r.reason, "eval_run": r.eval_run,
                     "forced": r.forced} for r in rows]

    def save_eval(self, *, cohort: str, cohort_digest: str, candidate: str,
                  candidate_digest: str, baseline: str, baseline_digest: str, passed: bool,
                  report: dict[str, Any]) -> str:
        run_id = uuid.uuid4().hex[:12]
        with Session(self.engine) as s, s.begin():
            s.add(EvalRow(id=run_id, at=time.time(), cohort=cohort, cohort_digest=cohort_digest,
                          candidate=candidate, candidate_digest=candidate_digest,
                          baseline=baseline, baseline_digest=baseline_digest, passed=passed,
                          report=json_safe(report)))
        return run_id

    def eval_run(self, run_id: str) -> dict[str, Any] | None:
        with Session(self.engine) as s:
            row = s.get(EvalRow, run_id)
            return self._eval(row) if row else None

    def passing_run(self, digest: str) -> dict[str, Any] | None:
        """The latest passing eval run whose candidate was this very content."""
        with Session(self.engine) as s:
            row = s.scalars(select(EvalRow).where(
                EvalRow.candidate_digest == digest, EvalRow.passed.is_(True))
                .order_by(EvalRow.at.desc()).limit(1)).first()
            return self._eval(row) if row else None

    def eval_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            rows = s.scalars(select(EvalRow).order_by(EvalRow.at.desc()).limit(limit))
            return [{k: v for k, v in self._eval(r).items() if k != "report"} for r in rows]

    @staticmethod
    def _eval(row: EvalRow) -> dict[str, Any]:
        return {"id": row.id, "at": row.at, "cohort": row.cohort,
                "cohort_digest": row.cohort_digest, "candidate": row.candidate,
                "candidate_digest": row.candidate_digest, "baseline": row.baseline,
                "baseline_digest": row.baseline_digest, "passed": row.passed,
                "report": row.report}
