"""After-call work: the call's disposition and summary written into a CRM case.

A case opened during the call (an address change, say) gets the note; otherwise the caller's
newest open case about a phone call, otherwise a new one. The note is one line an agent or a
supervisor can scan: time, disposition, handoff id, summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from handoff.crm import CrmStore
from handoff.package import now_iso
from intents.redaction import scan


class Disposition(StrEnum):
    TRANSFERRED_CONNECTED = "transferred-connected"
    TRANSFER_FAILED = "transfer-failed"  # no agent answered and the caller chose no callback
    ABANDONED = "abandoned"  # the caller hung up before an agent took the call
    CALLBACK_SCHEDULED = "callback-scheduled"
    SELF_SERVED = "self-served"


# What each disposition leaves for the contact centre to do.
CASE_STATUS = {
    Disposition.TRANSFERRED_CONNECTED: "open",  # the agent now owns it
    Disposition.TRANSFER_FAILED: "open",
    Disposition.ABANDONED: "open",
    Disposition.CALLBACK_SCHEDULED: "pending",
    Disposition.SELF_SERVED: "closed",
}

_BY_OUTCOME = {
    "connected": Disposition.TRANSFERRED_CONNECTED,
    "callback": Disposition.CALLBACK_SCHEDULED,
    "abandoned": Disposition.ABANDONED,
    "no-answer": Disposition.TRANSFER_FAILED,
    "busy": Disposition.TRANSFER_FAILED,
    "rejected": Disposition.TRANSFER_FAILED,
    "failed": Disposition.TRANSFER_FAILED,
    "pending": Disposition.ABANDONED,  # the call ended with the transfer still ringing
}


def disposition_for(transfer_outcome: str | None) -> Disposition:
    """The disposition of a call from its transfer outcome; None: no transfer, self-served."""
    if transfer_outcome is None:
        return Disposition.SELF_SERVED
    try:
        return _BY_OUTCOME[transfer_outcome]
    except KeyError:
        raise ValueError(f"unknown transfer outcome {transfer_outcome!r}") from None


@dataclass(frozen=True)
class AfterCallRecord:
    case_id: int
    disposition: Disposition
    note: str
    opened: bool  # a new case was opened for this call


def write_after_call(crm: CrmStore, *, call_id: str, customer_id: int | None,
                     disposition: Disposition | str, summary: str,
                     handoff_id: str | None = None, case_id: int | None = None,
                     subject: str | None = None) -> AfterCallRecord:
    """Write the disposition and the summary into a case; returns which case and what note.

    ``case_id`` names the case (one opened during the call); without it the caller's newest
    open case is updated, or a case is opened with ``subject``.
    """
    disposition = Disposition(disposition)
    note = scan(f"[{now_iso()}] call {call_id}: {disposition}"
                f"{f' (handoff {handoff_id})' if handoff_id else ''}. {summary}")
    opened = False
    if case_id is None and customer_id is not None:
        open_cases = crm.cases(customer_id, status="open")
        case_id = open_cases[0].id if open_cases else None
    if case_id is None:
        case_id = crm.open_case(subject or "Phone call", customer_id, note)
        opened = True
        crm.update_case(case_id, status=CASE_STATUS[disposition])
    else:
        crm.update_case(case_id, add_note=note, status=CASE_STATUS[disposition])
    return AfterCallRecord(case_id, disposition, note, opened)


def after_call_from_package(crm: CrmStore, package: dict[str, Any]) -> AfterCallRecord:
    """``write_after_call`` for a stored package (``HandoffStore.get``): the disposition from
    its transfer outcome, the case opened during the call if any."""
    opened_cases = [a["result"]["case_id"] for a in package["actions"]
                    if a["tool"] == "open_case" and a["ok"] and a.get("result")]
    customer = package.get("customer") or {}
    intent = (package.get("intent") or {}).get("label")
    return write_after_call(
        crm, call_id=package["call"]["call_id"], customer_id=customer.get("id"),
        disposition=disposition_for(package["transfer"]["outcome"]),
        summary=package["summary"], handoff_id=package["handoff_id"],
        case_id=opened_cases[-1] if opened_cases else None,
        subject=f"Phone call: {intent.replace('_', ' ')}" if intent else "Phone call")
