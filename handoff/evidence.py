"""The CRM facts that bear on what the caller said, found by rules per intent.

Each rule reads the caller's CRM card (the package's ``customer``), the IVR's tool results and
the caller's words, and names records, never guesses: a duplicate charge is two or more charges
of the same amount on the same day on one account; a late order is one not delivered whose ETA
is before the call's date; a delayed order is one the CRM marks ``delayed``. A claim the records
contradict is said too (a "charged twice" with no duplicate among the charges on the card, a
"hasn't arrived" for an order marked delivered), because that is what the agent must know first.

The rules, by intent (or the caller's words):

- billing_question, refund, payment, cancel_service; "twice", "double": duplicate charges; the
  charges the caller named (item or amount); the largest charge when the bill is "too high" or
  "not recognised".
- order_status, refund; "hasn't arrived", "late", "where is my order": the order named (slot,
  number said, lookup): late, delayed, marked delivered; else open orders late or delayed.
- payment, cancel_service: the account balance, unless the IVR read it out.
- any: open cases whose subject shares a word with what the caller said.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handoff.package import ActionPart, ChargePart, CustomerPart

MAX_ITEMS = 3  # evidence the summary carries; the card holds the rest

_BILLING = {"billing_question", "refund", "payment", "cancel_service"}
_ORDERS = {"order_status", "refund"}
_BALANCE = {"payment", "cancel_service"}

_DUPLICATE_CLAIM = re.compile(r"\b(twice|double[d]?|duplicate[d]?|two times|two charges|"
                              r"charged (?:me )?again|same (?:charge|amount|thing) two|"
                              r"billed (?:me )?twice)\b", re.I)
_UNKNOWN_CLAIM = re.compile(r"\b(don't recogni[sz]e|do not recogni[sz]e|didn't make|never made|"
                            r"didn't buy|never bought|didn't order|unknown|what is this|"
                            r"too high|so high|overcharged|wrong amount|more than)\b", re.I)
_DELIVERY_CLAIM = re.compile(
    r"\b(?:(?:hasn't|has not|haven't|have not|hadn't|never|not yet|still not|didn't|did not)"
    r"\s+(?:\w+\s+){0,2}(?:arrived?|come|came|received?|got|shown up|delivered|turned up|"
    r"showed up|get)|late|delayed|still waiting|where(?:'s| is) my (?:order|package|parcel|"
    r"delivery)|missing|lost|not here|never came|when will (?:it|my \w+) (?:arrive|come))\b",
    re.I)
_ORDER_NUMBER = re.compile(r"(?<!\d)(\d(?:[ -]?\d){5})(?!\d)")
_MONEY = re.compile(r"\$\s?(\d[\d,]*(?:\.\d{1,2})?)|(\d[\d,]*(?:\.\d{1,2})?)\s?(?:dollars?|bucks)",
                    re.I)
_WORDS = re.compile(r"[a-z]+")
_COMMON = {"the", "a", "an", "my", "of", "for", "and", "by", "phone", "call", "requested",
           "case", "on", "to", "in", "plan", "charge", "order"}
_NUMBER_WORD = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


@dataclass(frozen=True)
class Evidence:
    """One CRM fact for the agent: a kind, the words of the summary, the record's values."""

    kind: str  # duplicate_charge, no_duplicate_charge, named_charge, largest_charge,
    # late_order, delayed_order, delivered_order, order, balance, open_case
    text: str
    facts: dict[str, Any] = field(default_factory=dict)


def short_date(iso: str) -> str:
    day = date.fromisoformat(iso[:10])
    return f"{day:%b} {day.day}"


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def _amounts_said(text: str) -> set[int]:
    cents = set()
    for match in _MONEY.finditer(text):
        figures = (match.group(1) or match.group(2)).replace(",", "")
        cents.add(round(float(figures) * 100))
    return cents


_VAGUE = _COMMON | {"card", "monthly", "add", "on", "rental", "extension"}  # name no one item


def _item(description: str, *, plural: bool = False) -> str:
    """ "Headphones charge", "Late fee", "Delivery charge": the item as a charge."""
    if description.lower().endswith(("charge", "fee")):
        return description + ("s" if plural else "")
    return f"{description} charge{'s' if plural else ''}"


def _charge_words(charge: ChargePart) -> set[str]:
    return {w for w in _WORDS.findall(charge.description.lower()) if w not in _VAGUE}


def charge_evidence(charges: Sequence[ChargePart], said: str, *, claims_duplicate: bool
                    ) -> list[Evidence]:
    """Duplicates (same account, amount and day), then the charges the caller named."""
    found: list[Evidence] = []
    groups: dict[tuple[str, int, str], list[ChargePart]] = defaultdict(list)
    for charge in charges:
        groups[(charge.account_number, charge.amount_cents, charge.charged_on)].append(charge)
    duplicated: set[int] = set()
    for (account, cents, day), same in groups.items():
        if len(same) < 2:
            continue
        duplicated |= {id(c) for c in same}
        items = sorted({c.description for c in same})
        what = f"{money(cents)} {_item(items[0], plural=True)}" if len(items) == 1 else \
            f"{money(cents)} charges ({', '.join(items)})"
        count = _NUMBER_WORD.get(len(same), str(len(same)))
        found.append(Evidence("duplicate_charge",
                              f"the account shows {count} {what} on {short_date(day)}",
                              {"account_number": account, "amount_cents": cents,
                               "charged_on": day, "count": len(same),
                               "descriptions": items}))
    if claims_duplicate and not found and charges:
        found.append(Evidence("no_duplicate_charge",
                              f"no duplicate among the {len(charges)} latest charges (same "
                              f"amount, same day)",
                              {"charges_checked": len(charges)}))
    lowered = said.lower()
    words = set(_WORDS.findall(lowered))
    amounts = _amounts_said(said)
    named = [c for c in charges if id(c) not in duplicated and
             (_charge_words(c) & words or c.amount_cents in amounts)]
    for charge in named[:2]:
        found.append(Evidence("named_charge", f"a {money(charge.amount_cents)} "
                              f"{_item(charge.description)} on {short_date(charge.charged_on)}",
                              _charge_facts(charge)))
    if not named and not duplicated and charges and _UNKNOWN_CLAIM.search(said):
        top = max(charges, key=lambda c: (c.amount_cents, c.charged_on))
        found.append(Evidence("largest_charge", f"the largest recent charge is "
                              f"{money(top.amount_cents)} {top.description} on "
                              f"{short_date(top.charged_on)}", _charge_facts(top)))
    return found


def _charge_facts(charge: ChargePart) -> dict[str, Any]:
    return {"account_number": charge.account_number, "amount_cents": charge.amount_cents,
            "description": charge.description, "charged_on": charge.charged_on}


@dataclass(frozen=True)
class _Order:
    number: str
    status: str
    carrier: str | None
    eta: str | None
    looked_up: bool  # the IVR already told the agent about it (an action in the summary)


def _orders(customer: CustomerPart | None, actions: Sequence[ActionPart]) -> dict[str, _Order]:
    """Orders by number: the card's, overridden by what a lookup in this call returned."""
    orders: dict[str, _Order] = {}
    if customer is not None:
        for o in customer.recent_orders:
            orders[o.number] = _Order(o.number, o.status, o.carrier, o.eta, False)
    for action in actions:
        result = action.result or {}
        if action.tool == "order_status" and action.ok and result.get("found"):
            number = str(result.get("order_number"))
            orders[number] = _Order(number, str(result.get("status", "")), result.get("carrier"),
                                    result.get("eta"), True)
    return orders


def order_evidence(customer: CustomerPart | None, actions: Sequence[ActionPart],
                   named: Sequence[str], said: str, today: date, *, about_orders: bool
                   ) -> list[Evidence]:
    """Late, delayed or delivered-but-missing orders; the named ones first."""
    orders = _orders(customer, actions)
    claims_missing = bool(_DELIVERY_CLAIM.search(said))
    targets = [orders[n] for n in named if n in orders]
    if not targets and (about_orders or claims_missing):
        targets = [o for o in orders.values() if o.status != "delivered"]
    found: list[Evidence] = []
    for order in targets:
        facts = {"order_number": order.number, "status": order.status, "carrier": order.carrier,
                 "eta": order.eta}
        late = order.status != "delivered" and order.eta is not None and \
            date.fromisoformat(order.eta) < today
        by = f" with {order.carrier}" if order.carrier else ""
        if late and order.looked_up:  # the lookup's sentence has the status and the ETA
            found.append(Evidence("late_order", f"order {order.number} is past its ETA", facts))
        elif late:
            still = "is marked delayed" if order.status == "delayed" else \
                f"is still {order.status}{by}"
            found.append(Evidence("late_order", f"order {order.number} was due "
                                  f"{short_date(order.eta)} and {still}", facts))
        elif order.looked_up:
            continue  # delayed or delivered: the lookup's sentence says so
        elif order.status == "delayed":
            eta = f", ETA {short_date(order.eta)}" if order.eta else ""
            found.append(Evidence("delayed_order",
                                  f"order {order.number} is marked delayed{eta}", facts))
        elif order.status == "delivered" and claims_missing and order.number in named:
            found.append(Evidence("delivered_order",
                                  f"order {order.number} is marked delivered", facts))
        elif order.number in named and not order.looked_up:
            eta = f", ETA {short_date(order.eta)}" if order.eta and \
                order.status != "delivered" else ""
            found.append(Evidence("order", f"order {order.number} is {order.status}{by}{eta}",
                                  facts))
    return found


def _stems(words: set[str]) -> set[str]:
    return {w[:5] for w in words if len(w) > 3}


def find_evidence(*, intent: str | None, said: str, customer: CustomerPart | None,
                  actions: Sequence[ActionPart], slots: dict[str, str], today: date
                  ) -> list[Evidence]:
    """The CRM facts that bear on the call, most telling first (at most ``MAX_ITEMS``).

    ``said`` is everything the caller said (redacted), ``today`` the call's date (UTC)."""
    named = [slots["order_number"]] if slots.get("order_number") else []
    named += [re.sub(r"\D", "", m) for m in _ORDER_NUMBER.findall(said)]
    named = list(dict.fromkeys(named))
    claims_duplicate = bool(_DUPLICATE_CLAIM.search(said))
    about_orders = intent in _ORDERS
    found: list[Evidence] = []
    if customer is not None and (intent in _BILLING or claims_duplicate):
        found += charge_evidence(customer.recent_charges, said,
                                 claims_duplicate=claims_duplicate)
    if about_orders or named or _DELIVERY_CLAIM.search(said):
        found += order_evidence(customer, actions, named, said, today, about_orders=about_orders)
    if customer is not None:
        words = set(_WORDS.findall(said.lower())) | set((intent or "").split("_"))
        found += _case_evidence(customer, _stems(words - _COMMON))
    read_out = any(a.tool == "account_balance" and a.ok for a in actions)
    if customer is not None and intent in _BALANCE and not read_out and customer.accounts:
        account = customer.accounts[0]
        found.append(Evidence("balance", f"the balance is {money(account.balance_cents)}",
                              {"account_number": account.number,
                               "balance_cents": account.balance_cents}))
    return found[:MAX_ITEMS]


def _case_evidence(customer: CustomerPart, said_stems: set[str]) -> list[Evidence]:
    """Open cases whose subject shares a word (its first five letters) with the call."""
    found = []
    for case in customer.open_cases:
        subject = _stems({w for w in _WORDS.findall(case.subject.lower()) if w not in _COMMON})
        if subject & said_stems:
            found.append(Evidence("open_case", f"case {case.id} ({case.subject}) is open since "
                                  f"{short_date(case.created_at)}",
                                  {"case_id": case.id, "subject": case.subject,
                                   "created_at": case.created_at}))
    return found


__all__ = ["Evidence", "MAX_ITEMS", "charge_evidence", "find_evidence", "money",
           "order_evidence", "short_date"]

