"""The menu that speech replaces: intents, their examples, the DTMF digit each stands for, routes.

Loaded from a versioned YAML file (``intents/menus/retail_billing.yaml`` is the shipped example);
the ``version`` label is recorded on every call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

OUT_OF_SCOPE = "out_of_scope"


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["self_service", "queue"]
    target: str = Field(description="Self-service flow name or human queue name.")


#: The scores the classifier can set its out-of-scope threshold on (intents/classifier.py says
#: what each is).
RejectionScore = Literal["probability", "margin", "energy", "nearest", "blend", "contrast"]


class IntentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    examples: list[str] = Field(min_length=1)
    dtmf: str | None = Field(None, description="The legacy menu digit this intent replaces.")
    route: Route | None = None
    threshold: float | None = Field(None, gt=0, lt=1, description="Confidence needed to route "
                                    "without asking; None uses the menu's high threshold.")


class MenuConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    high_confidence: float = Field(0.6, description="At or above: route at once.")
    low_confidence: float = Field(0.3, description="Below: treated as not understood. Between "
                                  "the two: one clarifying question naming the two likeliest.")
    llm_fallback: bool = Field(False, description="In the band between the two thresholds, ask "
                               "an LLM to pick one of the likeliest intents before asking the "
                               "caller (intents/llm_fallback.py). Saves the caller a turn when it "
                               "answers; costs up to llm_fallback_timeout_s when it does not.")
    llm_fallback_timeout_s: float = Field(1.0, gt=0, le=10, description="How long the caller "
                                          "waits for the LLM's pick before hearing the "
                                          "clarifying question instead.")
    slot_lengths: dict[str, int] = Field(
        default_factory=lambda: {"order_number": 6}, description="Digits in each value a "
        "self-service flow asks for; end of turn ends as soon as that many have been heard.")
    speech_hints: list[str] | None = Field(
        None, description="Words and phrases callers use for this menu. ASR is primed with them "
        "while the caller may say anything (docs/intents.md). None: the in-scope intents' names "
        "as words; []: no priming.")
    rejection_score: RejectionScore | None = Field(
        None, description="The score the classifier's out-of-scope threshold is set on, from "
        "the menu's own cross-validation (docs/intents.md). None: the classifier's default "
        "(contrast).")
    intents: list[IntentSpec]

    @model_validator(mode="after")
    def _check(self) -> MenuConfig:
        names = [i.name for i in self.intents]
        if len(set(names)) != len(names):
            raise ValueError("intent names must be unique")
        digits = [i.dtmf for i in self.intents if i.dtmf]
        if len(set(digits)) != len(digits):
            raise ValueError("two intents claim the same DTMF digit")
        if self.low_confidence >= self.high_confidence:
            raise ValueError("low_confidence must be below high_confidence")
        return self

    def classifier_options(self) -> dict[str, str]:
        """The menu's own choices for ``IntentClassifier`` (none: its defaults)."""
        return {"rejection_score": self.rejection_score} if self.rejection_score else {}

    def by_digit(self, digit: str) -> IntentSpec | None:
        return next((i for i in self.intents if i.dtmf == digit), None)

    def by_name(self, name: str) -> IntentSpec | None:
        return next((i for i in self.intents if i.name == name), None)

    def speech_hint(self) -> str | None:
        """The ASR prompt for an open question: ``speech_hints``, else the in-scope intents'
        names ("order status, billing question, ...")."""
        hints = self.speech_hints
        if hints is None:
            hints = [i.name.replace("_", " ") for i in self.intents if i.name != OUT_OF_SCOPE]
        text = ", ".join(h.strip() for h in hints if h.strip())
        return text[0].upper() + text[1:] + "." if text else None

    def training_data(self) -> tuple[list[str], list[str]]:
        texts = [e for i in self.intents for e in i.examples]
        labels = [i.name for i in self.intents for _ in i.examples]
        return texts, labels


def load_menu(path: Path | str | None = None) -> MenuConfig:
    """The menu at ``path``, or the shipped retail-and-billing example."""
    path = Path(path) if path else Path(__file__).parent / "menus" / "retail_billing.yaml"
    return MenuConfig.model_validate(yaml.safe_load(path.read_text()))
