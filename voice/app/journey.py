"""What one call was, as a contact centre counts it: its outcome, intents and escalation.

Pure functions over the dialogue's call state and the call row. The summary is written into the
call row (``context.journey``) when the call ends, so that every figure of the report and the
dashboard is derived from stored records and survives a restart; the traces carry the same
attributes.

Outcomes (one per answered call):

- ``contained``: the caller was served by the IVR (at least one intent answered without a
  human) and was not handed over;
- ``transferred``: handed to a human queue (``transfer_outcome`` says what then happened; an
  ``abandoned`` transfer is abandonment on hold);
- ``abandoned``: the caller left (or went silent) before anything was served or handed over:
  abandonment in the IVR;
- ``failed``: the call ended on our side's trouble (error, shutdown, lost worker, no media).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum
from typing import Any

from intents.config import OUT_OF_SCOPE


class Outcome(StrEnum):
    CONTAINED = "contained"
    TRANSFERRED = "transferred"
    ABANDONED = "abandoned"
    FAILED = "failed"


#: Ends in which the caller, not our side, decided when the call was over.
CALLER_ENDS = frozenset({"caller-hangup", "ivr-hangup", "silence-timeout", "max-duration",
                         "cancelled"})

#: Keys of the flow bundle version on a call row's context, newest naming first; the menu's own
#: version string stands in until a bundle version is stamped.
VERSION_KEYS = ("flow_version", "bundle_version", "flow_bundle_version", "menu_version")


def customer_id(number: str | None, key: bytes) -> str | None:
    """A keyed hash of the caller's number: the same caller gives the same id, and the number
    cannot be recovered without the key (a bare hash of a phone number is reversed by trying
    every number). Digits only, so '+44 20 ...' and '+4420...' are one caller."""
    digits = re.sub(r"\D", "", number or "")
    if not digits:
        return None
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:20]


def flow_version(context: dict[str, Any], state: Any = None) -> str | None:
    """The flow bundle version a call ran on: stamped on the row, else the menu's version."""
    for key in VERSION_KEYS:
        if context.get(key):
            return str(context[key])
    return getattr(state, "menu_version", None) or None


def reason_category(reason: str | None) -> str | None:
    """An escalation reason without its particulars ('card payment: **** 1111 keyed in' ->
    'card payment'), so that transfers group by why."""
    if not reason:
        return None
    head = reason.split(":", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"[\d*#]+", "", head)).strip() or reason


def flow_node(state: Any, turn: int) -> str:
    """``journey.stage`` of a turn: where the flow stood once the turn was answered: the
    intent it served or routed ('order_status'), 'transfer:<queue>' once handed over,
    'menu' when nothing was recognized."""
    if state is None:
        return "menu"
    if getattr(state, "route", None) and any(
            d.escalate and d.turn <= turn for d in getattr(state, "escalations", [])):
        return f"transfer:{state.route}"
    for record in reversed(getattr(state, "intents", [])):
        if record.turn <= turn and record.decision == "route" and record.label != OUT_OF_SCOPE:
            return str(record.label)
    return "menu"


def turn_intent(state: Any, turn: int) -> tuple[str, float] | None:
    """The intent classified on ``turn`` and its confidence, if the turn was classified."""
    for record in reversed(getattr(state, "intents", []) if state is not None else []):
        if record.turn == turn:
            return str(record.label), float(record.confidence)
    return None


def summarize(state: Any, end_reason: str, *, transfer_outcome: str | None = None,
              ivr_s: float | None = None) -> dict[str, Any]:
    """The call's ``context.journey``: outcome, intents recognized / served, escalation.

    ``state`` is the turn manager's ``CallState`` (None for handlers without one). An intent is
    *recognized* when the policy routed on it, *served* when the IVR answered it itself (it was
    not the intent the caller was handed over on), and *contained* when it was served in a call
    that ended without a human.
    """
    intents = getattr(state, "intents", []) if state is not None else []
    recognized: list[str] = []
    for record in intents:
        if record.decision == "route" and record.label != OUT_OF_SCOPE \
                and record.label not in recognized:
            recognized.append(record.label)
    route = getattr(state, "route", None) if state is not None else None
    escalated = [d for d in getattr(state, "escalations", []) if d.escalate] \
        if state is not None else []
    handed_on = escalated[-1].intent if escalated else None
    served = [name for name in recognized if not (route and name == handed_on)]
    if route:
        outcome = Outcome.TRANSFERRED
    elif end_reason not in CALLER_ENDS:
        outcome = Outcome.FAILED
    elif served:
        outcome = Outcome.CONTAINED
    else:
        outcome = Outcome.ABANDONED
    reason = getattr(state, "escalation_reason", None) if route else None
    if route and escalated and escalated[-1].reason and not reason:
        reason = escalated[-1].reason
    version = (getattr(state, "flow_version", None) or getattr(state, "menu_version", None)) \
        if state is not None else None
    return {
        "outcome": outcome.value,
        "flow_version": version or None,
        "recognized": recognized,
        "served": served,
        "contained": served if outcome == Outcome.CONTAINED else [],
        "queue": route,
        "escalation_reason": reason_category(reason),
        "transfer_outcome": transfer_outcome if route else None,
        "ivr_s": None if ivr_s is None else round(ivr_s, 2),
        "tools": [{"tool": a.tool, "ok": a.ok} for a in getattr(state, "actions", [])]
        if state is not None else [],
    }
