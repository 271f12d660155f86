"""The conversation state the turn manager keeps and the handoff module reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class TranscriptLine(BaseModel):
    """One line of the conversation, secrets already redacted."""

    model_config = ConfigDict(extra="forbid")

    turn: int = Field(ge=0, description="Caller turn index; 0 is the greeting.")
    speaker: Literal["caller", "ivr"]
    text: str
    at: str = Field(default_factory=_now, description="Wall-clock time, ISO 8601 UTC.")


@dataclass
class ActionRecord:
    """A tool call and what the system of record said."""

    tool: str
    arguments: dict[str, Any]
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    at: str = field(default_factory=_now)


@dataclass
class IntentRecord:
    turn: int
    text: str  # as heard, secrets masked
    label: str
    confidence: float
    alternatives: list[tuple[str, float]]
    decision: str
    reason: str


@dataclass
class EscalationDecision:
    """One turn's escalation verdict, kept whether or not the caller was handed over, so a
    reviewer can see why the IVR held a caller or let them go."""

    turn: int
    escalate: bool
    reason: str
    score: float  # the combined pressure of the soft signals; 1.0 is the intent's threshold
    signals: dict[str, Any]  # the values the verdict was computed from
    intent: str | None = None  # the intent whose thresholds applied
    queue: str | None = None  # where the caller goes, when escalate
    at: str = field(default_factory=_now)


@dataclass
class CallState:
    call_id: str
    caller_number: str | None = None
    menu_version: str = ""
    flow_version: str = ""  # the flow bundle the call ran on (intents/flows/bundle.py)
    customer_id: int | None = None
    customer_name: str | None = None
    slots: dict[str, str] = field(default_factory=dict)  # confirmed values only
    intents: list[IntentRecord] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)
    route: str | None = None  # the queue the caller is to be handed to, if any
    escalation_reason: str | None = None
    escalations: list[EscalationDecision] = field(default_factory=list)  # one per caller turn
    started_at: str = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
