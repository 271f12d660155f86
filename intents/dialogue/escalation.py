"""The escalation policy: at every caller turn, hand over to a human or keep serving.

Decided from combined signals, not from a single rule. Three of them hand over at once: the
caller asks for a human (same turn, no argument), a compliance keyword (lawyer, fraud...), and
the flow itself routing the intent to a queue. The others are soft: each is turned into a
*pressure*, its value over the threshold the current intent allows (1.0 = at the threshold).
One pressure at 1.0 hands over; so does their sum reaching ``combined``, so that a caller who is
somewhat frustrated *and* has rephrased once *and* hit a failed lookup is not kept waiting for
any one of them to reach its limit.

Every verdict, escalate or not, is appended to ``CallState.escalations`` with the values it was
computed from, so a reviewer can see why the IVR held a caller or let them go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from intents.dialogue.state import CallState, EscalationDecision
from intents.signals import Signals

_POSITIVE = {"thank": 0.3, "great": 0.3, "perfect": 0.4, "appreciate": 0.3, "helpful": 0.3,
             "wonderful": 0.4, "excellent": 0.4, "brilliant": 0.3, "lovely": 0.3}
_POSITIVE_RE = re.compile(r"\b(" + "|".join(_POSITIVE) + r")\w*")


def turn_sentiment(text: str, signals: Signals) -> float:
    """Sentiment of one utterance in [-1, 1]: below zero is unhappy. Frustration (already
    counting profanity and shouting) pulls it down, thanks and praise lift it."""
    lifted = sum(_POSITIVE[m.group(1)] for m in _POSITIVE_RE.finditer(text.lower()))
    score = min(0.5, lifted) - signals.frustration - (0.2 if signals.compliance_keywords else 0.0)
    return round(max(-1.0, min(1.0, score)), 3)


def sentiment_label(trend: list[float]) -> str:
    """'calm', 'concerned' or 'frustrated', from the per-turn sentiment of a call."""
    if not trend:
        return "calm"
    recent = trend[-3:]
    mean = sum(recent) / len(recent)
    if trend[-1] <= -0.5 or mean <= -0.4:
        return "frustrated"
    if trend[-1] < -0.1 or mean < -0.1:
        return "concerned"
    return "calm"


class EscalationThresholds(BaseModel):
    """When the IVR stops trying. Lower values hand over sooner: fewer callers struggle with the
    machine, and more agent time goes to callers it could have served."""

    model_config = ConfigDict(extra="forbid")

    not_understood_turns: int = Field(2, ge=1, description="Turns in a row the IVR could not "
                                      "place (menu offered, clarifying question, out of scope).")
    rephrases: int = Field(2, ge=1, description="Requests that repeat an earlier one in other "
                           "words (MiniLM similarity); the caller is not getting what they want.")
    frustration: float = Field(0.7, gt=0, le=1, description="Frustration of a single turn "
                               "(0..1) that hands over. 0.5 is one 'this is ridiculous'.")
    sentiment_floor: float = Field(-0.35, ge=-1, lt=0, description="Mean sentiment of the last "
                                   "`sentiment_window` turns at or below which the trend hands "
                                   "over. Closer to 0 reacts to milder displeasure.")
    sentiment_window: int = Field(3, ge=1, description="Turns the sentiment trend averages; "
                                  "longer ignores one bad moment and reacts later.")
    tool_failures: int = Field(2, ge=1, description="Failed system lookups or actions in the "
                               "call. 1 hands over at the first outage.")
    max_call_s: float = Field(480.0, gt=0, description="Call length after which a human takes "
                              "over: a long self-service call is a failing one.")
    combined: float = Field(1.5, gt=0, description="Sum of the soft pressures that hands over "
                            "although none reached its own threshold.")
    compliance: bool = Field(True, description="Compliance keywords (lawyer, fraud, police...) "
                             "hand over at once. Off only where a flow handles them itself.")


# Per-intent overrides: any field of EscalationThresholds, the others come from the default.
ThresholdOverrides = create_model(
    "ThresholdOverrides", __config__=ConfigDict(extra="forbid"),
    **{name: (field.annotation | None, None)
       for name, field in EscalationThresholds.model_fields.items()})


def _default_intents() -> dict[str, Any]:
    # Money questions go to a person sooner; an opening-hours caller can be served a bit longer.
    return {
        "billing_question": ThresholdOverrides(rephrases=1, frustration=0.5, tool_failures=1,
                                               sentiment_floor=-0.2, combined=1.0),
        "refund": ThresholdOverrides(rephrases=1, frustration=0.5, combined=1.0),
        "opening_hours": ThresholdOverrides(not_understood_turns=3, rephrases=3,
                                            frustration=0.9, sentiment_floor=-0.6, combined=2.0),
    }


class EscalationConfig(BaseModel):
    """Thresholds for every intent, with per-intent overrides (the ``escalation`` YAML section)."""

    model_config = ConfigDict(extra="forbid")

    default: EscalationThresholds = Field(default_factory=EscalationThresholds)
    intents: dict[str, ThresholdOverrides] = Field(  # type: ignore[valid-type]
        default_factory=_default_intents, description="Overrides by intent name.")
    queue: str = Field("general", description="Where an escalation goes when the call's intent "
                       "has no queue of its own.")
    compliance_queue: str | None = Field(None, description="Queue for compliance keywords (a "
                                         "fraud or legal team); None uses the intent's queue.")

    @model_validator(mode="after")
    def _check(self) -> EscalationConfig:
        for name in self.intents:
            self.for_intent(name)  # an override that makes an invalid set fails here, by name
        return self

    def for_intent(self, intent: str | None) -> EscalationThresholds:
        override = self.intents.get(intent or "")
        if override is None:
            return self.default
        merged = self.default.model_dump() | override.model_dump(exclude_none=True)
        try:
            return EscalationThresholds.model_validate(merged)
        except ValueError as error:
            raise ValueError(f"escalation.intents.{intent}: {error}") from None


def load_escalation_config(path: Path | str, section: str = "escalation") -> EscalationConfig:
    """The ``section`` of a YAML file (the whole file if it has no such key)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return EscalationConfig.model_validate(data.get(section, data) if section else data)


@dataclass(frozen=True)
class TurnObservation:
    """What the turn manager knows about one caller turn when the policy is asked."""

    turn: int
    text: str  # as heard, secrets redacted
    signals: Signals
    elapsed_s: float  # since the call started
    request: bool = True  # a request the classifier read, not an answer to the flow's question
    intent: str | None = None  # the intent of this turn, or of the flow in progress
    confidence: float | None = None
    intent_queue: str | None = None  # the queue the intent routes to, if it has one
    routed_queue: str | None = None  # the flow itself sent the caller to this queue this turn
    routed_reason: str | None = None


_NOT_UNDERSTOOD = {"menu", "clarify", "escalate"}


class EscalationPolicy:
    """One per call (it reads the call's state); ``decide`` once per caller turn."""

    def __init__(self, config: EscalationConfig | None = None) -> None:
        self.config = config or EscalationConfig()

    def decide(self, state: CallState, turn: TurnObservation) -> EscalationDecision:
        """The verdict for ``turn``, appended to ``state.escalations`` and returned."""
        intent = turn.intent
        limits = self.config.for_intent(intent)
        sentiment = turn_sentiment(turn.text, turn.signals)
        earlier = state.escalations
        trend = [d.signals["sentiment"] for d in earlier if "sentiment" in d.signals]
        trend = (trend + [sentiment])[-limits.sentiment_window:]
        mean_sentiment = sum(trend) / len(trend)
        rephrased = turn.request and turn.signals.rephrase_of is not None
        values: dict[str, Any] = {
            "asks_for_human": turn.signals.asks_for_human,
            "compliance_keywords": list(turn.signals.compliance_keywords),
            "frustration": round(turn.signals.frustration, 3),
            "profanity": turn.signals.profanity,
            "sentiment": sentiment,
            "sentiment_mean": round(mean_sentiment, 3),
            "rephrased": rephrased,
            "rephrases": sum(1 for d in earlier if d.signals.get("rephrased")) + rephrased,
            "not_understood_turns": _not_understood_streak(state),
            "tool_failures": sum(1 for a in state.actions if not a.ok),
            "elapsed_s": round(turn.elapsed_s, 1),
            "confidence": turn.confidence,
        }
        pressures = {
            "not_understood_turns": values["not_understood_turns"] / limits.not_understood_turns,
            "rephrases": values["rephrases"] / limits.rephrases,
            "frustration": values["frustration"] / limits.frustration,
            # A trend needs two turns; one bad turn is the frustration signal's business.
            "sentiment": max(0.0, mean_sentiment / limits.sentiment_floor)
            if len(trend) >= 2 else 0.0,
            "tool_failures": values["tool_failures"] / limits.tool_failures,
            "duration": turn.elapsed_s / limits.max_call_s,
        }
        values["pressures"] = {k: round(v, 3) for k, v in pressures.items() if v > 0}
        score = round(sum(pressures.values()), 3)
        queue = turn.intent_queue or self.config.queue
        escalate, reason = True, ""
        if turn.signals.asks_for_human:
            reason = "caller asked for a human"
        elif turn.signals.compliance_keywords and limits.compliance:
            reason = f"compliance keywords: {', '.join(turn.signals.compliance_keywords)}"
            queue = self.config.compliance_queue or queue
        elif turn.routed_queue is not None:
            reason, queue = turn.routed_reason or f"routed to {turn.routed_queue}", \
                turn.routed_queue
        else:
            reason = self._soft_reason(pressures, values, limits, score, intent)
            escalate = bool(reason)
            if not escalate:
                reason = f"held: combined {score:.2f} < {limits.combined:.2f}"
        decision = EscalationDecision(turn=turn.turn, escalate=escalate, reason=reason,
                                      score=score, signals=values, intent=intent,
                                      queue=queue if escalate else None)
        state.escalations.append(decision)
        return decision

    @staticmethod
    def _soft_reason(pressures: dict[str, float], values: dict[str, Any],
                     limits: EscalationThresholds, score: float, intent: str | None) -> str:
        whose = f" ({intent} allows {{}})" if intent else " (limit {})"
        worst = max(pressures, key=pressures.__getitem__)
        if pressures[worst] >= 1.0:
            if worst == "not_understood_turns":
                return f"not understood {values[worst]} turns in a row" + \
                    whose.format(limits.not_understood_turns)
            if worst == "rephrases":
                return f"caller rephrased the same request {_times(values[worst])}" + \
                    whose.format(limits.rephrases)
            if worst == "frustration":
                return f"caller frustrated ({values['frustration']:.2f})" + \
                    whose.format(limits.frustration)
            if worst == "sentiment":
                return f"sentiment falling (mean {values['sentiment_mean']:.2f})" + \
                    whose.format(limits.sentiment_floor)
            if worst == "tool_failures":
                count = values[worst]
                return f"{count} system failure{'s' if count != 1 else ''} in the call" + \
                    whose.format(limits.tool_failures)
            return f"call running {values['elapsed_s']:.0f} s" + whose.format(limits.max_call_s)
        if score >= limits.combined:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                pressures.items(), key=lambda kv: -kv[1]) if v > 0)
            return f"combined signals {score:.2f} >= {limits.combined:.2f} ({parts})"
        return ""


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _not_understood_streak(state: CallState) -> int:
    streak = 0
    for record in reversed(state.intents):
        if record.decision not in _NOT_UNDERSTOOD:
            break
        streak += 1
    return streak
