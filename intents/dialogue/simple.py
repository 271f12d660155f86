"""Two simple turn handlers: echo (what was understood, said back) and a bare LLM.

Echo is what the benchmarks and transport tests use: what the IVR heard is what it says, so a test
can check the whole audio path by listening. The LLM handler answers free-form from any
OpenAI-compatible endpoint; the real IVR is the turn manager.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from intents.dialogue.turns import CallerTurn, CallInfo, Reply
from intents.entities import mask_card_numbers
from models.llm_client import chat_client


class EchoTurnHandler:
    """Repeats what was understood (benchmarks, transport tests)."""

    def __init__(self, greeting: str | None = None) -> None:
        self.greeting = greeting

    async def start_call(self, call: CallInfo) -> Reply | None:
        return Reply(text=self.greeting) if self.greeting else None

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        return Reply(text=await self.preview_turn(turn))

    async def preview_turn(self, turn: CallerTurn) -> str | None:
        return f"You said: {mask_card_numbers(turn.text)}"

    async def handle_dtmf(self, digits: str) -> Reply | None:
        return Reply(text=f"You pressed {' '.join(digits)}.")

    async def end_call(self, reason: str) -> None:
        return None


class LlmTurnHandler:
    """Free-form answers from any OpenAI-compatible chat endpoint (the embedded SmolLM2 by default).

    The reply streams token by token so that TTS can start on the first sentence; the echo text
    is the template the latency budget falls back to when the first token is late.
    """

    def __init__(self, base_url: str, system_prompt: str, max_tokens: int = 60,
                 model: str = "local", greeting: str | None = None) -> None:
        self.client = chat_client(base_url)
        self.model = model
        self.max_tokens = max_tokens
        self.greeting = greeting
        self.history: list[dict[str, str]] = [{"role": "system", "content": system_prompt}]

    async def start_call(self, call: CallInfo) -> Reply | None:
        if self.greeting:
            self.history.append({"role": "assistant", "content": self.greeting})
            return Reply(text=self.greeting)
        return None

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        said = mask_card_numbers(turn.text)  # a hosted LLM must not receive card numbers either
        self.history.append({"role": "user", "content": said})
        return Reply(stream=self._stream(), fallback_text=f"You said: {said}")

    async def _stream(self) -> AsyncIterator[str]:
        started = time.perf_counter()
        response = await self.client.chat.completions.create(
            model=self.model, messages=self.history, max_tokens=self.max_tokens,
            temperature=0.2, stream=True)
        said: list[str] = []
        try:
            async for chunk in response:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    said.append(delta)
                    yield delta
        finally:
            await response.close()
            self.history.append({"role": "assistant", "content": "".join(said)})
            self.last_generation_ms = (time.perf_counter() - started) * 1000

    async def handle_dtmf(self, digits: str) -> Reply | None:
        return Reply(text=f"You pressed {' '.join(digits)}.")

    async def end_call(self, reason: str) -> None:
        await self.client.close()
