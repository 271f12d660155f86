"""The turn manager's tools: typed, validated, and honest about failure.

Each tool takes a pydantic parameter model (invalid input never reaches the CRM) and returns a
``ToolResult``; an exception from the system of record becomes ``ok=False`` with the error, so
the turn manager can tell the caller and record it rather than claim what did not happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, Field, ValidationError

from handoff.crm import CrmStore


class OrderStatusParams(BaseModel):
    order_number: str = Field(pattern=r"^\d{6}$")


class AccountParams(BaseModel):
    account_number: str = Field(pattern=r"^\d{8}$")


class OpenCaseParams(BaseModel):
    subject: str = Field(min_length=3, max_length=200)
    customer_id: int | None = None
    notes: str = ""


class CallbackParams(BaseModel):
    phone: str = Field(pattern=r"^\+?\d{7,15}$")
    window: str = Field(min_length=2, max_length=64)
    customer_id: int | None = None


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    data: dict[str, Any] | None = None
    error: str | None = None


class Tools:
    def __init__(self, crm: CrmStore) -> None:
        self.crm = crm

    def call(self, name: str, **arguments: Any) -> ToolResult:
        handler = getattr(self, f"_{name}", None)
        if handler is None:
            return ToolResult(False, error=f"unknown tool {name!r}")
        params_type = get_type_hints(handler)["params"]
        try:
            params = params_type.model_validate(arguments)
        except ValidationError as error:
            return ToolResult(False, error=f"invalid arguments: {error.errors()[0]['msg']}")
        try:
            return handler(params)
        except Exception as error:  # the system of record failed: say so, never pretend
            return ToolResult(False, error=f"{type(error).__name__}: {error}")

    def _order_status(self, params: OrderStatusParams) -> ToolResult:
        order = self.crm.order(params.order_number)
        if order is None:
            return ToolResult(True, {"found": False, "order_number": params.order_number})
        return ToolResult(True, {"found": True, "order_number": order.number,
                                 "status": order.status, "carrier": order.carrier,
                                 "placed_on": order.placed_on.isoformat(),
                                 "eta": order.eta.isoformat() if order.eta else None})

    def _account_balance(self, params: AccountParams) -> ToolResult:
        cents = self.crm.account_balance(params.account_number)
        return ToolResult(True, {"found": cents is not None, "balance_cents": cents})

    def _recent_charges(self, params: AccountParams) -> ToolResult:
        charges = self.crm.recent_charges(params.account_number)
        return ToolResult(True, {"charges": [
            {"amount_cents": c.amount_cents, "description": c.description,
             "charged_on": c.charged_on.isoformat()} for c in charges]})

    def _open_case(self, params: OpenCaseParams) -> ToolResult:
        case_id = self.crm.open_case(params.subject, params.customer_id, params.notes)
        return ToolResult(True, {"case_id": case_id})

    def _schedule_callback(self, params: CallbackParams) -> ToolResult:
        callback_id = self.crm.schedule_callback(params.phone, params.window, params.customer_id)
        return ToolResult(True, {"callback_id": callback_id})
