"""The handoff HTTP API: latest packages with their transfer outcome and delivery states.

A router, mounted by ``ivr serve`` beside the agent desktop. Packages hold personal data, so
when tokens are given every request needs one (``Authorization: Bearer <token>``).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from handoff.store import HandoffStore


def handoff_router(store: HandoffStore, *, tokens: list[str] | None = None) -> APIRouter:
    """``GET /api/handoffs?limit=N`` and ``GET /api/handoffs/{handoff_id}``."""
    allowed = [t for t in (tokens or []) if t]

    def authorized(request: Request) -> None:
        if tokens is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(
                hmac.compare_digest(given.encode(), t.encode()) for t in allowed):
            raise HTTPException(401, "a valid agent token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    router = APIRouter(prefix="/api/handoffs", tags=["handoff"],
                       dependencies=[Depends(authorized)])

    @router.get("")
    def latest(limit: int = Query(20, ge=1, le=200)) -> list[dict[str, Any]]:
        """The newest packages first, each with ``transfer`` and ``deliveries``."""
        return store.latest(limit)

    @router.get("/{handoff_id}")
    def one(handoff_id: str) -> dict[str, Any]:
        package = store.get(handoff_id)
        if package is None:
            raise HTTPException(404, f"no handoff {handoff_id}")
        return package

    return router
