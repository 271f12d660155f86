"""A spoken cohort: caller recordings and what the IVR must do with each call, in YAML.

``cohort.yaml`` in the cohort folder::

    cohort: retail-billing-spoken
    calls:
      - id: order-status-en-gb
        caller_number: "+15550000001"     # caller ID, for the CRM lookup (optional)
        steps:                            # played in turn, each after the IVR's reply
          - say: audio/order_status_en_gb.wav
          - say: audio/order_number_george.wav
          - keys: "#"                     # keypad, as RFC 4733 events
        expect:
          intent: order_status            # the intent the flow served (out_of_scope too)
          route: contained                # or the queue the caller was handed to
          outcome: served                 # served | transferred | unresolved
          slots: {order_number: "456712"}
          tools: [{name: order_status, args: {order_number: "456712"}}]
          must_say: ["shipped with UPS"]  # phrases, case-insensitive
          must_not_say: ["card"]
          latency_ms: 2500                # ceiling for every turn's wait

Everything wrong with the file is reported with its file and line, before any call runs: a
cohort is judged whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

OUTCOMES = ("served", "transferred", "unresolved")
CONTAINED = "contained"


class CohortError(ValueError):
    """An invalid cohort; ``str()`` names the file and line of each problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_Strict):
    say: str | None = Field(None, description="A recording, relative to the cohort folder.")
    keys: str | None = Field(None, pattern=r"^[0-9*#A-D]+$", description="Keypad presses.")
    pause_s: float = Field(0.6, ge=0, le=10, description="Silence before this step, after the "
                           "IVR's reply ended.")
    line: int = 0  # where the step is in cohort.yaml (filled in on load)

    @model_validator(mode="after")
    def _one(self) -> Step:
        if (self.say is None) == (self.keys is None):
            raise ValueError("a step is either 'say: RECORDING' or 'keys: DIGITS'")
        return self


class ToolCall(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments that must match "
                                 "(others are not checked).")


class Expect(_Strict):
    intent: str
    route: str = Field(description=f"'{CONTAINED}' or the queue the caller is handed to.")
    outcome: Literal["served", "transferred", "unresolved"] | None = None
    slots: dict[str, str] = Field(default_factory=dict)
    tools: list[ToolCall] | None = Field(None, description="The tool calls, in order; [] for "
                                         "none; omitted: not checked.")
    must_say: list[str] = Field(default_factory=list)
    must_not_say: list[str] = Field(default_factory=list)
    latency_ms: float | None = Field(None, gt=0)


class CohortCall(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    caller_number: str | None = None
    tags: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    expect: Expect
    line: int = 0


class Cohort(_Strict):
    cohort: str
    description: str = ""
    calls: list[CohortCall] = Field(min_length=1)
    path: Path | None = None  # the cohort.yaml it was read from

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path else Path(".")

    def recording(self, step: Step) -> Path:
        return self.folder / (step.say or "")


def _line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """1-based line of the deepest node on ``loc`` that exists in the YAML tree."""
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and key < len(node.value):
            match = node.value[key]
        else:
            match = None
        if match is None:
            break
        node, line = match, match.start_mark.line + 1
    return line


def load_cohort(path: Path | str, *, intents: set[str] | None = None) -> Cohort:
    """Read and check a cohort (a folder holding ``cohort.yaml``, or the file itself).

    Checks the YAML, the fields, unique call ids, that every recording exists, and (given the
    menu's ``intents``) that expected intents are the menu's. Raises ``CohortError`` listing
    every problem with its file and line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "cohort.yaml"
    if not path.is_file():
        raise CohortError([f"{path}: no such file"])
    text = path.read_text()
    try:
        tree = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CohortError([f"{where}: not valid YAML ({getattr(error, 'problem', error)})"]) \
            from error
    if tree is None or not isinstance(raw, dict):
        raise CohortError([f"{path}:1: a cohort is a mapping with 'cohort' and 'calls'"])
    try:
        cohort = Cohort.model_validate({**raw, "path": path})
    except ValidationError as error:
        problems = [f"{path}:{_line_of(tree, tuple(e['loc']))}: "
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise CohortError(problems) from error
    problems = []
    seen: dict[str, int] = {}
    for i, call in enumerate(cohort.calls):
        call.line = _line_of(tree, ("calls", i))
        if call.id in seen:
            problems.append(f"{path}:{call.line}: call id {call.id!r} is used twice "
                            f"(first at line {seen[call.id]})")
        seen.setdefault(call.id, call.line)
        for j, step in enumerate(call.steps):
            step.line = _line_of(tree, ("calls", i, "steps", j))
            if step.say is not None and not cohort.recording(step).is_file():
                problems.append(f"{path}:{step.line}: call {call.id}: recording "
                                f"{cohort.recording(step)} is missing")
        if intents is not None and call.expect.intent not in intents:
            problems.append(f"{path}:{_line_of(tree, ('calls', i, 'expect', 'intent'))}: call "
                            f"{call.id}: intent {call.expect.intent!r} is not in the menu")
    if problems:
        raise CohortError(problems)
    return cohort
