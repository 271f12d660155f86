"""An LLM's second opinion for the ambiguous band: pick one of the likeliest intents, or none.

When the classifier's confidence is between the menu's low and high thresholds, the policy would
ask the caller a clarifying question ("Is that about your bill, or a payment?"). That question
costs the caller a turn (several seconds on the phone); an LLM given the caller's words and the
two or three candidates, each with a couple of its examples, can often settle it in a few hundred
milliseconds. It only ever chooses among the candidates the classifier proposed, so it cannot
route a caller somewhere the menu did not already consider likely; and any doubt -- "none", an
answer that names no candidate, an error, or no answer within ``timeout_s`` -- keeps the
clarifying question.

Any OpenAI-compatible chat endpoint serves: the embedded SmolLM2 server, llama.cpp, vLLM, Ollama
or a hosted API, by URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import openai

from intents.config import IntentSpec, MenuConfig

log = logging.getLogger(__name__)

SYSTEM_PROMPT = ("You sort the requests of callers to a customer service line. Reply with only "
                 "the number of the option that matches what the caller wants, or 0 if none "
                 "of the options matches.")
NONE_WORDS = {"none", "neither", "no"}


@dataclass(frozen=True)
class FallbackAnswer:
    """What the LLM said, as the policy needs it."""

    choice: str | None  # an intent name among the candidates; None keeps the clarifying question
    reason: str  # why: "chose billing_question", "said none", "no answer in 1.0 s", ...
    elapsed_ms: float


# One worked exchange before the real question: without it the embedded 135M model answered with
# sentences ("The caller said: ...") four times in five here; with it, with a number every time.
DEMONSTRATION = [
    {"role": "user", "content": 'Options:\n1. opening hours (for example "when are you open")\n'
                                '2. cancel service (for example "cancel my subscription")\n'
                                '0. none of these\n\nCaller: "close my account"\nOption number:'},
    {"role": "assistant", "content": "2"},
]


def build_messages(utterance: str, candidates: Sequence[IntentSpec], examples: int = 2
                   ) -> list[dict[str, str]]:
    """The chat prompt: numbered options, each with a few examples, then the caller's words."""
    lines = ["Options:"]
    for number, intent in enumerate(candidates, start=1):
        name = intent.description or intent.name.replace("_", " ")
        said = "; ".join(f'"{e}"' for e in intent.examples[:examples])
        lines.append(f"{number}. {name} (for example {said})" if said else f"{number}. {name}")
    lines += ["0. none of these", "", f'Caller: "{utterance}"', "Option number:"]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *DEMONSTRATION,
            {"role": "user", "content": "\n".join(lines)}]


def parse_choice(reply: str, names: Sequence[str]) -> tuple[str | None, str]:
    """(intent name or None, reason) from the model's reply to :func:`build_messages`.

    Accepted: the option's number ("2", "2.", "Option 2"), its intent name, or "0"/"none". A
    reply that names two different options, or nothing recognisable, is invalid: None.
    """
    text = reply.strip().lower()
    if not text:
        return None, "empty answer"
    invalid = None, f"invalid answer {reply.strip()[:40]!r}"
    numbers = {int(n) for n in re.findall(r"\b\d+\b", text)}
    if numbers:  # the number asked for; names are only looked for where there is none
        if numbers == {0}:
            return None, "said none"
        if len(numbers) > 1 or not 1 <= min(numbers) <= len(names):
            return invalid
        choice = names[numbers.pop() - 1]
        return choice, f"chose {choice}"
    named = [n for n in names if n.lower() in text or n.replace("_", " ").lower() in text]
    if len(named) == 1:
        return named[0], f"chose {named[0]}"
    if not named and re.split(r"[\s.,:;!]+", text, maxsplit=1)[0] in NONE_WORDS:
        return None, "said none"
    return invalid


class LlmFallback:
    """Asks an OpenAI-compatible chat endpoint to choose among the candidate intents.

    ``timeout_s`` bounds the whole exchange: past it the caller hears the clarifying question,
    which they would have heard anyway, so a slow endpoint costs at most that much. One request
    per ambiguous turn, no retries (a retry would only arrive later still).
    """

    def __init__(self, base_url: str, *, model: str = "local", timeout_s: float = 1.0,
                 examples: int = 2, api_key: str = "not-needed") -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if examples < 0:
            raise ValueError(f"examples must be 0 or more, got {examples}")
        self.model = model
        self.timeout_s = timeout_s
        self.examples = examples
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key,
                                          timeout=timeout_s, max_retries=0)

    @classmethod
    def from_menu(cls, menu: MenuConfig, base_url: str | None) -> LlmFallback | None:
        """The fallback the menu asks for (``llm_fallback``), or None where it is off."""
        if not menu.llm_fallback:
            return None
        if not base_url:
            raise ValueError("the menu sets llm_fallback: true, which needs an LLM URL "
                             "(models.llm_url, or the embedded server)")
        return cls(base_url, timeout_s=menu.llm_fallback_timeout_s)

    async def choose(self, utterance: str, candidates: Sequence[IntentSpec]) -> FallbackAnswer:
        started = time.perf_counter()
        names = [c.name for c in candidates]

        def answer(choice: str | None, reason: str) -> FallbackAnswer:
            elapsed = (time.perf_counter() - started) * 1000
            log.debug("llm fallback for %r among %s: %s (%.0f ms)", utterance, names, reason,
                      elapsed)
            return FallbackAnswer(choice, reason, round(elapsed, 1))

        if len(candidates) < 2:
            return answer(None, "fewer than two candidates")
        try:
            response = await asyncio.wait_for(self._client.chat.completions.create(
                model=self.model, messages=build_messages(utterance, candidates, self.examples),
                temperature=0, max_tokens=8), self.timeout_s)
        except (TimeoutError, openai.APITimeoutError):
            return answer(None, f"no answer in {self.timeout_s:g} s")
        except openai.APIError as error:
            return answer(None, f"endpoint error: {type(error).__name__}")
        if not response.choices:
            return answer(None, "no choices in the reply")
        choice, reason = parse_choice(response.choices[0].message.content or "", names)
        return answer(choice, reason)

    async def aclose(self) -> None:
        await self._client.close()
