"""The handoff package: everything an agent needs before saying hello, as one JSON document.

Versioned by ``schema/handoff-<version>.json`` (shipped with the package, validated on every
write): the SIP side puts its id in the INVITE, the agent desktop renders it, webhooks POST it,
the store keeps it. Built from the call state and the CRM, never from the LLM; secrets are
redacted before it leaves this module (``validated_dict`` runs the final scan).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handoff.crm import CrmStore
from handoff.escalation import sentiment_label
from handoff.evidence import find_evidence
from handoff.reason import caller_reason
from handoff.redaction import redact, scan
from handoff.state import CallState, IntentRecord

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).parent / "schema" / f"handoff-{SCHEMA_VERSION}.json"

TransferOutcome = Literal["pending", "connected", "no-answer", "busy", "rejected", "abandoned",
                          "callback", "failed"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TranscriptLine(_Model):
    """One line of the conversation, secrets already redacted."""

    turn: int = Field(ge=0, description="Caller turn index; 0 is the greeting.")
    speaker: Literal["caller", "ivr"]
    text: str
    at: str = Field(default_factory=now_iso, description="Wall-clock time, ISO 8601 UTC.")


class CallInfoPart(_Model):
    call_id: str
    sip_call_id: str | None = None
    caller_number: str | None = None
    called_number: str | None = None
    started_at: str
    menu_version: str


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


def customer_card(crm: CrmStore, customer_id: int) -> CustomerPart | None:
    """The CRM card the agent sees: identity, accounts, recent orders and charges, open cases."""
    card = crm.customer_card(customer_id)
    if card is None:
        return None
    return CustomerPart(
        id=card.id, name=card.name, phone=card.phone, tier=card.tier, language=card.language,
        accounts=[AccountPart(number=a.number, balance_cents=a.balance_cents)
                  for a in card.accounts],
        recent_orders=[OrderPart(number=o.number, status=o.status, carrier=o.carrier,
                                 eta=_iso(o.eta)) for o in card.recent_orders],
        recent_charges=[ChargePart(account_number=c.account_number, amount_cents=c.amount_cents,
                                   description=c.description, charged_on=_iso(c.charged_on))
                        for c in card.recent_charges],
        open_cases=[CasePart(id=c.id, subject=c.subject, status=c.status,
                             created_at=_iso(c.created_at)) for c in card.open_cases])


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _intent(records: list[IntentRecord]) -> IntentPart | None:
    """The intent the call is about: the last one routed, else the last one guessed."""
    if not records:
        return None
    chosen = next((r for r in reversed(records) if r.decision == "route"), records[-1])
    return IntentPart(label=chosen.label, confidence=chosen.confidence,
                      alternatives=[Alternative(label=n, confidence=p)
                                    for n, p in chosen.alternatives])


def sentiment_of(state: CallState) -> SentimentPart:
    trend = [float(d.signals["sentiment"]) for d in state.escalations
             if "sentiment" in d.signals]
    if not trend:  # no policy ran: frustration alone, from the raw signals
        trend = [-float(s.get("frustration", 0.0)) for s in state.signals]
    return SentimentPart(trend=trend, latest=trend[-1] if trend else 0.0,
                         label=sentiment_label(trend))


def escalation_of(state: CallState) -> EscalationPart:
    decision = next((d for d in reversed(state.escalations) if d.escalate), None)
    if decision is not None:
        return EscalationPart(reason=decision.reason, queue=decision.queue or "general",
                              signals=decision.signals)
    if state.route is None:  # not handed over (a self-served call's after-call summary)
        return EscalationPart(reason="", queue="")
    return EscalationPart(reason=state.escalation_reason or "routed to a queue",
                          queue=state.route)


def build_package(state: CallState, crm: CrmStore, transcript: list[TranscriptLine], *,
                  sip_call_id: str | None = None, called_number: str | None = None,
                  started_at: str | None = None) -> HandoffPackage:
    """The package for ``state`` with the caller's CRM card and a summary built from the facts.

    Transcript lines are redacted again here (a line may come from a path that did not redact),
    and a failed CRM read leaves the card out rather than failing the handoff.
    """
    from handoff.summary import summarize  # summary reads the package parts built here

    customer = None
    if state.customer_id is not None:
        try:
            customer = customer_card(crm, state.customer_id)
        except Exception as error:  # noqa: BLE001 - the transfer must go on without the card
            from loguru import logger

            logger.error(f"{state.call_id}: CRM card for the handoff failed: {error}")
    package = HandoffPackage(
        call=CallInfoPart(call_id=state.call_id, sip_call_id=sip_call_id,
                          caller_number=state.caller_number, called_number=called_number,
                          started_at=started_at or state.started_at,
                          menu_version=state.menu_version),
        customer=customer,
        intent=_intent(state.intents),
        slots={k: redact(v) for k, v in state.slots.items()},
        actions=[ActionPart(tool=a.tool, arguments=a.arguments, ok=a.ok, result=a.result,
                            error=a.error, at=a.at) for a in state.actions],
        sentiment=sentiment_of(state),
        escalation=escalation_of(state),
        transcript=[line.model_copy(update={"text": redact(line.text)}) for line in transcript],
    )
    package.reason, package.evidence = reason_and_evidence(package, state.intents)
    package.summary = summarize(package, identified_by_caller_id=customer is not None)
    return package


def reason_and_evidence(package: HandoffPackage, intents: list[IntentRecord] | None = None
                        ) -> tuple[ReasonPart | None, list[EvidencePart]]:
    """The caller's reason (from the package's transcript) and the CRM evidence bearing on it.

    ``intents`` (the call state's) mark the utterances the intent was recognised from."""
    said = [(line.turn, line.text) for line in package.transcript if line.speaker == "caller"]
    label = package.intent.label if package.intent is not None else None
    routed = [r.text for r in intents or [] if r.label == label]
    items = {w for c in (package.customer.recent_charges if package.customer else [])
             for w in c.description.lower().split()}
    found = caller_reason(said, routed_texts=routed, extra_cues=items)
    reason = None if found is None else ReasonPart(quote=found.quote, turns=found.turns)
    evidence = find_evidence(intent=label, said=" ".join(text for _, text in said),
                             customer=package.customer, actions=package.actions,
                             slots=package.slots,
                             today=datetime.fromisoformat(package.call.started_at).date())
    return reason, [EvidencePart(kind=e.kind, text=e.text, facts=e.facts) for e in evidence]


def load_package(data: dict[str, Any] | str) -> HandoffPackage:
    """A package read back from JSON (the store, a webhook receiver)."""
    if isinstance(data, str):
        data = json.loads(data)
    extra = {k: v for k, v in data.items() if k != "deliveries"}
    return HandoffPackage.model_validate(extra)
