"""Contact-centre figures from the stored records: what the report, the dashboard and the
Prometheus gauges show.

Everything is derived from the call rows (with their turns and ``context.journey``, see
``voice.app.journey``) and the handoff packages (with the agents' dispositions), never from
in-memory counters, so the figures are the same after a restart and on every worker that shares
the database. Rates are over *answered* calls; a call refused before answer is not a call the
IVR handled.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from voice.app.journey import Outcome, flow_version, summarize

#: The stages of a caller's wait, in the order they happen (``TurnRecord.stages`` keys).
STAGES = ("end_of_turn", "asr", "nlu", "turn_manager", "tts_first_audio", "transport")
REPEAT_WINDOW_S = 7 * 86400


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _digits(number: str | None) -> str:
    return re.sub(r"\D", "", number or "")


@dataclass
class Spread:
    """A distribution's summary (ms or s)."""

    count: int
    p50: float | None
    p95: float | None
    mean: float | None

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(len(values), percentile(values, 50), percentile(values, 95),
                   sum(values) / len(values) if values else None)


@dataclass
class Figures:
    """The figures of one period. Rates are fractions (0-1) of answered calls unless said."""

    since: float
    until: float
    calls: int = 0  # every call row started in the period, answered or not
    answered: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    containment_rate: float | None = None
    transfer_rate: float | None = None
    abandon_ivr_rate: float | None = None  # left the IVR before being served or handed over
    abandon_hold_rate: float | None = None  # of transfers: left on hold before an agent
    transfers_by_queue: dict[str, int] = field(default_factory=dict)
    transfers_by_reason: dict[str, int] = field(default_factory=dict)
    transfer_outcomes: dict[str, int] = field(default_factory=dict)
    handle_time_s: Spread = field(default_factory=lambda: Spread(0, None, None, None))
    repeat_rate: float | None = None  # of answered calls with a number: another call <= 7 days
    repeat_calls: int = 0
    funnel: dict[str, dict[str, int]] = field(default_factory=dict)  # intent -> step -> calls
    latency_ms: dict[str, Spread] = field(default_factory=dict)  # stage (and 'total') -> spread
    dispositions: dict[str, int] = field(default_factory=dict)
    escalation_accuracy: float | None = None  # needed-human / all dispositions
    by_day: list[dict[str, Any]] = field(default_factory=list)  # day, answered, contained ...
    by_version: dict[str, dict[str, int]] = field(default_factory=dict)  # version -> outcomes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def journey_of(call: dict[str, Any]) -> dict[str, Any]:
    """The call's journey summary; rows written before summaries (or by a worker that died)
    are classified from their end reason alone."""
    journey = (call.get("context") or {}).get("journey")
    if journey:
        return journey
    return summarize(None, call.get("end_reason") or "unknown",
                     transfer_outcome=(call.get("context") or {}).get("transfer_outcome"))


def compute(calls: list[dict[str, Any]], handoffs: list[dict[str, Any]], *, since: float,
            until: float, earlier: list[dict[str, Any]] | None = None) -> Figures:
    """The figures of calls started in [since, until).

    Args:
        calls: call rows of the period (``CallStore.between``).
        handoffs: packages of the period with their ``disposition`` (``HandoffStore.since``).
        earlier: rows of the 7 days before ``since``, so a repeat call early in the period is
            seen as one.
    """
    fig = Figures(since=since, until=until)
    period = [c for c in calls if since <= c["started_at"] < until]
    fig.calls = len(period)
    answered = [c for c in period if c.get("answered_at") is not None]
    fig.answered = len(answered)
    outcomes: Counter[str] = Counter()
    queues: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    transfer_outcomes: Counter[str] = Counter()
    handle: list[float] = []
    funnel: dict[str, Counter[str]] = defaultdict(Counter)
    stages: dict[str, list[float]] = defaultdict(list)
    days: dict[str, Counter[str]] = defaultdict(Counter)
    versions: dict[str, Counter[str]] = defaultdict(Counter)
    for call in answered:
        journey = journey_of(call)
        outcome = journey["outcome"]
        outcomes[outcome] += 1
        day = datetime.fromtimestamp(call["started_at"], UTC).strftime("%Y-%m-%d")
        days[day]["answered"] += 1
        days[day][outcome] += 1
        version = journey.get("flow_version") or flow_version(call.get("context") or {})
        versions[version or "unknown"][outcome] += 1
        if outcome == Outcome.TRANSFERRED:
            queues[journey.get("queue") or "unknown"] += 1
            reasons[journey.get("escalation_reason") or "unknown"] += 1
            transfer_outcomes[journey.get("transfer_outcome") or "unknown"] += 1
        ivr_s = journey.get("ivr_s")
        if ivr_s is None and call.get("ended_at") is not None:
            ivr_s = call["ended_at"] - call["answered_at"]
        if ivr_s is not None:
            handle.append(float(ivr_s))
        for step in ("recognized", "served", "contained"):
            for intent in journey.get(step) or []:
                funnel[intent][step] += 1
        for turn in call.get("turns") or []:
            for stage, ms in (turn.get("stages") or {}).items():
                stages[stage].append(float(ms))
            if turn.get("total_ms") is not None:
                stages["total"].append(float(turn["total_ms"]))
    fig.outcomes = dict(outcomes)
    fig.containment_rate = _ratio(outcomes[Outcome.CONTAINED], fig.answered)
    fig.transfer_rate = _ratio(outcomes[Outcome.TRANSFERRED], fig.answered)
    fig.abandon_ivr_rate = _ratio(outcomes[Outcome.ABANDONED], fig.answered)
    fig.abandon_hold_rate = _ratio(transfer_outcomes["abandoned"],
                                   outcomes[Outcome.TRANSFERRED])
    fig.transfers_by_queue = dict(queues.most_common())
    fig.transfers_by_reason = dict(reasons.most_common())
    fig.transfer_outcomes = dict(transfer_outcomes.most_common())
    fig.handle_time_s = Spread.of(handle)
    fig.funnel = {intent: {step: steps[step] for step in ("recognized", "served", "contained")}
                  for intent, steps in sorted(funnel.items(),
                                              key=lambda kv: -kv[1]["recognized"])}
    ordered = [s for s in STAGES if s in stages] + \
        sorted(s for s in stages if s not in STAGES and s != "total") + \
        (["total"] if "total" in stages else [])
    fig.latency_ms = {stage: Spread.of(stages[stage]) for stage in ordered}
    fig.by_day = [{"day": day, "answered": c["answered"],
                   **{o.value: c[o.value] for o in Outcome}} for day, c in sorted(days.items())]
    fig.by_version = {v: dict(c) for v, c in sorted(versions.items())}
    fig.repeat_calls, with_number = _repeats(answered, earlier or [])
    fig.repeat_rate = _ratio(fig.repeat_calls, with_number)
    verdicts = Counter((h.get("disposition") or {}).get("disposition") for h in handoffs)
    verdicts.pop(None, None)
    fig.dispositions = dict(verdicts)
    fig.escalation_accuracy = _ratio(verdicts["needed-human"], sum(verdicts.values()))
    return fig


def _repeats(answered: list[dict[str, Any]], earlier: list[dict[str, Any]]) -> tuple[int, int]:
    """(calls that had an answered call from the same number in the 7 days before, calls with
    a number): the repeat-call rate, a first-contact-resolution proxy."""
    seen: dict[str, list[float]] = defaultdict(list)
    for call in earlier:
        if call.get("answered_at") is not None and _digits(call.get("caller_number")):
            seen[_digits(call["caller_number"])].append(call["started_at"])
    repeats = with_number = 0
    for call in sorted(answered, key=lambda c: c["started_at"]):
        number = _digits(call.get("caller_number"))
        if not number:
            continue
        with_number += 1
        if any(0 < call["started_at"] - t <= REPEAT_WINDOW_S for t in seen[number]):
            repeats += 1
        seen[number].append(call["started_at"])
    return repeats, with_number


def load(store: Any, handoffs: Any, since: float, until: float) -> Figures:
    """Read the records of [since, until) (and the week before, for repeats) and compute.
    Blocking: call from a thread in async code."""
    rows = store.between(since, until)
    earlier = store.between(since - REPEAT_WINDOW_S, since, with_turns=False)
    packages = handoffs.since(datetime.fromtimestamp(since, UTC).isoformat(
        timespec="milliseconds")) if handoffs is not None else []
    return compute(rows, packages, since=since, until=until, earlier=earlier)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    """'7d', '24h', '90m', '2w' -> seconds. Raises ValueError saying what is understood."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--since {text!r}: give a positive duration like 7d, 24h, 90m or 2w")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
