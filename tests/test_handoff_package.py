"""The handoff package: built from the call state and a real SQLite CRM, valid against the shipped
schema, secrets redacted, and a summary an agent can trust with no LLM at all."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from loopback import serve

from handoff.build import build_package
from handoff.crm import DEMO_ORDER, DEMO_PHONE, CrmStore, seed
from handoff.package import SCHEMA_PATH, TranscriptLine, load_package, validated_dict
from handoff.summary import LlmSummarizer, summarize
from intents.dialogue.state import ActionRecord, CallState, EscalationDecision, IntentRecord

SHIPPED = {"found": True, "order_number": DEMO_ORDER, "status": "shipped", "carrier": "UPS",
           "placed_on": "2026-11-19", "eta": "2026-11-24"}


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> CrmStore:
    store = CrmStore(f"sqlite:///{tmp_path_factory.mktemp('crm')}/crm.sqlite")
    seed(store, customers=50)
    return store


def order_call(crm: CrmStore) -> CallState:
    """Alex Morgan asked where order 456712 is, heard the answer, then asked for a person."""
    customer = crm.customer_by_phone(DEMO_PHONE)
    state = CallState("call-1", caller_number=DEMO_PHONE, menu_version="retail-billing-test",
                      customer_id=customer.id, customer_name=customer.name,
                      slots={"order_number": DEMO_ORDER})
    state.intents.append(IntentRecord(1, "where is my order", "order_status", 0.82,
                                      [("order_status", 0.82), ("refund", 0.07)], "route", ""))
    state.actions.append(ActionRecord("order_status", {"order_number": DEMO_ORDER}, True,
                                      SHIPPED))
    calm = {"sentiment": 0.0}
    state.escalations += [
        EscalationDecision(1, False, "held", 0.0, calm, "order_status"),
        EscalationDecision(3, False, "held", 0.0, calm, "order_status"),
        EscalationDecision(4, True, "caller asked for a human", 1.2,
                           {"sentiment": -0.5, "asks_for_human": True}, "order_status",
                           "general")]
    state.route, state.escalation_reason = "general", "caller asked for a human"
    return state


TRANSCRIPT = [
    TranscriptLine(turn=0, speaker="ivr", text="Thanks for calling. How can I help you today?"),
    TranscriptLine(turn=1, speaker="caller", text="Hi, where is my order?"),
    TranscriptLine(turn=2, speaker="caller",
                   text="I paid with four one one one, one one one one, one one one one, "
                        "one two three four"),
    TranscriptLine(turn=3, speaker="caller", text="my pin is 9 8 7 6"),
    TranscriptLine(turn=4, speaker="caller", text="this is useless, let me talk to a person"),
]


def test_the_package_holds_what_the_agent_needs_and_matches_the_schema(crm):
    package = build_package(order_call(crm), crm, TRANSCRIPT, sip_call_id="a84b4c76e66710",
                            called_number="+15559990000")
    data = package.to_dict()
    assert list(data) == ["schema_version", "handoff_id", "created_at", "call", "customer",
                          "intent", "slots", "actions", "sentiment", "escalation",
                          "transcript", "reason", "evidence", "summary", "summary_source",
                          "transfer"]
    assert data["call"]["sip_call_id"] == "a84b4c76e66710"
    assert data["customer"]["name"] == "Alex Morgan" and data["customer"]["tier"] == "gold"
    assert data["customer"]["accounts"] == [{"number": "90000001", "balance_cents": 4250}]
    assert data["customer"]["recent_orders"][0] == {
        "number": DEMO_ORDER, "status": "shipped", "carrier": "UPS", "eta": "2026-11-24"}
    assert data["intent"]["label"] == "order_status"
    assert data["intent"]["alternatives"][1] == {"label": "refund", "confidence": 0.07}
    assert data["sentiment"] == {"trend": [0.0, 0.0, -0.5], "latest": -0.5,
                                 "label": "frustrated"}
    assert data["escalation"]["reason"] == "caller asked for a human"
    assert data["transfer"]["outcome"] == "pending" and data["summary_source"] == "facts"
    assert json.loads(SCHEMA_PATH.read_text())["properties"]["schema_version"]["const"] == "1"
    assert load_package(package.to_json()).to_dict() == data  # round trip


def test_secrets_are_redacted_in_the_transcript(crm):
    text = json.dumps(build_package(order_call(crm), crm, TRANSCRIPT).to_dict())
    assert "I paid with [card ending 1234]" in text and "my pin is [pin redacted]" in text
    assert "one one one" not in text and "9 8 7 6" not in text


def test_the_summary_says_who_why_what_was_done_what_is_open_and_how_they_feel(crm):
    package = build_package(order_call(crm), crm, TRANSCRIPT,
                            started_at="2026-11-23T10:00:00.000+00:00")
    assert package.summary == (
        'Alex Morgan (gold tier), matched by caller ID, says: "Where is my order?" '
        "Order 456712 looked up: shipped with UPS, ETA Nov 24. "
        "Asked for a person. Caller is frustrated.")
    assert package.reason.quote == "Where is my order?" and package.evidence == []
    # Called back after the ETA, the same lookup is evidence of a late order.
    late = build_package(order_call(crm), crm, TRANSCRIPT,
                         started_at="2026-11-26T10:00:00.000+00:00")
    assert [e.text for e in late.evidence] == ["order 456712 is past its ETA"]
    assert ('says: "Where is my order?" Order 456712 is past its ETA. Order 456712 looked up: '
            "shipped with UPS, ETA Nov 24.") in late.summary


def test_summary_of_an_unknown_caller_with_a_failed_lookup(crm):
    state = CallState("call-2", caller_number="+15557770000", menu_version="m")
    state.intents.append(IntentRecord(1, "I was charged twice", "billing_question", 0.71, [],
                                      "route", ""))
    state.actions.append(ActionRecord("account_balance", {"account_number": "10000007"}, False,
                                      error="OperationalError: database is locked"))
    state.route, state.escalation_reason = "billing", "intent billing_question routes to a queue"
    package = build_package(state, crm, [])
    assert package.customer is None
    assert package.summary == (
        "An unidentified caller (+15557770000) is calling about a billing question. "
        "Balance lookup failed (system error). Caller sounds calm.")


def test_a_package_that_breaks_the_schema_is_refused(crm):
    data = build_package(order_call(crm), crm, []).to_dict()
    data["transfer"]["outcome"] = "maybe"
    with pytest.raises(ValueError, match="at transfer/outcome"):
        validated_dict(data)
    data["transfer"]["outcome"] = "connected"
    data["actions"][0]["arguments"]["card"] = "4111 1111 1111 1234"  # slipped in: masked
    assert validated_dict(data)["actions"][0]["arguments"]["card"] == "[card ending 1234]"


def fake_llm(answer: str) -> FastAPI:
    """An OpenAI-compatible chat endpoint that always answers ``answer`` (the only mock)."""
    app = FastAPI()
    app.state.prompts = []

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict:
        app.state.prompts.append(await request.json())
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "local",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}]}
    return app


async def test_an_llm_rewrite_is_kept_only_if_it_adds_nothing(crm):
    faithful = ("Gold-tier caller Alex Morgan asked about order 456712, which is shipped with "
                "UPS, ETA Nov 24. The caller is frustrated and asked for a human.")
    with serve(fake_llm(faithful)) as url:
        package = build_package(order_call(crm), crm, TRANSCRIPT)
        summarizer = LlmSummarizer(f"{url}/v1")
        rewrite = await summarizer.apply(package)
        await summarizer.aclose()
    assert rewrite.accepted, rewrite.problems
    assert package.summary == faithful and package.summary_source == "llm"
    assert package.to_dict()["summary_source"] == "llm"

    invented = ("Alex Morgan's order 456712 was delayed by FedEx; I've refunded the $20 "
                "shipping fee.")
    with serve(fake_llm(invented)) as url:
        package = build_package(order_call(crm), crm, TRANSCRIPT)
        summarizer = LlmSummarizer(f"{url}/v1")
        rewrite = await summarizer.apply(package)
        await summarizer.aclose()
    assert not rewrite.accepted and package.summary_source == "facts"
    assert "name 'FedEx' is not in the facts" in rewrite.problems
    assert "number 20 is not in the facts" in rewrite.problems
    assert "claims 'refunded' with no confirmed action" in rewrite.problems
    assert "state 'delayed' is not in the facts" in rewrite.problems
    assert package.summary == summarize(package)


async def test_an_unreachable_llm_leaves_the_facts_summary(crm):
    from loopback import free_port

    package = build_package(order_call(crm), crm, [])
    summarizer = LlmSummarizer(f"http://127.0.0.1:{free_port()}/v1", timeout_s=1.0)
    rewrite = await summarizer.apply(package)
    await summarizer.aclose()
    assert not rewrite.accepted and package.summary_source == "facts"

