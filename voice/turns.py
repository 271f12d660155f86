"""The interface between the pipeline and the turn manager, and the two handlers of the core.

The pipeline calls a ``TurnHandler`` once per confirmed caller turn (and once per DTMF digit
string) and speaks the ``Reply`` it returns. The intents turn manager implements this same
protocol; ``EchoTurnHandler`` and ``LlmTurnHandler`` are what the core ships before it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from intents.entities import mask_card_numbers


class Expect(StrEnum):
    """What the flow expects the caller to say next; end-of-turn waits longer for digits."""

    ANYTHING = "anything"
    DIGITS = "digits"
    YES_NO = "yes-no"


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    caller_number: str | None = None
    called_number: str | None = None


@dataclass(frozen=True)
class CallerTurn:
    """One confirmed caller turn, as the turn manager sees it."""

    call_id: str
    index: int
    text: str
    language: str = "en"
    asr_avg_logprob: float = 0.0
    speech_start_s: float = 0.0
    speech_end_s: float = 0.0
    barge_in: bool = False  # the caller spoke over our previous reply
    interrupted_reply: str | None = None  # what we were saying when they did


@dataclass
class Reply:
    """What to say back. Either ``text`` (complete) or ``stream`` (chunks, e.g. LLM tokens).

    ``fallback_text`` is what the degradation ladder speaks if the stream's first text misses its
    budget; a turn manager that cannot guarantee its stream should always give one.
    """

    text: str | None = None
    stream: AsyncIterator[str] | None = None
    fallback_text: str | None = None
    expect: Expect = Expect.ANYTHING
    end_call: bool = False
    nlu_ms: float = 0.0  # time the handler spent on intent detection, reported as its own stage
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.stream is None):
            raise ValueError("a Reply has exactly one of text and stream")


class TurnHandler(Protocol):
    async def start_call(self, call: CallInfo) -> Reply | None:
        """The greeting, or None to wait for the caller."""

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        """Answer a caller turn; None says nothing."""

    async def handle_dtmf(self, digits: str) -> Reply | None:
        """Answer keyed digits (RFC 4733 or in-band)."""

    async def end_call(self, reason: str) -> None:
        """The call is over; release what the call held."""


class EchoTurnHandler:
    """Repeats what was understood: the core's stand-in until the intents turn manager lands."""

    def __init__(self, greeting: str | None = None) -> None:
        self.greeting = greeting

    async def start_call(self, call: CallInfo) -> Reply | None:
        return Reply(text=self.greeting) if self.greeting else None

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        return Reply(text=f"You said: {mask_card_numbers(turn.text)}")

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
        from openai import AsyncOpenAI  # only this handler needs it

        self.client = AsyncOpenAI(base_url=base_url, api_key="not-needed")
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
