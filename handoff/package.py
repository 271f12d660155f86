"""The handoff package: everything an agent needs before saying hello, as one JSON document.

Versioned by ``schema/handoff-<version>.json`` (shipped with the package, validated on every
write): the SIP side puts its id in the INVITE, the agent desktop renders it, webhooks POST it,
the store keeps it. Built from the call state and the CRM by ``handoff.build``, never from the
LLM; secrets are scanned before it leaves this module (``validated_dict`` runs the final scan).
"""



from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from intents.dialogue.state import TranscriptLine
from intents.redaction import scan

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).parent / "schema" / f"handoff-{SCHEMA_VERSION}.json"

TransferOutcome = Literal["pending", "connected", "no-answer", "busy", "rejected", "abandoned",
                          "callback", "failed"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallInfoPart(_Model):
    call_id: str
    sip_call_id: str | None = None
    caller_number: str | None = None
    called_number: str | None = None
    started_at: str
    menu_version: str
    flow_version: str = ""  # the flow bundle the call ran on; "" before bundles existed


class AccountPart(_Model):
    number: str
    balance_cents: int


class OrderPart(_Model):
    number: str
    status: str
    carrier: str | None
    eta: str | None


class ChargePart(_Model):
    account_number: str
    amount_cents: int
    description: str
    charged_on: str


class CasePart(_Model):
    id: int
    subject: str
    status: str
    created_at: str


class CustomerPart(_Model):
    """The caller's CRM card, when the caller was identified."""

    id: int
    name: str
    phone: str
    tier: str
    language: str
    accounts: list[AccountPart] = Field(default_factory=list)
    recent_orders: list[OrderPart] = Field(default_factory=list)
    recent_charges: list[ChargePart] = Field(default_factory=list)
    open_cases: list[CasePart] = Field(default_factory=list)


class Alternative(_Model):
    label: str
    confidence: float


class IntentPart(_Model):
    label: str
    confidence: float
    alternatives: list[Alternative] = Field(default_factory=list)


class ActionPart(_Model):
    tool: str
    arguments: dict[str, Any]
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    at: str


class SentimentPart(_Model):
    trend: list[float] = Field(default_factory=list, description="Per caller turn, -1..1.")
    latest: float = 0.0
    label: Literal["calm", "concerned", "frustrated"] = "calm"


class EscalationPart(_Model):
    reason: str
    queue: str
    signals: dict[str, Any] = Field(default_factory=dict)


class ReasonPart(_Model):
    """Why the caller called, in their own words (``handoff.reason``)."""

    quote: str = Field(min_length=1, description="Extract of what the caller said: fillers, "
                       "greetings and secrets removed, nothing reworded.")
    turns: list[int] = Field(default_factory=list, description="Caller turns it comes from.")


class EvidencePart(_Model):
    """A CRM fact that bears on the caller's reason (``handoff.evidence``)."""

    kind: Literal["duplicate_charge", "no_duplicate_charge", "named_charge", "largest_charge",
                  "late_order", "delayed_order", "delivered_order", "order", "balance",
                  "open_case"]
    text: str
    facts: dict[str, Any] = Field(default_factory=dict)


class TransferAttempt(_Model):
    agent_uri: str
    result: str  # connected, no-answer, busy, rejected, failed...
    at: str = Field(default_factory=now_iso)


class TransferPart(_Model):
    outcome: TransferOutcome = "pending"
    agent_uri: str | None = None
    attempts: list[TransferAttempt] = Field(default_factory=list)
    updated_at: str = Field(default_factory=now_iso)


class HandoffPackage(_Model):
    """Schema version 1 of the package (see ``schema/handoff-1.json``)."""

    schema_version: Literal["1"] = SCHEMA_VERSION
    handoff_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: str = Field(default_factory=now_iso)
    call: CallInfoPart
    customer: CustomerPart | None = None
    intent: IntentPart | None = None
    slots: dict[str, str] = Field(default_factory=dict)
    actions: list[ActionPart] = Field(default_factory=list)
    sentiment: SentimentPart = Field(default_factory=SentimentPart)
    escalation: EscalationPart
    transcript: list[TranscriptLine] = Field(default_factory=list)
    reason: ReasonPart | None = None
    evidence: list[EvidencePart] = Field(default_factory=list)
    summary: str = ""
    summary_source: Literal["facts", "llm"] = "facts"
    transfer: TransferPart = Field(default_factory=TransferPart)

    def to_dict(self) -> dict[str, Any]:
        """The package as written: validated against the shipped schema, secrets scanned."""
        return validated_dict(self.model_dump(mode="json"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def validated_dict(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` after the final secret scan, or ValueError naming the first schema violation."""
    data = scan(data)
    error = next(iter(sorted(_validator().iter_errors(data), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"handoff package does not match schema {SCHEMA_VERSION} at "
                         f"{where}: {error.message}")
    return data


def load_package(data: dict[str, Any] | str) -> HandoffPackage:
    """A package read back from JSON (the store, a webhook receiver)."""
    if isinstance(data, str):
        data = json.loads(data)
    extra = {k: v for k, v in data.items() if k != "deliveries"}
    return HandoffPackage.model_validate(extra)
