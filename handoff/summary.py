"""The agent's five-second read: who is calling, why, what was done, what is open, how they feel.

Built from the structured package alone, so it is right with the weak embedded LLM (DESIGN.md).
A capable LLM may rewrite it through any OpenAI-compatible endpoint; the rewrite replaces the
facts version only if ``facts_check.violations`` finds no number, name or claimed action in it
that the facts do not hold.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from handoff.facts_check import violations

if TYPE_CHECKING:
    from handoff.package import ActionPart, HandoffPackage

_TIERED = {"gold", "platinum"}  # tiers worth telling the agent; "standard" is noise


def _short_date(iso: str) -> str:
    day = date.fromisoformat(iso)
    return f"{day:%b} {day.day}"


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def action_phrase(action: ActionPart) -> str:
    """One action in an agent's words, e.g. "Order 456712 looked up: shipped with UPS, ETA
    Nov 24"; a failed one says what failed."""
    args, result = action.arguments, action.result or {}
    if action.tool == "order_status":
        number = result.get("order_number") or args.get("order_number", "")
        if not action.ok:
            return f"order {number} lookup failed"
        if not result.get("found"):
            return f"Order {number} looked up: not found"
        line = f"Order {number} looked up: {result.get('status', 'unknown status')}"
        if result.get("carrier") and result.get("status") != "delivered":
            line += f" with {result['carrier']}"
        if result.get("eta") and result.get("status") != "delivered":
            line += f", ETA {_short_date(result['eta'])}"
        return line
    if action.tool == "account_balance":
        if not action.ok:
            return "balance lookup failed"
        if not result.get("found"):
            return "Balance looked up: account not found"
        return f"Balance read out: {_money(result['balance_cents'])}"
    if action.tool == "recent_charges":
        if not action.ok:
            return "recent charges lookup failed"
        return f"{len(result.get('charges', []))} recent charges read out"
    if action.tool == "open_case":
        if not action.ok:
            return "opening a case failed"
        return f"Case {result.get('case_id')} opened ({args.get('subject', 'no subject')})"
    if action.tool == "schedule_callback":
        if not action.ok:
            return "scheduling a callback failed"
        return f"Callback scheduled ({args.get('window', 'no window')})"
    return f"{action.tool} done" if action.ok else f"{action.tool} failed"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


# How the shipped menu's intents read in a sentence; any other label reads as its words.
_TOPICS = {"order_status": "an order's status", "billing_question": "a billing question",
           "refund": "a refund", "payment": "a payment", "technical_support": "technical support",
           "opening_hours": "opening hours", "address_change": "an address change",
           "cancel_service": "cancelling their service", "talk_to_human": "speaking to a person"}


def topic(label: str) -> str:
    return _TOPICS.get(label, label.replace("_", " "))


def summarize(package: HandoffPackage, *, identified_by_caller_id: bool = True) -> str:
    """Two or three sentences from the package's facts (deterministic)."""
    customer = package.customer
    if customer is not None:
        who = customer.name
        if customer.tier in _TIERED:
            who += f" ({customer.tier} tier)"
        if identified_by_caller_id:
            who += ", matched by caller ID,"
    elif package.call.caller_number:
        who = f"An unidentified caller ({package.call.caller_number})"
    else:
        who = "An unidentified caller"
    if package.intent is not None and package.intent.label != "out_of_scope":
        why = f"is calling about {topic(package.intent.label)}"
    else:
        why = "has a request the IVR did not understand"
    sentences = [f"{who} {why}."]
    done = [action_phrase(a) for a in package.actions if a.ok]
    failed = [action_phrase(a) for a in package.actions if not a.ok]
    if done:
        sentences.append(_sentence("; ".join(done)))
    reason = package.escalation.reason
    open_items = ([f"handed over because {reason}"] if reason else []) + failed
    feeling = {"calm": "sounds calm", "concerned": "sounds concerned",
               "frustrated": "is frustrated"}[package.sentiment.label]
    sentences.append(_sentence("; ".join(open_items + [f"the caller {feeling}"])))
    return " ".join(sentences)


def facts_text(package: HandoffPackage) -> str:
    """Everything a rewrite may say: the facts summary and the values it was built from."""
    parts: list[Any] = [package.summary, package.escalation.reason, package.sentiment.label]
    if package.customer is not None:
        parts += [package.customer.name, package.customer.tier]
    if package.intent is not None:
        parts.append(package.intent.label.replace("_", " "))
    for action in package.actions:
        parts += [action.tool, action.arguments, action.result or {}, action.error or ""]
    if package.call.caller_number:
        parts.append(package.call.caller_number)
    return " ".join(str(p) for p in parts)


@dataclass
class SummaryRewrite:
    """What an LLM made of the summary, and whether it was kept."""

    text: str | None
    accepted: bool
    problems: list[str] = field(default_factory=list)


class LlmSummarizer:
    """Rewrites the facts summary through any OpenAI-compatible chat endpoint."""

    PROMPT = ("Rewrite this call summary for a contact-centre agent in two or three short "
              "sentences. Use only the facts given. Do not add numbers, names, dates or actions.")

    def __init__(self, base_url: str, *, model: str = "local", timeout_s: float = 3.0,
                 api_key: str = "not-needed") -> None:
        from openai import AsyncOpenAI

        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        # One try: a retry would not fit the transfer's wait, the facts version is ready anyway.
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s,
                                  max_retries=0)
        self.model = model
        self.timeout_s = timeout_s

    async def rewrite(self, package: HandoffPackage) -> SummaryRewrite:
        facts = facts_text(package)
        try:
            answer = await asyncio.wait_for(self.client.chat.completions.create(
                model=self.model, max_tokens=120, temperature=0.2, messages=[
                    {"role": "system", "content": self.PROMPT},
                    {"role": "user", "content": f"Facts: {facts}\nSummary: {package.summary}"}]),
                timeout=self.timeout_s)
            text = (answer.choices[0].message.content or "").strip()
        except Exception as error:  # noqa: BLE001 - late or unreachable: the facts version stands
            return SummaryRewrite(None, False, [f"no answer: {type(error).__name__}"])
        if not text:
            return SummaryRewrite(None, False, ["empty answer"])
        confirmed = {a.tool for a in package.actions if a.ok}
        problems = violations(text, facts, confirmed)
        return SummaryRewrite(text, not problems, problems)

    async def apply(self, package: HandoffPackage) -> SummaryRewrite:
        """Rewrite ``package.summary`` in place if the rewrite passes the facts check."""
        rewrite = await self.rewrite(package)
        if rewrite.accepted and rewrite.text:
            package.summary, package.summary_source = rewrite.text, "llm"
        return rewrite

    async def aclose(self) -> None:
        await self.client.close()
