"""The HTTP side of `ivr serve`: health, Prometheus metrics, the call API (and what handoff adds).

Secure by default: every route that returns caller data needs a token (:class:`BearerAuth`);
only ``Host`` values in ``allowed_hosts`` are answered (a DNS-rebinding page cannot reach the
API through a victim's browser); the OpenAPI description and its pages are off unless asked for.
``/healthz`` and ``/metrics`` are public and hold no caller data.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.trustedhost import TrustedHostMiddleware

from handoff.api import BearerAuth
from voice.app.callstore import CallStore
from voice.app.metrics import IvrMetrics

#: Always answered: the host itself.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_patterns(hosts: list[str]) -> list[str]:
    """Host names as TrustedHostMiddleware compares them: IPv6 literals in brackets (as they
    appear in a Host header), duplicates dropped, wildcards kept."""
    out: list[str] = []
    for host in hosts:
        host = host.strip()
        try:
            if ipaddress.ip_address(host.strip("[]")).version == 6:
                host = f"[{host.strip('[]')}]"
        except ValueError:
            pass
        if host and host not in out:
            out.append(host)
    return out


def create_app(store: CallStore, metrics: IvrMetrics, health: Callable[[], dict[str, Any]],
               routers: list[APIRouter] | None = None, *, auth: BearerAuth,
               allowed_hosts: list[str] | None = None, openapi: bool = False) -> FastAPI:
    """The app. ``health()`` says ``status``: ``ok`` answers 200; anything else (``draining``)
    503 with the same body, so a load balancer takes the node out while it finishes its calls.
    ``allowed_hosts`` None answers only :data:`LOCAL_HOSTS`; ``["*"]`` any host."""
    app = FastAPI(title="voice-ivr", docs_url="/docs" if openapi else None, redoc_url=None,
                  openapi_url="/openapi.json" if openapi else None)
    app.add_middleware(TrustedHostMiddleware,
                       allowed_hosts=host_patterns(list(allowed_hosts or LOCAL_HOSTS)))

    @app.get("/healthz")
    async def healthz() -> Response:
        state = health()
        return JSONResponse(state, status_code=200 if state.get("status") == "ok" else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        # In a thread: the contact-centre gauges read the stored records (StoredFigures).
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/calls", dependencies=[Depends(auth)])
    async def calls(limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
        """The latest calls, newest first, each with its turns as `ivr simulate` prints them
        (``Authorization: Bearer <token>``)."""
        return await asyncio.to_thread(store.latest, limit)

    for router in routers or []:
        app.include_router(router)
    return app
