"""Scoring a spoken cohort: what each call did against what it should have, the rates an
operator is judged on, and whether a candidate bundle regresses from a baseline.

Pure functions over ``CallOutcome`` records (what the runner observed), so that the rules are
tested without audio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from intents.flows.cohort import CONTAINED, CohortCall

# The rates compared between candidate and baseline, higher is better.
RATES = ("task_completion", "intent_accuracy", "routing_accuracy", "escalation_accuracy",
         "containment_self_service", "tool_accuracy")
# What task completion requires of a call (the latency ceiling is reported on its own: a
# wall-clock figure on a shared machine must not decide whether the flow did its job).
TASK_CHECKS = ("intent", "route", "outcome", "slots", "tools", "must_say", "must_not_say")


class Tolerances(BaseModel):
    """How far a candidate may fall behind the baseline before the gate fails it."""

    model_config = ConfigDict(extra="forbid")

    task_completion: float = Field(0.03, ge=0, le=1, description="Largest allowed drop of a "
                                   "rate (0.03: one call in 40 may change, two may not).")
    intent_accuracy: float = Field(0.03, ge=0, le=1)
    routing_accuracy: float = Field(0.03, ge=0, le=1)
    escalation_accuracy: float = Field(0.03, ge=0, le=1)
    containment_self_service: float = Field(0.03, ge=0, le=1)
    tool_accuracy: float = Field(0.03, ge=0, le=1)
    latency_p95_ratio: float | None = Field(None, gt=1, description="Candidate p95 wait "
                                            "above baseline p95 times this fails; None: not "
                                            "gated (the default: faster than real time the "
                                            "waits are processing times, and on a shared "
                                            "machine they follow its load more than the "
                                            "flow). Set it on a dedicated runner.")
    max_worse_calls: int | None = Field(0, ge=0, description="Calls the baseline completed "
                                        "that may fail on the candidate (each confirmed by a "
                                        "rerun of both). 0: any such call fails the gate, even "
                                        "if other calls improved and the rates hold; None: "
                                        "only the rates count.")
    min_task_completion: float | None = Field(None, ge=0, le=1, description="An absolute floor "
                                              "for the candidate, whatever the baseline did.")


@dataclass
class CallOutcome:
    """What one cohort call did, as observed at the end of the call."""

    id: str
    expected_intent: str
    intent: str | None = None
    route: str = CONTAINED
    outcome: str = "unresolved"
    slots: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "args", "ok"}
    said: list[str] = field(default_factory=list)  # the IVR's replies, in order
    heard: list[str] = field(default_factory=list)  # the caller's turns as transcribed
    latencies_ms: list[float] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.error is None and all(self.checks.get(c, True) for c in TASK_CHECKS)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "completed": self.completed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallOutcome:
        return cls(**{k: v for k, v in data.items() if k != "completed"})


def check_call(call: CohortCall, outcome: CallOutcome) -> CallOutcome:
    """Fill ``outcome.checks``: each expectation the call states, met or not."""
    want = call.expect
    said = " ".join(outcome.said).lower()
    checks = {"intent": outcome.intent == want.intent, "route": outcome.route == want.route}
    if want.outcome is not None:
        checks["outcome"] = outcome.outcome == want.outcome
    if want.slots:
        checks["slots"] = all(outcome.slots.get(k) == v for k, v in want.slots.items())
    if want.tools is not None:
        made = outcome.tools
        checks["tools"] = len(made) == len(want.tools) and all(
            m["name"] == w.name and all(str(m["args"].get(k)) == str(v)
                                        for k, v in w.args.items())
            for m, w in zip(made, want.tools, strict=False))
    if want.must_say:
        checks["must_say"] = all(p.lower() in said for p in want.must_say)
    if want.must_not_say:
        checks["must_not_say"] = not any(p.lower() in said for p in want.must_not_say)
    if want.latency_ms is not None:
        checks["latency"] = all(ms <= want.latency_ms for ms in outcome.latencies_ms)
    outcome.checks = checks
    return outcome


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def metrics(calls: list[CohortCall], outcomes: dict[str, CallOutcome]) -> dict[str, Any]:
    """The cohort's rates (None where no call measures one) and latency percentiles."""
    pairs = [(c, outcomes[c.id]) for c in calls if c.id in outcomes]
    self_service = [o.route == CONTAINED for c, o in pairs if c.expect.route == CONTAINED
                    and c.expect.intent != "out_of_scope"]
    waits = [ms for _, o in pairs for ms in o.latencies_ms]
    return {
        "calls": len(pairs),
        "task_completion": _rate([o.completed for _, o in pairs]),
        "intent_accuracy": _rate([o.checks.get("intent", False) for _, o in pairs]),
        "routing_accuracy": _rate([o.checks.get("route", False) for _, o in pairs]),
        "escalation_accuracy": _rate([(o.route != CONTAINED) == (c.expect.route != CONTAINED)
                                      for c, o in pairs]),
        "containment": _rate([o.route == CONTAINED for _, o in pairs]),
        "containment_self_service": _rate(self_service),
        "tool_accuracy": _rate([o.checks["tools"] for _, o in pairs if "tools" in o.checks]),
        "latency_ceiling_met": _rate([o.checks["latency"] for _, o in pairs
                                      if "latency" in o.checks]),
        "latency_p50_ms": _percentile(waits, 50),
        "latency_p95_ms": _percentile(waits, 95),
        "turns": len(waits),
        "errors": sum(o.error is not None for _, o in pairs),
    }


def per_intent(calls: list[CohortCall], outcomes: dict[str, CallOutcome]) -> dict[str, dict]:
    groups: dict[str, list[CohortCall]] = {}
    for call in calls:
        groups.setdefault(call.expect.intent, []).append(call)
    return {name: metrics(group, outcomes) for name, group in sorted(groups.items())}


def describe(outcome: CallOutcome) -> str:
    """One line: what the call did."""
    if outcome.error:
        return f"error: {outcome.error}"
    failed = [c for c, ok in outcome.checks.items() if not ok]
    tools = ",".join(t["name"] for t in outcome.tools) or "no tool"
    return (f"intent {outcome.intent}, route {outcome.route}, {outcome.outcome}, {tools}"
            + (f"; failed: {', '.join(failed)}" if failed else "; all checks met"))


def outcome_key(o: CallOutcome) -> tuple:
    """What must be equal for two runs of a call to count as the same result."""
    return (o.completed, o.intent, o.route, o.outcome,
            [(t["name"], sorted(t["args"].items())) for t in o.tools])


@dataclass
class Verdict:
    passed: bool
    regressions: list[str]  # why the gate failed, one line each
    changed: list[dict[str, Any]]  # calls whose result differs: id, baseline, candidate
    unstable: list[str] = field(default_factory=list)  # left out: a rerun disagreed


def compare(calls: list[CohortCall], baseline: dict[str, CallOutcome],
            candidate: dict[str, CallOutcome], tolerances: Tolerances,
            unstable: set[str] | frozenset[str] = frozenset()) -> Verdict:
    """Whether ``candidate`` regresses from ``baseline`` beyond ``tolerances``, and which calls
    changed (completion, intent, route, outcome or tool calls) and how.

    ``unstable`` calls (whose result a rerun of the same bundle did not reproduce) are left out
    of both sides: the pipeline's segmentation of a noisy recording can vary from run to run,
    and a gate must not fail, or pass, on that."""
    unstable_calls = [c.id for c in calls if c.id in unstable]
    calls = [c for c in calls if c.id not in unstable]
    base, cand = metrics(calls, baseline), metrics(calls, candidate)
    regressions = []
    for rate in RATES:
        b, c, tol = base[rate], cand[rate], getattr(tolerances, rate)
        if b is not None and c is not None and c < b - tol - 1e-9:
            regressions.append(f"{rate} fell from {b:.1%} to {c:.1%} (tolerance {tol:.1%})")
    ratio = tolerances.latency_p95_ratio
    if ratio and base["latency_p95_ms"] and cand["latency_p95_ms"] \
            and cand["latency_p95_ms"] > base["latency_p95_ms"] * ratio:
        regressions.append(f"latency p95 rose from {base['latency_p95_ms']:.0f} ms to "
                           f"{cand['latency_p95_ms']:.0f} ms (more than x{ratio})")
    floor = tolerances.min_task_completion
    if floor is not None and (cand["task_completion"] or 0) < floor:
        regressions.append(f"task completion {cand['task_completion']:.1%} is below the floor "
                           f"{floor:.1%}")
    changed = []
    for call in calls:
        b, c = baseline.get(call.id), candidate.get(call.id)
        if b is None or c is None:
            continue
        if outcome_key(b) != outcome_key(c):
            changed.append({"id": call.id, "line": call.line,
                            "got_worse": b.completed and not c.completed,
                            "baseline": describe(b), "candidate": describe(c)})
    worse = [c["id"] for c in changed if c["got_worse"]]
    if tolerances.max_worse_calls is not None and len(worse) > tolerances.max_worse_calls:
        regressions.append(f"{len(worse)} call(s) the baseline completed fail on the "
                           f"candidate: {', '.join(worse)}")
    if cand["errors"]:
        regressions.append(f"{cand['errors']} call(s) could not be run on the candidate")
    return Verdict(passed=not regressions, regressions=regressions, changed=changed,
                   unstable=unstable_calls)
