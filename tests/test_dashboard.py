"""The supervisor dashboard and the agents' disposition, in Debian's headless Chromium.

A real uvicorn server on loopback serves the app of `ivr serve` (``create_app``) with the
dashboard router over real SQLite records; the desktop test's hub takes an agent's one-click
disposition into a real handoff store. ``IVR_WRITE_SCREENSHOTS=1`` also writes the dashboard's
screenshot for the README (docs/dashboard.png).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from handoff.api import BearerAuth
from handoff.desktop import DesktopHub, desktop_router
from handoff.store import HandoffStore
from tests.test_desktop import alex_package, browser, needs_chromium, open_desktop  # noqa: F401
from tests.test_figures import save, state, turn
from voice.app import figures
from voice.app.callstore import CallStore
from voice.app.dashboard import dashboard_router
from voice.app.http import create_app
from voice.app.journey import summarize
from voice.app.metrics import IvrMetrics

TOKEN = "supervisor-token"
DOCS = Path(__file__).parent.parent / "docs"
# (intents said, queue, reason, transfer outcome, end reason) of the day's kinds of call
KINDS = [
    ([("order_status", "route")], None, None, None, "caller-hangup"),
    ([("opening_hours", "route")], None, None, None, "ivr-hangup"),
    ([("payment", "route")], None, None, None, "caller-hangup"),
    ([("billing_question", "route")], "billing",
     "billing question is handled by the billing team", "connected", "caller-hangup"),
    ([("talk_to_human", "route")], "general", "caller asked for a human", "connected",
     "caller-hangup"),
    ([("refund", "route")], "returns", "refund is handled by the returns team", "abandoned",
     "caller-hangup"),
    ([("out_of_scope", "menu")], None, None, None, "caller-hangup"),
]


def seed_day(calls: CallStore, handoffs: HandoffStore, now: float, n: int = 60) -> None:
    """A day of calls of the kinds above, drawn with a fixed seed, and some dispositions."""
    rng = random.Random(14)
    for i in range(n):
        said, queue, reason, outcome, end = rng.choices(KINDS, weights=[5, 3, 2, 2, 2, 1, 1])[0]
        journey = summarize(state(said, queue, reason), end, transfer_outcome=outcome,
                            ivr_s=rng.uniform(15, 90))
        turns = [turn(k, rng.uniform(150, 400), rng.uniform(500, 1400)) for k in (1, 2)]
        save(calls, f"d{i:03d}", now - rng.uniform(60, 23 * 3600), f"+1555000{rng.randrange(40):04d}",
             journey=journey, end_reason=end, turns=turns)
        if queue and outcome == "connected" and i % 2 == 0:
            handoffs.save(alex_package(f"h-{i:03d}"))
            handoffs.set_disposition(f"h-{i:03d}", "needed-human" if i % 3 else
                                     "could-have-been-served", "Dana")


async def serve(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="dashboard-test-server")
    while not server.started:
        if serving.done():
            raise RuntimeError("uvicorn stopped before it served")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[dict]:
    calls = CallStore(f"sqlite:///{tmp_path}/ivr.sqlite", tmp_path / "spool")
    handoffs = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite", tmp_path / "hs")
    seed_day(calls, handoffs, time.time())

    def load(since: float, until: float) -> figures.Figures:
        return figures.load(calls, handoffs, since, until)

    auth = BearerAuth({TOKEN: "supervisor"})
    app = create_app(calls, IvrMetrics(), lambda: {"status": "ok"},
                     [dashboard_router(load, auth)], auth=auth)
    async for url in serve(app):
        yield {"url": url, "load": load}


async def test_the_figures_api_needs_a_token(site):
    async with httpx.AsyncClient(base_url=site["url"]) as client:
        assert (await client.get("/dashboard/api/figures")).status_code == 401
        wrong = await client.get("/dashboard/api/figures",
                                 headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = await client.get("/dashboard/api/figures",
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200 and good.json()["answered"] == 60
        page = await client.get("/dashboard")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "http" not in page.text.replace("http-equiv", "")  # no CDN, nothing remote


@needs_chromium
async def test_the_dashboard_shows_the_last_days_figures(site, browser):  # noqa: F811
    from playwright.async_api import expect

    errors: list[str] = []
    page = await browser.new_page(viewport={"width": 1280, "height": 1100})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{site['url']}/dashboard")
    await page.fill("#token", TOKEN)
    await page.click("#sign-in button[type=submit]")
    await expect(page.locator("body[data-loaded=true]")).to_have_count(1)

    now = time.time()
    f = site["load"](now - 86400, now)
    tiles = page.locator(".tile")
    await expect(tiles.nth(0).locator(".value")).to_have_text(str(f.answered))
    await expect(tiles.nth(1).locator(".value")).to_have_text(
        f"{100 * f.containment_rate:.1f} %")
    await expect(tiles.nth(2).locator(".value")).to_have_text(f"{100 * f.transfer_rate:.1f} %")
    await expect(tiles.nth(7).locator(".value")).to_have_text(
        f"{100 * f.escalation_accuracy:.1f} %")
    await expect(page.locator("#queues .row .name")).to_have_text(list(f.transfers_by_queue))
    first = next(iter(f.funnel))
    await expect(page.locator("#funnel tr").first.locator("td")).to_have_text(
        [first, *(str(f.funnel[first][s]) for s in ("recognized", "served", "contained"))])
    await expect(page.locator("#latency tr")).to_have_count(len(f.latency_ms))
    if os.environ.get("IVR_WRITE_SCREENSHOTS"):
        await page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
    assert errors == []

    await page.click("#sign-out")
    await page.fill("#token", "not-the-token")
    await page.click("#sign-in button[type=submit]")
    await expect(page.locator("#sign-in-error")).to_have_text("That token is not valid.")
    await expect(page.locator("#board")).to_be_hidden()


@needs_chromium
async def test_an_agent_rates_a_transfer_and_it_is_stored(tmp_path, browser):  # noqa: F811
    from playwright.async_api import expect

    store = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite", tmp_path / "hs")
    package = alex_package("h-rated")
    store.save(package)

    async def on_disposition(handoff_id: str, agent: str, disposition: str) -> None:
        await asyncio.to_thread(store.set_disposition, handoff_id, disposition, agent)

    hub = DesktopHub({"tok-1": "Dana", "tok-2": "Sam"}, on_disposition=on_disposition)
    app = FastAPI()
    app.include_router(desktop_router(hub))
    errors: list[str] = []
    async for url in serve(app):
        desktop = type("Desktop", (), {"url": url})()
        dana = await open_desktop(browser, desktop, "tok-1", errors)
        sam = await open_desktop(browser, desktop, "tok-2", errors)
        await expect(dana.locator("#link")).to_have_text("Live")
        await expect(sam.locator("#link")).to_have_text("Live")
        await hub.publish(package)
        card = dana.locator('.card[data-handoff-id="h-rated"]')
        await expect(card.locator(".disposition")).to_be_hidden()  # not hers yet
        await card.locator(".accept").click()
        await hub.update("h-rated", "connected")
        await expect(card.locator(".disposition")).to_be_visible()
        await expect(sam.locator('.card[data-handoff-id="h-rated"] .disposition')).to_be_hidden()
        await card.get_by_role("button", name="Could have been served").click()
        await expect(card.locator(".disposition-done")).to_have_text(
            "Recorded: could have been served")
        await expect(card.locator(".dispose").first).to_be_hidden()
        await hub.aclose()
    saved = HandoffStore(f"sqlite:///{tmp_path}/handoffs.sqlite", tmp_path / "hs")
    assert saved.disposition("h-rated")["disposition"] == "could-have-been-served"
    assert saved.disposition("h-rated")["agent"] == "Dana"
    assert errors == []
