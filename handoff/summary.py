"""The agent's five-second read: who is calling, why, what was done, what is open, how they feel.

Built from the structured package alone, so it is right with the weak embedded LLM
(docs/architecture.md). The caller's reason is their own words (``handoff.reason``), the evidence
comes from the CRM card by rules per intent (``handoff.evidence``); both are package fields, so the
summary is a function of the package. A capable LLM may rewrite it through any OpenAI-compatible
endpoint; the rewrite replaces the facts version only if ``facts_check.violations`` finds no number,
name, count, state or claimed action in it that the facts do not hold (an action claimed as done
must be in what the IVR did, not merely in what the caller asked for).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handoff.evidence import money, short_date
from intents.dialogue.facts_check import violations

if TYPE_CHECKING:
    from handoff.package import ActionPart, HandoffPackage

_TIERED = {"gold", "platinum"}  # tiers worth telling the agent; "standard" is noise


_short_date, _money = short_date, money


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
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


# How the shipped menu's intents read in a sentence; any other label reads as its words.
_TOPICS = {"order_status": "an order's status", "billing_question": "a billing question",
           "refund": "a refund", "payment": "a payment", "technical_support": "technical support",
           "opening_hours": "opening hours", "address_change": "an address change",
           "cancel_service": "cancelling their service", "talk_to_human": "speaking to a person"}


def topic(label: str) -> str:
    return _TOPICS.get(label, label.replace("_", " "))


# Escalation reasons that only restate the intent's route: the quote already says why.
_ROUTINE = re.compile(r"(is handled by the .+ team|routes to a queue|^routed to)", re.I)
_FEELING = {"calm": "Caller sounds calm.", "concerned": "Caller sounds concerned.",
            "frustrated": "Caller is frustrated."}


def handover_phrase(reason: str) -> str | None:
    """Why the IVR let go, when it says more than the route ("Asked for a person"), else None."""
    if not reason or _ROUTINE.search(reason):
        return None
    if reason == "caller asked for a human":
        return "Asked for a person"
    if reason.startswith("compliance keywords: "):
        return f"Flagged for compliance: {reason.split(': ', 1)[1]}"
    if reason.startswith("combined signals"):
        return "Handed over on several signals together"
    # Thresholds and scores are for the reviewer, not for the agent's ear.
    plain = re.sub(r"\s*\([^)]*\)", "", reason).replace("_", " ").strip()
    return f"Handed over because {plain}"


def done_phrases(actions: list[ActionPart]) -> list[str]:
    """What the IVR did, and what it tried and could not do (a system failure named as such)."""
    phrases = []
    for action in actions:
        if action.ok and action.result is None:  # a tool the LLM called: no result kept
            phrases.append(f"{action.tool.replace('_', ' ')} done")
        elif action.ok:
            phrases.append(action_phrase(action))
        elif (action.error or "").startswith("invalid arguments"):
            phrases.append(f"{action_phrase(action)} (invalid input)")
        else:  # the system of record did not answer: not the same as "not found"
            phrases.append(f"{action_phrase(action)} (system error)")
    return phrases


def summarize(package: HandoffPackage, *, identified_by_caller_id: bool = True) -> str:
    """A few short sentences from the package's facts (deterministic): who, why in the caller's
    own words, the CRM evidence, what the IVR did or could not do, how the caller feels."""
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
    label = package.intent.label if package.intent is not None else None
    asked_for_person = package.escalation.reason == "caller asked for a human"
    if package.reason is not None:
        opening = f'{who} says: "{package.reason.quote}"'
    elif label is not None and label not in ("out_of_scope", "talk_to_human"):
        opening = f"{who} is calling about {topic(label)}."
    elif asked_for_person or label == "talk_to_human":
        opening = f"{who} asked for a person without saying why."
    else:
        opening = f"{who} has a request the IVR did not understand."
    sentences = [opening]
    if package.evidence:
        sentences.append(_sentence("; ".join(e.text for e in package.evidence)))
    done = done_phrases(package.actions)
    sentences.append(_sentence("; ".join(done)) if done else "Nothing done yet.")
    handover = handover_phrase(package.escalation.reason)
    if handover and not (asked_for_person and package.reason is None):
        sentences.append(_sentence(handover))
    sentences.append(_FEELING[package.sentiment.label])
    return " ".join(sentences)


_MONTHS = {m[:3]: m for m in ["January", "February", "March", "April", "May", "June", "July",
                              "August", "September", "October", "November", "December"]}
_SHORT_DATE = re.compile(r"\b(" + "|".join(_MONTHS) + r") (\d{1,2})\b")
_COUNTED = re.compile(r"\b(two|three|four|five|six|\d+) (\$[\d,]+\.\d\d) ([A-Za-z][\w -]*? "
                      r"(?:charges|fees))\b")
_DOLLARS = re.compile(r"\$(\d[\d,]*)\.(\d\d)\b")


def spoken_summary(summary: str) -> str:
    """The summary as the agent's briefing should say it: TTS reads "Nov 13" as "now 13",
    "ETA" as a word and "two $59.00" as "$2.59" (heard with Piper and Whisper), so months are
    spelled out, amounts said in dollars and cents after the count, "ETA" as "due"."""
    text = _SHORT_DATE.sub(lambda m: f"{_MONTHS[m.group(1)]} {m.group(2)}", summary)
    # "two $59.00 Headphones charges" is heard as "$2.59": the count and the amount apart.
    text = _COUNTED.sub(lambda m: f"{m.group(1)} {m.group(3)} of {m.group(2)}", text)
    text = _DOLLARS.sub(lambda m: f"{m.group(1)} dollars" + (
        f" {int(m.group(2))} cents" if m.group(2) != "00" else ""), text)
    return re.sub(r"\bpast its ETA\b", "overdue", text).replace(", ETA ", ", due ")


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
    if package.reason is not None:
        parts.append(package.reason.quote)
    for item in package.evidence:
        parts += [item.text, item.facts]
    return " ".join(str(p) for p in parts)


def actions_text(package: HandoffPackage) -> str:
    """What the IVR did and the CRM records show, without the caller's words: a rewrite may
    claim an action (refunded, opened, scheduled) only if it is here."""
    parts = done_phrases(package.actions) + [a.tool for a in package.actions if a.ok]
    parts += [item.text for item in package.evidence]
    return " ".join(parts)


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
                 api_key: str | None = None) -> None:
        from models.llm_client import chat_client

        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        # One try: a retry would not fit the transfer's wait, the facts version is ready anyway.
        self.client = chat_client(base_url, api_key=api_key, timeout_s=timeout_s)
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
        problems = violations(text, facts, confirmed, actions_text=actions_text(package))
        return SummaryRewrite(text, not problems, problems)

    async def apply(self, package: HandoffPackage) -> SummaryRewrite:
        """Rewrite ``package.summary`` in place if the rewrite passes the facts check."""
        rewrite = await self.rewrite(package)
        if rewrite.accepted and rewrite.text:
            package.summary, package.summary_source = rewrite.text, "llm"
        return rewrite

    async def aclose(self) -> None:
        await self.client.close()
