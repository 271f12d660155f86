"""The turn manager's tools: typed, validated, and honest about failure.

Each tool takes a pydantic parameter model (invalid input never reaches the CRM) and returns a
``ToolResult``; an exception from the system of record becomes ``ok=False`` with the error, so
the turn manager can tell the caller and record it rather than claim what did not happen.

The tools are declared once, by ``@tool`` on their methods; the LLM's tool schema is generated
from them (``tool_schema``). They reach the system of record through the ``Crm`` protocol, which
``handoff.crm.CrmStore`` implements; calls block on I/O, so async callers run them in a thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, get_type_hints

from pydantic import BaseModel, Field, ValidationError


class Crm(Protocol):
    """The system of record as the dialogue uses it."""

    def customer_by_phone(self, phone: str) -> Any: ...
    def account_numbers(self, customer_id: int) -> list[str]: ...
    def order(self, number: str) -> Any: ...
    def account_balance(self, number: str) -> int | None: ...
    def recent_charges(self, account_number: str, limit: int = 5) -> list[Any]: ...
    def open_case(self, subject: str, customer_id: int | None = None, notes: str = "") -> int: ...
    def schedule_callback(self, phone: str, window: str,
                          customer_id: int | None = None) -> int: ...


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


TOOLS: dict[str, tuple[type[BaseModel], str]] = {}  # name -> (parameters, description)


def tool(name: str, description: str) -> Callable:
    """Declare a method of ``Tools`` as the tool ``name``; its ``params`` type is the schema."""
    def register(method: Callable) -> Callable:
        TOOLS[name] = (get_type_hints(method)["params"], description)
        method.tool_name = name
        return method
    return register


def tool_schema() -> list[dict[str, Any]]:
    """The OpenAI tool definitions, generated from the tools' own parameter models."""
    return [{"type": "function", "function": {"name": name, "description": description,
                                              "parameters": params.model_json_schema()}}
            for name, (params, description) in TOOLS.items()]


class Tools:
    def __init__(self, crm: Crm) -> None:
        self.crm = crm

    def call(self, name: str, **arguments: Any) -> ToolResult:
        handler = getattr(self, f"_{name}", None) if name in TOOLS else None
        if handler is None:
            return ToolResult(False, error=f"unknown tool {name!r}")
        params_type = get_type_hints(handler)["params"]
        try:
            params = params_type.model_validate(arguments)
        except ValidationError as error:
            return ToolResult(False, error=f"invalid arguments: {error.errors()[0]['msg']}")
        try:
            return handler(params)
        except Exception as error:  # noqa: BLE001
            # the system of record failed: say so, never pretend
            return ToolResult(False, error=f"{type(error).__name__}: {error}")

    @tool("order_status", "Status, carrier and delivery date of an order.")
    def _order_status(self, params: OrderStatusParams) -> ToolResult:
        order = self.crm.order(params.order_number)
        if order is None:
            return ToolResult(True, {"found": False, "order_number": params.order_number})
        return ToolResult(True, {"found": True, "order_number": order.number,
                                 "status": order.status, "carrier": order.carrier,
                                 "placed_on": order.placed_on.isoformat(),
                                 "eta": order.eta.isoformat() if order.eta else None})

    @tool("account_balance", "Balance of an account.")
    def _account_balance(self, params: AccountParams) -> ToolResult:
        cents = self.crm.account_balance(params.account_number)
        return ToolResult(True, {"found": cents is not None, "balance_cents": cents})

    @tool("recent_charges", "The latest charges on an account.")
    def _recent_charges(self, params: AccountParams) -> ToolResult:
        charges = self.crm.recent_charges(params.account_number)
        return ToolResult(True, {"charges": [
            {"amount_cents": c.amount_cents, "description": c.description,
             "charged_on": c.charged_on.isoformat()} for c in charges]})

    @tool("open_case", "Open a case for a colleague to follow up.")
    def _open_case(self, params: OpenCaseParams) -> ToolResult:
        case_id = self.crm.open_case(params.subject, params.customer_id, params.notes)
        return ToolResult(True, {"case_id": case_id})

    @tool("schedule_callback", "Book a call back to the caller.")
    def _schedule_callback(self, params: CallbackParams) -> ToolResult:
        callback_id = self.crm.schedule_callback(params.phone, params.window, params.customer_id)
        return ToolResult(True, {"callback_id": callback_id})
