"""The 'llm' turn handler against the embedded SmolLM2 server, through the whole pipeline."""

from __future__ import annotations

import pytest

from models.llm_server import EmbeddedLlmServer
from models.registry import shared_registry
from voice.records import LadderStep
from voice.simulate import simulate_call
from voice.turns import CallerTurn, LlmTurnHandler

from conftest import CALLS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm_url():
    with EmbeddedLlmServer(shared_registry().llm_gguf_path()) as server:
        yield server.base_url


async def test_the_handler_streams_an_answer(llm_url):
    handler = LlmTurnHandler(llm_url, "Answer in one short sentence.", max_tokens=20)
    reply = await handler.handle_turn(CallerTurn(call_id="t", index=1, text="Hello?"))
    pieces = [piece async for piece in reply.stream]
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert reply.fallback_text == "You said: Hello?"
    assert handler.history[-1]["role"] == "assistant"
    await handler.end_call("test")


async def test_a_call_answered_by_the_llm_or_by_its_template_when_late(settings, llm_url):
    handler = LlmTurnHandler(llm_url, settings.call.llm_system_prompt, max_tokens=30)
    result = await simulate_call(CALLS / "order_question_8k.wav", settings, handler=handler)
    assert len(result.turns) == 2
    assert "order" in result.turns[0].caller_text.lower()
    for turn in result.turns:
        assert turn.reply_text  # something was said...
        if LadderStep.TEMPLATE.value in turn.ladder:  # ...the template if the LLM was late
            assert turn.reply_text == f"You said: {turn.caller_text}"
        assert turn.total_ms is not None
