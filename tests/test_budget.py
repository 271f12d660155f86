"""The latency budget's degradation ladder, acting in a real pipeline with real models.

The turn handlers here are real implementations of the handler protocol that happen to be slow
(a late LLM, a slow CRM), not mocks of anything the pipeline calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from conftest import CALLS

from intents.dialogue.simple import EchoTurnHandler
from intents.dialogue.turns import CallerTurn, Reply
from voice.app.simulate import simulate_call
from voice.audio import resample
from voice.pipeline.records import LadderStep


class LateLlm(EchoTurnHandler):
    """Streams its answer, but the first token comes after a second."""

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        async def stream() -> AsyncIterator[str]:
            await asyncio.sleep(1.0)
            yield "A generated answer."

        return Reply(stream=stream(), fallback_text=f"Template answer for {turn.index}.")


class SlowCrm(EchoTurnHandler):
    """Takes a second to look the caller up before answering."""

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        await asyncio.sleep(1.0)
        return Reply(text="Your order ships tomorrow.")


def budget_settings(settings, **changes):
    return settings.model_copy(update={"budget": settings.budget.model_copy(update=changes)})


async def test_a_late_llm_is_replaced_by_the_template(settings):
    result = await simulate_call(CALLS / "two_turns_8k.wav", settings, realtime=False,
                                 handler=LateLlm())
    assert [t.reply_text for t in result.turns] == ["Template answer for 1.",
                                                   "Template answer for 2."]
    assert all(LadderStep.TEMPLATE.value in t.ladder for t in result.turns)
    assert all(t.budget_status != "ok" for t in result.turns)
    # The template came within the turn manager's budget, not after the LLM's second.
    assert all(t.stages["turn_manager"] < 1000 for t in result.turns)


@pytest.mark.slow
async def test_a_slow_step_gets_a_spoken_acknowledgement(settings, engines):
    result = await simulate_call(CALLS / "two_turns_8k.wav",
                                 budget_settings(settings, acknowledge_after_ms=400),
                                 handler=SlowCrm())
    first = result.turns[0]
    assert LadderStep.ACKNOWLEDGE.value in first.ladder
    assert first.reply_text == "Your order ships tomorrow."
    # The caller heard the acknowledgement, then the answer.
    rate = result.transport_rate
    start = int((first.speech_end_s + 0.2) * rate)
    reply = resample(result.conversation[start:start + 3 * rate, 1], rate, 16000)
    heard = engines.transcriber.transcribe(reply, 16000).text.lower()
    assert "moment" in heard and "tomorrow" in heard, heard


async def test_repeated_asr_overruns_switch_the_call_to_the_fallback_model(settings):
    strict = budget_settings(settings, asr_ms=1.0, asr_overruns_before_downgrade=1,
                             asr_fallback="tiny.en")
    result = await simulate_call(CALLS / "two_turns_8k.wav", strict, realtime=False)
    # The step fires on the turn whose overrun triggered it, once, and the call goes on.
    assert LadderStep.SMALLER_ASR.value in result.turns[0].ladder
    assert LadderStep.SMALLER_ASR.value not in result.turns[1].ladder
    assert "amiable" in result.turns[1].caller_text  # transcribed by the fallback model
