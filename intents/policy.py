"""The policy that replaces "press 1 for ...": route, ask once, offer the menu, then escalate.

A DTMF digit is always accepted and means exactly the intent it replaces. Where the menu turns
on ``llm_fallback``, an ambiguous turn is put to an LLM before the caller is asked to choose.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from intents.classifier import Prediction
from intents.config import OUT_OF_SCOPE, IntentSpec, MenuConfig

if TYPE_CHECKING:
    from intents.llm_fallback import LlmFallback

FALLBACK_CANDIDATES = 3  # the LLM chooses among this many of the likeliest intents


class Action(StrEnum):
    ROUTE = "route"
    CLARIFY = "clarify"  # one question naming the two likeliest intents
    MENU = "menu"  # the options in words and digits
    ESCALATE = "escalate"  # not understood twice: a human takes over


@dataclass(frozen=True)
class Decision:
    action: Action
    intent: IntentSpec | None
    prompt: str | None  # what to say, for CLARIFY and MENU
    reason: str
    options: tuple[str, ...] = ()


def spoken_name(intent: IntentSpec) -> str:
    return intent.description or intent.name.replace("_", " ")


class MenuPolicy:
    """Decides per caller turn; keeps the count of turns it could not place."""

    def __init__(self, menu: MenuConfig, fallback: LlmFallback | None = None) -> None:
        self.menu = menu
        self.fallback = fallback
        self.misses = 0

    def decide(self, prediction: Prediction) -> Decision:
        intent = None if prediction.out_of_scope else self.menu.by_name(prediction.label)
        if intent is not None:
            needed = intent.threshold or self.menu.high_confidence
            if prediction.confidence >= needed:
                self.misses = 0
                return Decision(Action.ROUTE, intent, None,
                                f"{intent.name} at {prediction.confidence:.2f} >= {needed:.2f}")
            if prediction.confidence >= self.menu.low_confidence and \
                    len(prediction.alternatives) >= 2:
                first, second = (self.menu.by_name(n) for n, _ in prediction.alternatives[:2])
                if first is not None and second is not None:
                    return Decision(
                        Action.CLARIFY, None,
                        f"Is that about {spoken_name(first)}, or {spoken_name(second)}?",
                        f"{first.name} at {prediction.confidence:.2f}, between thresholds",
                        (first.name, second.name))
        self.misses += 1
        why = "out of scope" if prediction.out_of_scope else \
            f"{prediction.label} at {prediction.confidence:.2f} below {self.menu.low_confidence}"
        if self.misses >= 2:
            return Decision(Action.ESCALATE, self.menu.by_name("talk_to_human"), None,
                            f"not understood twice ({why})")
        return Decision(Action.MENU, None, self.menu_prompt(), why)

    async def decide_async(self, prediction: Prediction, utterance: str) -> Decision:
        """:meth:`decide`; where that would ask a clarifying question and there is a fallback,
        the LLM's pick among the likeliest intents routes the call instead (reason "llm
        fallback: ..."). Without a pick, the clarifying question stands."""
        decision = self.decide(prediction)
        if decision.action != Action.CLARIFY or self.fallback is None:
            return decision
        candidates = [intent for intent in (self.menu.by_name(name) for name, _ in
                                            prediction.alternatives[:FALLBACK_CANDIDATES])
                      if intent is not None and intent.name != OUT_OF_SCOPE]
        answer = await self.fallback.choose(utterance, candidates)
        if answer.choice is None:
            return replace(decision, reason=f"{decision.reason}; llm fallback {answer.reason}")
        self.misses = 0
        return Decision(Action.ROUTE, self.menu.by_name(answer.choice), None,
                        f"llm fallback: {answer.reason} in {answer.elapsed_ms:.0f} ms "
                        f"({decision.reason})", decision.options)

    def from_dtmf(self, digit: str) -> Decision:
        intent = self.menu.by_digit(digit)
        if intent is None:
            return Decision(Action.MENU, None, self.menu_prompt(), f"no intent for digit {digit}")
        self.misses = 0
        return Decision(Action.ROUTE, intent, None, f"DTMF {digit}")

    def menu_prompt(self) -> str:
        options = [f"{spoken_name(i)}, say it or press {i.dtmf}" for i in self.menu.intents
                   if i.dtmf and i.name != OUT_OF_SCOPE]
        return "I can help with: " + "; ".join(options) + "."
