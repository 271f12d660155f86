"""The summary says why the caller called: their own words, the CRM facts that bear on them, what
the IVR did or could not do. Scripted escalations against the seeded CRM on a real SQLite file,
tool results from the IVR's real tool layer; each summary is checked for the caller's reason and
the matching CRM facts, and for adding nothing that is not in the call or the CRM."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from handoff.build import build_package
from handoff.crm import DEMO_PHONE, CrmStore, CustomerCard
from handoff.package import HandoffPackage, TranscriptLine
from handoff.reason import caller_reason, clean_clause
from intents.dialogue.facts_check import violations
from intents.dialogue.state import ActionRecord, CallState, EscalationDecision, IntentRecord
from intents.dialogue.tools import Tools
from intents.redaction import redact

SAY = {2: "two", 3: "three", 4: "four"}


def spell(digits: str) -> str:
    """A number as Whisper writes one read digit by digit: "4 5 6 7 1 2"."""
    return " ".join(digits)


def usd(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def as_charge(description: str) -> str:
    return description if description.endswith(("charge", "fee")) else f"{description} charge"


def day(value: date) -> str:
    return f"{value:%b} {value.day}"


class Call:
    """A scripted call as the turn manager records one: redacted transcript, intents, tool
    results from the real tools on the real CRM, the escalation verdict."""

    def __init__(self, crm: CrmStore, phone: str | None, call_id: str = "scripted") -> None:
        self.crm, self.tools = crm, Tools(crm)
        customer = crm.customer_by_phone(phone) if phone else None
        self.state = CallState(call_id, caller_number=phone, menu_version="retail-test",
                               customer_id=customer.id if customer else None,
                               customer_name=customer.name if customer else None)
        self.transcript = [TranscriptLine(turn=0, speaker="ivr",
                                          text="Thanks for calling. How can I help you today?")]
        self.turn = 0

    def caller(self, text: str, intent: str | None = None, confidence: float = 0.8) -> Call:
        self.turn += 1
        heard = redact(text)
        self.transcript.append(TranscriptLine(turn=self.turn, speaker="caller", text=heard))
        if intent is not None:
            self.state.intents.append(IntentRecord(self.turn, heard, intent, confidence,
                                                   [(intent, confidence)], "route", ""))
        return self

    def ivr(self, text: str) -> Call:
        self.transcript.append(TranscriptLine(turn=self.turn, speaker="ivr", text=text))
        return self

    def tool(self, name: str, **arguments) -> Call:
        result = self.tools.call(name, **arguments)
        self.state.actions.append(ActionRecord(name, arguments, result.ok, result.data,
                                               result.error))
        if name == "order_status":
            self.state.slots["order_number"] = arguments["order_number"]
        return self

    def escalate(self, reason: str, queue: str, sentiment: float = 0.0, **signals) -> Call:
        self.state.escalations.append(EscalationDecision(
            self.turn, True, reason, 1.0, {"sentiment": sentiment, **signals},
            self.state.intents[-1].label if self.state.intents else None, queue))
        self.state.route, self.state.escalation_reason = queue, reason
        return self

    def package(self, on: date) -> HandoffPackage:
        return build_package(self.state, self.crm, self.transcript,
                             started_at=f"{on.isoformat()}T15:04:05.000+00:00")


# Words of the summary's own frame: who, the verbs of what was done, how the caller sounds.
FRAME = ("matched by caller ID says ETA past its Nothing done yet Caller sounds calm concerned is "
         "No duplicate among (same amount, same day) "
         "frustrated Asked for a person Handed over because Flagged for compliance looked up "
         "read out the account shows charges on a charge was due and is still marked none of "
         "latest charges on the card has the same amount and day as another largest recent "
         "case open since balance system error An unidentified caller")


def sources(package: HandoffPackage, card: CustomerCard | None) -> tuple[str, str]:
    """Everything the call and the CRM hold, rendered as an agent would read it, and the part
    of it that is not the caller's words (what was done, what the records show)."""
    said = " ".join(line.text for line in package.transcript if line.speaker == "caller")
    records: list[str] = [package.escalation.reason, package.call.caller_number or ""]
    if card is not None:
        records += [card.name, card.tier]
        records += [f"{a.number} {usd(a.balance_cents)}" for a in card.accounts]
        records += [f"{o.number} {o.status} {o.carrier} {day(o.eta) if o.eta else ''}"
                    for o in card.recent_orders]
        records += [f"{c.description} {usd(c.amount_cents)} {day(c.charged_on)}"
                    for c in card.recent_charges]
        same = Counter((c.amount_cents, c.charged_on) for c in card.recent_charges)
        records += [SAY.get(n, str(n)) for n in same.values() if n > 1]
        records.append(str(len(card.recent_charges)))
        records += [f"{c.id} {c.subject} {day(c.created_at)}" for c in card.open_cases]
    for action in package.actions:
        result = dict(action.result or {})
        if result.get("eta"):
            result["eta"] = day(date.fromisoformat(result["eta"]))
        if "balance_cents" in result:
            result["balance"] = usd(result["balance_cents"])
        records += [action.tool, str(action.arguments), str(result),
                    "failed" if not action.ok else ""]
    done = " ; ".join(records + [FRAME])  # ";" keeps two records' digits apart
    return f"{said} ; {done}", done


def adds_nothing(package: HandoffPackage, card: CustomerCard | None) -> list[str]:
    everything, done = sources(package, card)
    return violations(package.summary, everything, {a.tool for a in package.actions if a.ok},
                      actions_text=done)


def says(part: str, summary: str) -> bool:
    """``part`` is in the summary, as a sentence's start (capitalized) or within one."""
    return part in summary or part[0].upper() + part[1:] in summary


def find_card(crm: CrmStore, wanted: Callable[[CustomerCard], bool]) -> CustomerCard:
    """The first seeded customer (not the demo caller) in the situation ``wanted``."""
    for customer_id in range(2, 202):
        card = crm.customer_card(customer_id)
        if card is not None and wanted(card):
            return card
    pytest.fail("no seeded customer in that situation")


def no_duplicates(card: CustomerCard) -> bool:
    same = Counter((c.amount_cents, c.charged_on) for c in card.recent_charges)
    return max(same.values(), default=1) == 1


NAMED_ITEMS = {"Headphones", "Router rental", "Laptop stand", "Warranty extension", "Gift card"}


# -- the demo call ----------------------------------------------------------------------------


def test_the_demo_call_says_what_the_caller_said_and_what_the_account_shows(crm):
    call = Call(crm, DEMO_PHONE, "demo")
    call.caller("I think I was charged twice for the same order this month.",
                "billing_question", 0.854)
    call.ivr("I'll connect you with our billing team now. Please hold.")
    call.escalate("billing question is handled by the billing team", "billing")
    package = call.package(date(2026, 11, 23))
    assert package.summary == (
        'Alex Morgan (gold tier), matched by caller ID, says: "I was charged twice for the same '
        'order this month." The account shows two $59.00 Headphones charges on Nov 13. '
        "Nothing done yet. Caller sounds calm.")
    assert package.reason.quote == "I was charged twice for the same order this month."
    assert package.reason.turns == [1]
    [duplicate] = package.evidence
    assert duplicate.kind == "duplicate_charge" and duplicate.facts == {
        "account_number": "90000001", "amount_cents": 5900, "charged_on": "2026-11-13",
        "count": 2, "descriptions": ["Headphones"]}
    assert adds_nothing(package, crm.customer_card(package.customer.id)) == []
    data = package.to_dict()  # the new parts are in the schema and survive the round trip
    assert data["reason"] == {"quote": package.reason.quote, "turns": [1]}
    assert data["evidence"][0]["kind"] == "duplicate_charge"


# -- five more scripted escalations -------------------------------------------------------------


def test_late_delivery_names_the_order_past_its_eta_and_the_lookup(crm):
    card = find_card(crm, lambda c: any(o.status == "shipped" and o.eta for o in c.recent_orders))
    order = next(o for o in card.recent_orders if o.status == "shipped" and o.eta)
    on = order.eta + timedelta(days=4)  # the caller rings four days after the promised day
    call = Call(crm, card.phone, "late")
    call.caller("Hi, um, my package still hasn't arrived and it was supposed to come days ago.",
                "order_status")
    call.ivr("Sure. What's your order number? You can say it or key it in.")
    call.caller(spell(order.number))
    call.ivr(f"I heard order number, {spell(order.number)}. Is that right?")
    call.caller("Yes.")
    call.tool("order_status", order_number=order.number)
    call.caller("That's not good enough, let me talk to a person.")
    call.escalate("caller asked for a human", "general", sentiment=-0.5, asks_for_human=True)
    package = call.package(on)
    summary = package.summary
    assert '"My package still hasn\'t arrived and it was supposed to come days ago."' in summary
    assert f"Order {order.number} is past its ETA." in summary
    assert (f"Order {order.number} looked up: shipped with {order.carrier}, ETA "
            f"{day(order.eta)}.") in summary
    assert "Asked for a person." in summary and summary.endswith("Caller is frustrated.")
    assert [e.kind for e in package.evidence] == ["late_order"]
    assert adds_nothing(package, card) == []
    # The day before the ETA the same order is not late, and the summary does not say it is.
    early = call.package(order.eta - timedelta(days=1))
    assert "past its ETA" not in early.summary and early.evidence == []
    # Not looked up in the call (the caller gave up before the number): the card's order is
    # the evidence, with its ETA and status.
    unread = Call(crm, card.phone, "late-unread")
    unread.caller("Hi, um, my package still hasn't arrived and it was supposed to come days ago.",
                  "order_status")
    unread.caller("Forget it, get me a person.")
    unread.escalate("caller asked for a human", "general", sentiment=-0.5, asks_for_human=True)
    package = unread.package(on)
    assert says(f"order {order.number} was due {day(order.eta)} and is still shipped with "
                f"{order.carrier}", package.summary)
    assert "Nothing done yet." in package.summary
    assert adds_nothing(package, card) == []


def test_a_failed_lookup_is_named_as_a_failure_not_as_a_missing_order(crm, tmp_path):
    broken = CrmStore(f"sqlite:///{tmp_path}/broken.sqlite")
    call = Call(broken, None, "down")
    call.state.caller_number = "+15557770001"
    broken.engine.dispose()
    (tmp_path / "broken.sqlite").unlink()
    (tmp_path / "broken.sqlite").mkdir()  # the CRM is gone: the lookup fails
    call.caller("Can you tell me when my order will arrive?", "order_status")
    call.caller("4 5 6 7 1 2")
    call.caller("yes")
    call.tool("order_status", order_number="456712")
    assert call.state.actions[-1].ok is False
    call.escalate("1 system failure in the call (order_status allows 1)", "general")
    package = call.package(date(2026, 11, 23))
    assert package.summary == (
        'An unidentified caller (+15557770001) says: "Can you tell me when my order will '
        'arrive?" Order 456712 lookup failed (system error). Handed over because 1 system '
        "failure in the call. Caller sounds calm.")
    assert adds_nothing(package, None) == []


def test_a_claimed_double_charge_the_records_do_not_show_is_said_as_such(crm):
    card = find_card(crm, lambda c: no_duplicates(c) and len(c.recent_charges) >= 2 and
                     any(ch.description in NAMED_ITEMS for ch in c.recent_charges) and
                     len({ch.description for ch in c.recent_charges}) == len(c.recent_charges))
    charge = next(c for c in card.recent_charges if c.description in NAMED_ITEMS)
    call = Call(crm, card.phone, "not-twice")
    call.caller(f"Yeah hi, I was billed twice for the {charge.description.lower()}.",
                "billing_question")
    call.escalate("billing question is handled by the billing team", "billing")
    package = call.package(date(2026, 11, 23))
    summary = package.summary
    assert f'says: "I was billed twice for the {charge.description.lower()}."' in summary
    assert (f"No duplicate among the {len(card.recent_charges)} latest charges (same amount, "
            "same day)") in summary
    assert says(f"a {usd(charge.amount_cents)} {as_charge(charge.description)} on "
                f"{day(charge.charged_on)}", summary)
    assert [e.kind for e in package.evidence] == ["no_duplicate_charge", "named_charge"]
    assert adds_nothing(package, card) == []


def test_an_unrecognised_charge_said_with_a_card_number_quotes_no_card_digits(crm):
    card = find_card(crm, lambda c: no_duplicates(c) and len(c.recent_charges) >= 2)
    charge = card.recent_charges[-1]
    call = Call(crm, card.phone, "unknown-charge")
    call.caller(f"Hi, um, there's a charge of {usd(charge.amount_cents)} on my statement I don't "
                "recognize, my card is four one one one, one one one one, one one one one, "
                "one two three four", "billing_question")
    call.caller("I don't know, just get me someone please")
    call.escalate("caller asked for a human", "billing", sentiment=-0.2, asks_for_human=True)
    package = call.package(date(2026, 11, 23))
    summary = package.summary
    assert (f'says: "There\'s a charge of {usd(charge.amount_cents)} on my statement I don\'t '
            'recognize."') in summary
    assert says(f"a {usd(charge.amount_cents)} {as_charge(charge.description)} on "
                f"{day(charge.charged_on)}", summary)
    assert "1234" not in summary and "card" not in package.reason.quote
    assert "Asked for a person." in summary and "Caller sounds concerned." in summary
    assert adds_nothing(package, card) == []


def test_cancelling_with_an_open_case_shows_the_case_and_the_balance(crm):
    card = find_card(crm, lambda c: no_duplicates(c) and not c.open_cases and c.tier == "standard")
    case_id = crm.open_case("Cancellation request", customer_id=card.id)
    card = crm.customer_card(card.id)
    account = card.accounts[0]
    call = Call(crm, card.phone, "cancel")
    call.caller("Hello. Um, I want to cancel my subscription, I already asked for the "
                "cancellation last week.", "cancel_service")
    call.escalate("cancel service is handled by the retention team", "retention")
    package = call.package(date(2026, 11, 23))
    summary = package.summary
    assert summary.startswith(f'{card.name}, matched by caller ID, says: "I want to cancel my '
                              'subscription, I already asked for the cancellation last week."')
    created = card.open_cases[0].created_at
    assert says(f"case {case_id} (Cancellation request) is open since {day(created)}", summary)
    assert f"the balance is {usd(account.balance_cents)}" in summary
    assert "Nothing done yet." in summary and "Handed over" not in summary
    assert adds_nothing(package, card) == []


def test_an_order_marked_delivered_that_never_came(crm):
    card = find_card(crm, lambda c: no_duplicates(c) and
                     any(o.status == "delivered" for o in c.recent_orders))
    order = next(o for o in card.recent_orders if o.status == "delivered")
    call = Call(crm, card.phone, "delivered")
    call.caller(f"Order {spell(order.number)} says delivered but it never came, I want my money "
                "back.", "refund")
    call.escalate("refund is handled by the returns team", "returns")
    package = call.package(date(2026, 11, 23))
    summary = package.summary
    assert (f'says: "Order {spell(order.number)} says delivered but it never came, I want my '
            'money back."') in summary
    assert says(f"order {order.number} is marked delivered", summary)
    assert "delivered_order" in [e.kind for e in package.evidence]
    assert adds_nothing(package, card) == []


def test_a_keyed_choice_or_a_bare_request_for_a_person_has_no_quote(crm):
    keyed = Call(crm, DEMO_PHONE, "keyed")
    keyed.turn = 1
    keyed.transcript.append(TranscriptLine(turn=1, speaker="caller", text="[keyed 2]"))
    keyed.state.intents.append(IntentRecord(1, "[keyed 2]", "billing_question", 1.0, [],
                                            "route", ""))
    keyed.escalate("billing question is handled by the billing team", "billing")
    package = keyed.package(date(2026, 11, 23))
    assert package.reason is None
    assert package.summary.startswith("Alex Morgan (gold tier), matched by caller ID, is calling "
                                      "about a billing question. The account shows two $59.00")
    person = Call(crm, DEMO_PHONE, "person")
    person.caller("I'd like to speak to a person, please.")
    person.escalate("caller asked for a human", "general", asks_for_human=True)
    package = person.package(date(2026, 11, 23))
    assert package.reason is None and package.evidence == []
    assert package.summary == ("Alex Morgan (gold tier), matched by caller ID, asked for a "
                               "person without saying why. Nothing done yet. Caller sounds calm.")


# -- the extract itself ------------------------------------------------------------------------


@pytest.mark.parametrize(("said", "clean"), [
    ("Um, so, I think I was, uh, charged twice", "I was, charged twice"),
    ("my pin is [pin redacted]", ""),
    ("I paid with [card ending 1234] yesterday", "I paid yesterday"),
    ("No order arrived", "No order arrived"),
    ("No, it never came", "it never came"),
])
def test_clean_clause_drops_fillers_hedges_and_secrets_but_keeps_meaning(said, clean):
    assert clean_clause(said) == clean


def test_the_most_informative_turns_are_quoted_in_the_order_they_were_said():
    turns = [(1, "Hi there."), (2, "Yes."), (3, "I ordered headphones last week."),
             (4, "4 5 6 7 1 2"), (5, "They arrived broken and the box was damaged."),
             (6, "This is useless, let me talk to someone.")]
    reason = caller_reason(turns, extra_cues={"headphones"})
    assert reason.quote == ("I ordered headphones last week. They arrived broken and the box "
                            "was damaged.")
    assert reason.turns == [3, 5]
    assert caller_reason([(1, "this is ridiculous, get me a human")]) is None
    long = caller_reason([(1, "I was charged twice for my router rental this month and I have "
                              "no idea why, and honestly, the weather has been nice, and my "
                              "neighbour says hello, and the cat is asleep, and so on and so on")])
    assert long.quote.startswith("I was charged twice for my router rental this month")
    assert len(long.quote.split()) <= 28


# -- an LLM rewrite still adds nothing ---------------------------------------------------------


def test_the_facts_check_rejects_a_rewrite_that_adds_a_claim_to_the_reason(crm):
    call = Call(crm, DEMO_PHONE, "llm")
    call.caller("I think I was charged twice for the same order, I want a refund.", "refund")
    call.escalate("refund is handled by the returns team", "returns")
    package = call.package(date(2026, 11, 23))
    from handoff.summary import actions_text, facts_text

    facts, done = facts_text(package), actions_text(package)

    def check(text: str) -> list[str]:
        return violations(text, facts, set(), actions_text=done)

    assert check("Gold customer Alex Morgan says they were charged twice for the same order "
                 "and wants a refund; the account shows two $59 Headphones charges on Nov 13. "
                 "Nothing has been done yet.") == []
    assert check("Alex Morgan was refunded for the two $59.00 Headphones charges.") == \
        ["claims 'refunded' with no confirmed action"]
    assert check("Alex Morgan was charged three times for Headphones.") == \
        ["count 'three' is not in the facts"]
    assert check("The Headphones order of Alex Morgan is delayed.") == \
        ["state 'delayed' is not in the facts"]
    assert "number 120 is not in the facts" in check("Alex Morgan was charged $120 twice.")
    # The spoken-reply check keeps its old rule: the caller's word "refund" backs "refunded".
    assert violations("I've refunded your order.", facts) == []


def test_the_briefing_says_dates_and_amounts_as_a_listener_needs_them():
    from handoff.summary import spoken_summary

    assert spoken_summary(
        'Alex Morgan (gold tier), matched by caller ID, says: "I was charged twice for the same '
        'order this month." The account shows two $59.00 Headphones charges on Nov 13. Order '
        "456712 is past its ETA. Order 456712 looked up: shipped with UPS, ETA Nov 24; a $237.19 "
        "Late fee on Oct 2.") == (
        'Alex Morgan (gold tier), matched by caller ID, says: "I was charged twice for the same '
        'order this month." The account shows two Headphones charges of 59 dollars on November '
        "13. Order 456712 is overdue. Order 456712 looked up: shipped with UPS, due November 24; "
        "a 237 dollars 19 cents Late fee on October 2.")
