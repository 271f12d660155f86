"""The escalation policy: hard triggers at once, soft signals by per-intent thresholds, every
verdict recorded. Policy tests feed literal signals; the turn-manager tests use real MiniLM."""

from __future__ import annotations

import pytest

from intents.dialogue.escalation import (
    EscalationConfig,
    EscalationPolicy,
    TurnObservation,
    load_escalation_config,
    sentiment_label,
    turn_sentiment,
)
from intents.dialogue.state import ActionRecord, CallState, IntentRecord
from intents.signals import Signals

CALM = Signals(asks_for_human=False, frustration=0.0, profanity=False, compliance_keywords=(),
               rephrase_of=None)


def said(turn: int, text: str = "", *, signals: Signals = CALM, elapsed_s: float = 10.0,
         **kwargs) -> TurnObservation:
    return TurnObservation(turn=turn, text=text, signals=signals, elapsed_s=elapsed_s, **kwargs)


def signals(**kwargs) -> Signals:
    return Signals(**{**CALM.__dict__, **kwargs})


def test_a_request_for_a_human_escalates_at_once_whatever_else():
    state = CallState("c")
    decision = EscalationPolicy().decide(
        state, said(1, "let me talk to a person", signals=signals(asks_for_human=True),
                    intent="opening_hours"))
    assert decision.escalate and decision.reason == "caller asked for a human"
    assert decision.queue == "general" and state.escalations == [decision]


def test_compliance_keywords_go_to_the_compliance_queue():
    policy = EscalationPolicy(EscalationConfig(compliance_queue="fraud"))
    decision = policy.decide(CallState("c"), said(
        1, "someone stole my card, this is fraud",
        signals=signals(compliance_keywords=("fraud", "stolen"))))
    assert decision.escalate and decision.queue == "fraud"
    assert decision.reason == "compliance keywords: fraud, stolen"


def test_a_calm_turn_is_held_and_the_verdict_is_still_recorded():
    state = CallState("c")
    decision = EscalationPolicy().decide(state, said(1, "where is my order",
                                                     intent="order_status", confidence=0.8))
    assert not decision.escalate and decision.queue is None
    assert decision.reason.startswith("held: combined")
    assert decision.signals["confidence"] == 0.8 and decision.signals["sentiment"] == 0.0
    assert state.escalations == [decision]


def test_a_flow_that_routes_to_a_queue_is_recorded_as_the_reason():
    decision = EscalationPolicy().decide(CallState("c"), said(
        1, "I was charged twice", intent="billing_question", intent_queue="billing",
        routed_queue="billing", routed_reason="intent billing_question routes to a queue"))
    assert decision.escalate and decision.queue == "billing"
    assert decision.reason == "intent billing_question routes to a queue"


def test_billing_escalates_on_the_first_rephrase_opening_hours_does_not():
    policy = EscalationPolicy()
    rephrased = signals(rephrase_of=0)
    billing = policy.decide(CallState("c"), said(2, "the amount on my bill is wrong",
                                                 signals=rephrased, intent="billing_question",
                                                 intent_queue="billing"))
    assert billing.escalate and billing.queue == "billing"
    assert billing.reason == "caller rephrased the same request once (billing_question allows 1)"
    hours = policy.decide(CallState("c"), said(2, "when do you open", signals=rephrased,
                                               intent="opening_hours"))
    assert not hours.escalate


def test_an_answer_to_the_flow_is_not_a_rephrase():
    decision = EscalationPolicy().decide(CallState("c"), said(
        3, "No, it's 4 5 6 7 1 2", signals=signals(rephrase_of=1), request=False,
        intent="billing_question"))
    assert not decision.escalate and decision.signals["rephrases"] == 0


def test_frustration_sentiment_trend_and_combined_pressure():
    policy = EscalationPolicy()
    angry = policy.decide(CallState("c"), said(1, "this is useless and I'm fed up",
                                               signals=signals(frustration=0.8)))
    assert angry.escalate and angry.reason.startswith("caller frustrated (0.80)")
    # Three mildly unhappy turns: no single one is enough, the trend is.
    state = CallState("c")
    verdicts = [policy.decide(state, said(i, "still not working",
                                          signals=signals(frustration=0.35)))
                for i in (1, 2, 3)]
    assert [v.escalate for v in verdicts] == [False, True, True]
    assert verdicts[1].reason.startswith("sentiment falling (mean -0.35)")
    # Pressures that add up: one not-understood turn, one failed lookup, some frustration.
    state = CallState("c", intents=[IntentRecord(1, "x", "out_of_scope", 0.2, [], "menu", "")],
                      actions=[ActionRecord("order_status", {}, False, error="timeout")])
    combined = policy.decide(state, said(2, "hmm", signals=signals(frustration=0.4)))
    assert combined.escalate and combined.reason.startswith("combined signals")
    assert combined.score >= 1.5


def test_repeated_failures_and_a_long_call():
    policy = EscalationPolicy()
    state = CallState("c", actions=[ActionRecord("order_status", {}, False, error="down")] * 2)
    assert policy.decide(state, said(3)).reason == "2 system failures in the call (limit 2)"
    state = CallState("c", intents=[IntentRecord(i, "x", "out_of_scope", 0.1, [], "menu", "")
                                    for i in (1, 2)])
    assert policy.decide(state, said(2)).reason.startswith("not understood 2 turns in a row")
    assert policy.decide(CallState("c"), said(9, elapsed_s=500)).reason.startswith(
        "call running 500 s")


def test_thresholds_load_from_a_yaml_section_with_per_intent_overrides(tmp_path):
    path = tmp_path / "ivr.yaml"
    path.write_text("escalation:\n"
                    "  default: {frustration: 0.6, max_call_s: 300}\n"
                    "  intents:\n"
                    "    technical_support: {tool_failures: 1}\n"
                    "  queue: front_desk\n")
    config = load_escalation_config(path)
    assert config.for_intent(None).frustration == 0.6
    support = config.for_intent("technical_support")
    assert support.tool_failures == 1 and support.max_call_s == 300
    assert config.queue == "front_desk" and "billing_question" not in config.intents
    with pytest.raises(ValueError, match="frustration"):
        EscalationConfig.model_validate({"default": {"frustration": 2}})
    with pytest.raises(ValueError, match="extra|not permitted"):
        EscalationConfig.model_validate({"intents": {"refund": {"frustraton": 0.2}}})


def test_sentiment_of_words():
    assert turn_sentiment("thank you, that's perfect", CALM) == 0.5
    assert turn_sentiment("this is ridiculous", signals(frustration=0.5)) == -0.5
    assert sentiment_label([0.0, 0.3]) == "calm"
    assert sentiment_label([0.0, -0.2]) == "concerned"
    assert sentiment_label([0.0, -0.6]) == "frustrated"
