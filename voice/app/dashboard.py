"""The supervisor dashboard: the last day's contact-centre figures on one page.

``GET /dashboard`` is a static page (HTML, CSS and JavaScript under ``voice/app/static/``, no
CDN, no framework); it holds no data. The figures come from ``GET /dashboard/api/figures``,
which needs a token like every API that reads caller records (``Authorization: Bearer``; the
page asks for it and keeps it in the tab's session storage). The figures are computed from the
stored records (``voice.app.figures``), so they are the same after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from handoff.api import BearerAuth
from voice.app.figures import Figures

# The page loads only its own files, talks only to its own origin, and cannot be framed.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_SECURITY = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
             "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _static(name: str) -> bytes:
    return resources.files("voice.app").joinpath("static", name).read_bytes()


def dashboard_router(load: Callable[[float, float], Figures], auth: BearerAuth) -> APIRouter:
    """The page, its two assets and the figures API. ``load(since, until)`` reads the stored
    records (blocking; run in a thread here)."""
    import time

    router = APIRouter()
    page = _static("dashboard.html")
    assets = {"dashboard.css": ("text/css; charset=utf-8", _static("dashboard.css")),
              "dashboard.js": ("text/javascript; charset=utf-8", _static("dashboard.js"))}

    @router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard_page() -> Response:
        return HTMLResponse(page, headers=_SECURITY)

    @router.get("/dashboard/static/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "no such dashboard asset")
        media_type, body = assets[name]
        return Response(body, media_type=media_type, headers=_SECURITY)

    @router.get("/dashboard/api/figures", dependencies=[Depends(auth)])
    async def figures(hours: float = Query(24.0, gt=0, le=24 * 90)) -> dict[str, Any]:
        """The figures of the last ``hours`` (``Authorization: Bearer <token>``)."""
        now = time.time()
        result = await asyncio.to_thread(load, now - hours * 3600, now)
        return result.to_dict()

    return router
