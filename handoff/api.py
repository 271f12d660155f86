"""The handoff HTTP API: latest packages with their transfer outcome and delivery states.

A router, mounted by ``ivr serve`` beside the agent desktop. Packages hold personal data, so
every request needs a token (``Authorization: Bearer <token>``): there is no open mode. The
same :class:`BearerAuth` guards the call API of ``ivr serve``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from handoff.store import HandoffStore


class BearerAuth:
    """The tokens that may read caller data, checked in constant time.

    Used as a FastAPI dependency (``Depends(auth)``): a request without
    ``Authorization: Bearer <one of the tokens>`` gets 401 with ``WWW-Authenticate: Bearer``.
    The agent desktop signs agents in with their token, so an agent's desktop token is their
    session for these APIs as well.

    Args:
        tokens: token -> name of whoever holds it (a mapping), or the tokens alone. At least
            one: an API that holds personal data must not be open by accident.
    """

    def __init__(self, tokens: Mapping[str, str] | Iterable[str]) -> None:
        named = dict(tokens) if isinstance(tokens, Mapping) else \
            {t: f"token {i}" for i, t in enumerate(tokens, 1)}
        self._tokens = [(t.encode(), name) for t, name in named.items() if t]
        if not self._tokens:
            raise ValueError("BearerAuth: give at least one non-empty token; APIs that return "
                             "caller data are never open")

    def holder(self, token: str | None) -> str | None:
        """Who holds ``token`` (its name), or None. Every token is compared, in constant time."""
        if not token:
            return None
        given, found = token.encode(), None
        for known, name in self._tokens:
            if hmac.compare_digest(known, given):
                found = name
        return found

    def __call__(self, request: Request) -> str:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        holder = self.holder(given.strip()) if scheme.lower() == "bearer" else None
        if holder is None:
            raise HTTPException(401, "a valid token is required: Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        return holder


def handoff_router(store: HandoffStore, *,
                   tokens: BearerAuth | Mapping[str, str] | Iterable[str]) -> APIRouter:
    """``GET /api/handoffs?limit=N`` and ``GET /api/handoffs/{handoff_id}``, each behind
    ``tokens`` (a :class:`BearerAuth`, or the tokens for one)."""
    auth = tokens if isinstance(tokens, BearerAuth) else BearerAuth(tokens)
    router = APIRouter(prefix="/api/handoffs", tags=["handoff"], dependencies=[Depends(auth)])

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
