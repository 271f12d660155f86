"""The escalation policy inside the turn manager: the caller's words, real MiniLM signals and
classifier, a real SQLite CRM; one recorded verdict per caller turn, and a valid package."""

from __future__ import annotations

import json

from handoff.build import build_package
from handoff.crm import DEMO_PHONE, CrmStore
from intents.config import load_menu
from intents.dialogue.escalation import EscalationConfig, EscalationPolicy, EscalationThresholds
from intents.dialogue.manager import TurnManager
from intents.dialogue.turns import CallerTurn, CallInfo
from models.registry import shared_registry


def manager(crm, classifier, config: EscalationConfig | None = None) -> TurnManager:
    return TurnManager(load_menu(), classifier, crm, shared_registry().embedder(),
                       escalation=EscalationPolicy(config))


def turn(i: int, text: str, at_s: float = 0.0) -> CallerTurn:
    return CallerTurn(call_id="t", index=i, text=text, speech_end_s=at_s)


async def test_a_served_call_is_held_at_every_turn_and_ends_in_a_valid_package(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("call-ok", caller_number=DEMO_PHONE))
    for i, said in enumerate(["Hi, where is my order?", "four five six seven one two", "Yes."],
                             start=1):
        await tm.handle_turn(turn(i, said))
    assert [(d.turn, d.escalate) for d in tm.state.escalations] == \
        [(1, False), (2, False), (3, False)]
    assert all(d.reason.startswith("held: combined") for d in tm.state.escalations)
    assert tm.state.escalations[0].intent == "order_status"
    assert [(line.speaker, line.turn) for line in tm.transcript] == [
        ("ivr", 0), ("caller", 1), ("ivr", 1), ("caller", 2), ("ivr", 2), ("caller", 3),
        ("ivr", 3)]
    package = build_package(tm.state, crm, tm.transcript).to_dict()
    assert package["escalation"] == {"reason": "", "queue": "", "signals": {}}
    assert package["sentiment"]["trend"] == [0.0, 0.0, 0.0]
    assert "Order 456712 looked up: shipped with UPS, ETA Nov 24." in package["summary"]


async def test_asking_for_a_human_is_one_verdict_and_the_package_says_why(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("call-human", caller_number=DEMO_PHONE))
    await tm.handle_turn(turn(1, "Hi, where is my order?"))
    reply = await tm.handle_turn(turn(2, "this is useless, let me talk to a real person"))
    assert "connect you" in reply.text and tm.state.route == "general"
    assert tm._pending is None  # the order number is no longer being asked for
    last = tm.state.escalations[-1]
    assert last.escalate and last.reason == "caller asked for a human"
    assert last.signals["frustration"] == 0.6 and last.signals["sentiment"] == -0.6
    package = build_package(tm.state, crm, tm.transcript)
    assert package.escalation.reason == "caller asked for a human"
    assert package.summary.startswith('Alex Morgan (gold tier), matched by caller ID, says: '
                                      '"Where is my order?"')
    assert package.summary.endswith("Asked for a person. Caller is frustrated.")


async def test_rephrasing_escalates_sooner_where_the_intent_allows_less(crm, classifier):
    """The same words twice (MiniLM finds the second a rephrase): held by default, handed over
    where order_status allows one rephrase."""
    words = ["Where is my order?",
             "I already asked you, where is my order, I want to know where my package is"]
    lenient = manager(crm, classifier)
    strict = manager(crm, classifier, EscalationConfig(
        intents={"order_status": {"rephrases": 1}}))
    for tm in (lenient, strict):
        await tm.start_call(CallInfo("call-rephrase"))
        for i, said in enumerate(words, start=1):
            reply = await tm.handle_turn(turn(i, said))
    assert lenient.state.escalations[-1].signals["rephrased"] is True
    assert not lenient.state.escalations[-1].escalate and lenient.state.route is None
    verdict = strict.state.escalations[-1]
    assert verdict.escalate and verdict.reason == \
        "caller rephrased the same request once (order_status allows 1)"
    assert strict.state.route == "general" and "connect you" in reply.text


async def test_a_compliance_keyword_goes_to_its_queue_at_once(crm, classifier):
    tm = manager(crm, classifier, EscalationConfig(compliance_queue="fraud"))
    await tm.start_call(CallInfo("call-fraud"))
    reply = await tm.handle_turn(turn(1, "There's a charge on my card I never made, I think "
                                         "it's fraud"))
    verdict = tm.state.escalations[-1]
    assert verdict.escalate and verdict.reason == "compliance keywords: fraud"
    assert tm.state.route == "fraud" and reply.text == \
        "I'll connect you with our fraud team now. Please hold."


async def test_a_failed_lookup_hands_over_where_one_failure_is_enough(crm, classifier, tmp_path):
    broken = CrmStore(f"sqlite:///{tmp_path}/broken.sqlite")
    tm = manager(broken, classifier, EscalationConfig(
        default=EscalationThresholds(tool_failures=1)))
    await tm.start_call(CallInfo("call-down"))
    broken.engine.dispose()
    (tmp_path / "broken.sqlite").unlink()
    (tmp_path / "broken.sqlite").mkdir()  # the CRM is gone: the lookup fails
    for i, said in enumerate(["where is my order", "4 5 6 7 1 2", "yes"], start=1):
        reply = await tm.handle_turn(turn(i, said))
    assert tm.state.actions[-1].ok is False
    verdict = tm.state.escalations[-1]
    assert verdict.escalate and verdict.reason == "1 system failure in the call (order_status allows 1)"
    assert reply.text.startswith("I'm sorry about the trouble. I'll connect you")
    package = build_package(tm.state, broken, tm.transcript)
    assert "Order 456712 lookup failed (system error)." in package.summary


async def test_a_long_call_and_a_keyed_menu_choice_are_verdicts_too(crm, classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("call-long"))
    await tm.handle_turn(turn(1, "what are your opening hours", at_s=200.0))
    reply = await tm.handle_turn(turn(2, "are you open on Saturday", at_s=500.0))
    assert tm.state.escalations[-1].reason == "call running 500 s (opening_hours allows 480.0)"
    assert "connect you" in reply.text
    keyed = manager(crm, classifier)
    await keyed.start_call(CallInfo("call-keyed"))
    await keyed.handle_dtmf("2")  # billing: a queue
    verdict = keyed.state.escalations[-1]
    assert verdict.escalate and verdict.queue == "billing"
    assert keyed.transcript[1].text == "[keyed 2]"
    assert build_package(keyed.state, crm, keyed.transcript).intent.label == "billing_question"


async def test_a_spoken_card_number_is_redacted_in_state_transcript_and_package(crm,
                                                                              classifier):
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("call-card", caller_number=DEMO_PHONE))
    await tm.handle_turn(turn(1, "I want to pay my bill with card four one one one, one one "
                                 "one one, one one one one, one two three four"))
    await tm.handle_turn(turn(2, "and my PIN is 4 3 2 1, now get me a person"))
    text = json.dumps(build_package(tm.state, crm, tm.transcript).to_dict())
    assert "[card ending 1234]" in text and "[pin redacted]" in text
    assert "one one one" not in text and "4 3 2 1" not in text
    assert "[card ending 1234]" in tm.state.intents[0].text
    assert tm.state.escalations[-1].reason == "caller asked for a human"


async def test_the_demo_callers_words_and_the_double_charge_reach_the_summary(crm, classifier):
    """The demo's second call through the turn manager: routed to billing by the classifier,
    the package quotes the caller and names the two charges the CRM holds."""
    tm = manager(crm, classifier)
    await tm.start_call(CallInfo("call-demo", caller_number=DEMO_PHONE))
    reply = await tm.handle_turn(turn(1, "I think I was charged twice for the same order this "
                                         "month."))
    assert "billing team" in reply.text and tm.state.route == "billing"
    package = build_package(tm.state, crm, tm.transcript)
    assert package.summary == (
        'Alex Morgan (gold tier), matched by caller ID, says: "I was charged twice for the same '
        'order this month." The account shows two $59.00 Headphones charges on Nov 13. '
        "Nothing done yet. Caller sounds calm.")
    assert package.to_dict()["reason"]["turns"] == [1]
