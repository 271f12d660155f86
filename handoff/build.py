"""Building the handoff package from the call state, the transcript and the CRM.

Facts only: the customer card and the actions come from the CRM and the tools, the reason is the
caller's own words (``handoff.reason``), the evidence is found by rules (``handoff.evidence``),
and the summary is written from those (``handoff.summary``). An LLM may rewrite the summary later,
from the same facts only (``handoff.summary.LlmSummarizer``).
"""

from __future__ import annotations

from datetime import date, datetime

from handoff.crm import CrmStore
from handoff.evidence import find_evidence
from handoff.package import (
    AccountPart,
    ActionPart,
    Alternative,
    CallInfoPart,
    CasePart,
    ChargePart,
    CustomerPart,
    EscalationPart,
    EvidencePart,
    HandoffPackage,
    IntentPart,
    OrderPart,
    ReasonPart,
    SentimentPart,
)
from handoff.reason import caller_reason
from handoff.summary import summarize
from intents.dialogue.escalation import sentiment_label
from intents.dialogue.state import CallState, IntentRecord, TranscriptLine
from intents.redaction import redact


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
                          menu_version=state.menu_version,
                          flow_version=state.flow_version),
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


