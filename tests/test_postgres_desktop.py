"""One API and one agent desktop across a pool of workers sharing PostgreSQL.

Two workers are set up as ``ivr serve`` sets itself up (``IvrServer``: its call store with
heartbeat and start-up reconcile, ``_setup_handoff``: handoff store, API auth, desktop hub and
the live feed), each serving its HTTP app with uvicorn on a loopback port, without SIP or
models. An agent's page in Debian's Chromium, served by worker B, shows live a handoff written
by worker A; B's /api/calls and /api/handoffs list A's rows with A's worker id; B's start-up
closes the calls of a worker whose heartbeat stopped.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from test_desktop import CHROMIUM, alex_package, needs_chromium, open_desktop

from voice.app.callstore import WORKER_LOST, CallRecord, CallStore
from voice.app.http import create_app
from voice.app.server import IvrServer
from voice.app.settings import IvrSettings

TOKEN = "tok-pool-1"


@dataclass
class Worker:
    server: IvrServer
    url: str
    serving: asyncio.Task
    http: uvicorn.Server
    feed: asyncio.Task


async def start_worker(name: str, db: str, tmp_path) -> Worker:
    settings = IvrSettings.load(None, server__worker_id=name, server__store_url=db,
                                server__spool_dir=str(tmp_path / name / "spool"),
                                server__api_tokens=[f"Admin:{TOKEN}"],
                                server__desktop_poll_s=0.5, handoff__db_url=db,
                                handoff__spool_dir=str(tmp_path / name / "handoff-spool"),
                                handoff__desktop_tokens=[f"Dana:{TOKEN}-agent"])
    server = IvrServer(settings)
    await asyncio.to_thread(server._recover_records)  # heartbeat, reconcile (ivr serve start)
    server._setup_handoff()
    app = create_app(server.store, server.metrics, server.health, server.routers,
                     auth=server.auth)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(http.serve(sockets=[sock]), name=f"{name}-http")
    while not http.started:
        if serving.done():
            raise RuntimeError("uvicorn stopped before it served")
        await asyncio.sleep(0.01)
    feed = asyncio.create_task(server.feed.run(), name=f"{name}-feed")
    await asyncio.wait_for(server.feed.listening.wait(), 15)  # LISTEN on PostgreSQL
    return Worker(server, f"http://127.0.0.1:{sock.getsockname()[1]}", serving, http, feed)


async def stop_worker(worker: Worker) -> None:
    worker.feed.cancel()
    await worker.server.hub.aclose()
    worker.http.should_exit = True
    await asyncio.gather(worker.feed, worker.serving, return_exceptions=True)
    worker.server.handoffs.close()


@pytest.fixture
async def pool(fresh_postgres_db, tmp_path) -> AsyncIterator[tuple[Worker, Worker]]:
    # A worker that died (its heartbeat 2 minutes old) with a call up.
    dead = CallStore(fresh_postgres_db, tmp_path / "dead", worker="host:5069")
    dead.heartbeat(now=time.time() - 120)
    dead.save_call(CallRecord(id="on-dead-worker", started_at=time.time() - 115,
                              answered_at=time.time() - 114))
    a = await start_worker("host:5061", fresh_postgres_db, tmp_path)
    b = await start_worker("host:5062", fresh_postgres_db, tmp_path)
    try:
        yield a, b
    finally:
        await stop_worker(a)
        await stop_worker(b)


@needs_chromium
async def test_a_handoff_on_one_worker_shows_on_the_desktop_of_another(pool):
    from playwright.async_api import async_playwright, expect

    a, b = pool
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            errors: list[str] = []
            page = await open_desktop(chromium, b, f"{TOKEN}-agent", errors)
            await expect(page.locator("#link")).to_have_text("Live")
            await expect(page.locator("#empty")).to_be_visible()

            # Worker A writes the handoff and shows it on its own hub (HandoffPublisher).
            package = alex_package(f"h-{uuid.uuid4().hex[:8]}")
            await asyncio.to_thread(a.server.handoffs.save, package)
            await a.server.hub.publish(package)

            card = page.locator(f'.card[data-handoff-id="{package["handoff_id"]}"]')
            await expect(card.locator(".summary")).to_have_text(package["summary"])
            await expect(card.locator(".caller-name")).to_have_text("Alex Morgan")
            await expect(card.locator(".accept")).to_be_enabled()
            # Its outcome, set on worker A, follows on B's page.
            await asyncio.to_thread(a.server.handoffs.update_transfer, package["handoff_id"],
                                    "connected", agent_uri="sip:bob@pbx.test",
                                    attempt_result="connected")
            await expect(card.locator(".outcome")).to_have_text("Connected")
            assert errors == []
        finally:
            await chromium.close()


async def test_one_api_lists_every_worker_s_calls_and_handoffs(pool):
    a, b = pool
    a.server.store.save_call(CallRecord(id="on-a", started_at=time.time()))
    b.server.store.save_call(CallRecord(id="on-b", started_at=time.time()))
    handoff_id = a.server.handoffs.save(alex_package(f"h-{uuid.uuid4().hex[:8]}"))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as client:
        for worker in (a, b):  # either worker's API answers for the whole pool
            calls = (await client.get(f"{worker.url}/api/calls", headers=auth)).json()
            workers = {c["call_id"]: c["worker_id"] for c in calls}
            assert workers["on-a"] == "host:5061" and workers["on-b"] == "host:5062"
            handoffs = (await client.get(f"{worker.url}/api/handoffs", headers=auth)).json()
            assert [(h["handoff_id"], h["worker_id"]) for h in handoffs] == [
                (handoff_id, "host:5061")]
        # The dead worker's call was closed by the first live worker to start.
        [lost] = [c for c in calls if c["call_id"] == "on-dead-worker"]
        assert lost["end_reason"] == WORKER_LOST and lost["worker_id"] == "host:5069"
        assert lost["context"]["closed_by"] == "host:5061"
    assert {w["worker_id"] for w in b.server.store.workers()} == {"host:5061", "host:5062"}
