"""LLM rewrites are checked against the facts before they are spoken."""

from __future__ import annotations

from intents.dialogue.guardrails import violations

FACTS = ("Order 4 5 6, 7 1 2 is shipped with UPS, and should arrive on Tuesday, November 24. "
         "order_number=456712 carrier=UPS eta=2026-11-24")


def test_a_faithful_rewrite_passes():
    assert violations("Good news: your order 456712 is on its way with UPS and should be "
                      "with you on Tuesday, November 24.", FACTS) == []


def test_an_invented_number_name_or_action_is_caught():
    assert violations("Your order ships on November 28.", FACTS) == \
        ["number 28 is not in the facts"]
    assert "name 'FedEx' is not in the facts" in violations("It is with FedEx now.", FACTS)
    # A digit of the order number is not a fact of its own.
    assert violations("A 4-year old order with UPS.", FACTS) == ["number 4 is not in the facts"]
    assert violations("Order 4 5 6, 7 1 2 is with UPS.", FACTS) == []
    assert violations("I've refunded your order.", FACTS) == \
        ["claims 'refunded' with no confirmed action"]
    assert violations("I've opened a case for you.", FACTS, {"open_case"}) == []
