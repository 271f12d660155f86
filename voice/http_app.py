"""The HTTP side of `ivr serve`: health, Prometheus metrics, the call API (and what handoff adds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voice.callstore import CallStore
from voice.metrics import IvrMetrics


def create_app(store: CallStore, metrics: IvrMetrics, health: Callable[[], dict[str, Any]],
               routers: list[APIRouter] | None = None) -> FastAPI:
    app = FastAPI(title="voice-ivr", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return health()

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/calls")
    async def calls(limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
        """The latest calls, newest first, each with its turns as `ivr simulate` prints them."""
        import asyncio

        return await asyncio.to_thread(store.latest, limit)

    for router in routers or []:
        app.include_router(router)
    return app
