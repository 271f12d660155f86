"""The agent desktop in a real browser: a warm transfer appears live, an agent accepts it.

A real uvicorn server on a loopback port serves the desktop router; Debian's Chromium, driven by
Playwright, signs in as an agent. The hub rules (one accept per transfer, a failing on_accept,
history) are tested without a browser.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from handoff.desktop import AcceptRefused, DesktopHub, desktop_router
from handoff.package import validated_dict

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKENS = {"tok-1": "Dana", "tok-2": "Sam"}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (make test installs it: "
           "apt-get install chromium chromium-driver)")


def alex_package(handoff_id: str = "h-20260314-0007") -> dict:
    """A caller who asked where their order is, heard it is late, and wants a person (checked
    against the handoff schema, as every package the IVR writes is)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return validated_dict({
        "schema_version": "1",
        "handoff_id": handoff_id,
        "created_at": now,
        "call": {"call_id": "c-0007", "sip_call_id": "a84b4c76e66710@10.0.0.5",
                 "caller_number": "+15550000001", "called_number": "+15550001000",
                 "started_at": now, "menu_version": "support-1"},
        "customer": {
            "id": 1, "name": "Alex Morgan", "phone": "+15550000001", "tier": "gold",
            "language": "en",
            "accounts": [{"number": "90000001", "balance_cents": 12450}],
            "recent_orders": [{"number": "456712", "status": "shipped", "carrier": "UPS",
                               "eta": "2026-03-16"}],
            "recent_charges": [{"account_number": "90000001", "amount_cents": 8999,
                                "description": "Order 456712", "charged_on": "2026-03-10"}],
            "open_cases": [{"id": 1042, "subject": "Late delivery", "status": "open",
                            "created_at": "2026-03-13T09:12:00+00:00"}],
        },
        "intent": {"label": "order_status", "confidence": 0.91,
                   "alternatives": [{"label": "billing", "confidence": 0.05}]},
        "slots": {"order_number": "456712"},
        "actions": [{"tool": "lookup_order", "arguments": {"number": "456712"}, "ok": True,
                     "result": {"status": "shipped"}, "error": None, "at": now}],
        "sentiment": {"trend": [0.1, -0.2, -0.4], "latest": -0.4, "label": "concerned"},
        "escalation": {"reason": "caller asked for a person", "queue": "orders",
                       "signals": {"explicit_request": True}},
        "transcript": [
            {"turn": 1, "speaker": "ivr", "text": "How can I help?", "at": now},
            {"turn": 1, "speaker": "caller", "text": "Where is my order 456712?", "at": now},
            {"turn": 2, "speaker": "ivr", "text": "It shipped with UPS, due on March 16.",
             "at": now},
            {"turn": 2, "speaker": "caller", "text": "That's late. Can I talk to someone?",
             "at": now},
        ],
        "summary": "Alex Morgan (gold) asks where order 456712 is: shipped with UPS, due 16 "
                   "March, later than promised. Wants a person about the delay.",
        "summary_source": "facts",
        "transfer": {"outcome": "pending", "agent_uri": None, "attempts": [], "updated_at": now},
    })


@dataclass
class Desktop:
    hub: DesktopHub
    url: str
    accepted: list[tuple[str, str]] = field(default_factory=list)
    failing_accepts: int = 0  # how many next accepts the IVR fails (agent leg not placed)


@pytest.fixture
async def desktop() -> AsyncIterator[Desktop]:
    accepted: list[tuple[str, str]] = []

    async def on_accept(handoff_id: str, agent: str) -> None:
        accepted.append((handoff_id, agent))
        if desktop.failing_accepts:
            desktop.failing_accepts -= 1
            raise ConnectionError("agent leg could not be placed")

    hub = DesktopHub(tokens=TOKENS, on_accept=on_accept)
    app = FastAPI()
    app.include_router(desktop_router(hub))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="desktop-test-server")
    while not server.started:
        if serving.done():
            raise RuntimeError("uvicorn stopped before it served the desktop")
        await asyncio.sleep(0.01)
    desktop = Desktop(hub, f"http://127.0.0.1:{port}", accepted)
    try:
        yield desktop
    finally:
        await hub.aclose()
        server.should_exit = True
        await serving
        sock.close()


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def open_desktop(browser, desktop: Desktop, token: str, errors: list[str]):
    """A fresh agent's page, signed in with `token`; console errors (CSP, script) go to errors."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{desktop.url}/desktop")
    await page.fill("#token", token)
    await page.click("#sign-in button[type=submit]")
    return page


@needs_chromium
async def test_transfer_appears_live_with_crm_card_and_accept_reaches_the_ivr(desktop, browser):
    from playwright.async_api import expect

    errors: list[str] = []
    dana = await open_desktop(browser, desktop, "tok-1", errors)
    await expect(dana.locator("#link")).to_have_text("Live")
    await expect(dana.locator("#agent-name")).to_have_text("Dana")
    await expect(dana.locator("#empty")).to_be_visible()

    package = alex_package()
    await desktop.hub.publish(package)

    card = dana.locator(f'.card[data-handoff-id="{package["handoff_id"]}"]')
    await expect(card.locator(".summary")).to_have_text(package["summary"])
    await expect(card.locator(".caller-name")).to_have_text("Alex Morgan")
    await expect(card.locator(".caller-number")).to_have_text("+15550000001")
    await expect(card.locator(".tier")).to_have_text("gold")
    await expect(card.locator(".intent")).to_contain_text("order_status 91%")
    await expect(card.locator(".intent")).to_contain_text("billing 5%")
    await expect(card.locator(".reason")).to_have_text("caller asked for a person · queue orders")
    await expect(card.locator(".sentiment")).to_have_text("concerned")
    crm = card.locator(".crm")
    await expect(crm.locator('[data-part="orders"] tbody td')).to_have_text(
        ["456712", "shipped", "UPS", "2026-03-16"])
    await expect(crm.locator('[data-part="accounts"] tbody td')).to_have_text(
        ["90000001", "$124.50"])
    await expect(crm.locator('[data-part="charges"] tbody td')).to_have_text(
        ["2026-03-10", "90000001", "Order 456712", "$89.99"])
    await expect(crm.locator('[data-part="cases"] tbody td')).to_have_text(
        ["1042", "Late delivery", "open", "2026-03-13"])
    action = card.locator(".action-list li")
    await expect(action.locator("span")).to_have_text(["ok", "lookup_order", "number=456712"])
    await expect(card.locator(".transcript summary")).to_have_text("Transcript (4 lines)")
    await expect(card.locator(".lines")).to_be_hidden()  # collapsed until the agent opens it
    await card.locator(".transcript summary").click()
    await expect(card.locator('.lines li[data-speaker="caller"] .text').first).to_have_text(
        "Where is my order 456712?")
    await expect(card.locator(".accept")).to_be_enabled()
    await expect(dana).to_have_title("(1) Agent desktop")

    # An agent who signs in after the publish still gets the transfer.
    sam = await open_desktop(browser, desktop, "tok-2", errors)
    sam_card = sam.locator(f'.card[data-handoff-id="{package["handoff_id"]}"]')
    await expect(sam_card.locator(".summary")).to_have_text(package["summary"])

    await card.locator(".accept").click()
    await expect(card.locator(".accepted")).to_have_text("Accepted by Dana")
    await expect(card.locator(".accept")).to_be_disabled()
    assert desktop.accepted == [(package["handoff_id"], "Dana")]
    await expect(sam_card.locator(".accepted")).to_have_text("Accepted by Dana")
    await expect(sam_card.locator(".accept")).to_have_text("Taken")
    await expect(sam_card.locator(".accept")).to_be_disabled()

    await desktop.hub.update(package["handoff_id"], "connected")
    await expect(card.locator(".outcome")).to_have_text("Connected")
    await expect(sam_card.locator(".outcome")).to_have_text("Connected")
    assert errors == []


@needs_chromium
async def test_an_accept_the_ivr_cannot_honour_is_shown_and_can_be_retried(desktop, browser):
    from playwright.async_api import expect

    errors: list[str] = []
    page = await open_desktop(browser, desktop, "tok-1", errors)
    await expect(page.locator("#link")).to_have_text("Live")
    await desktop.hub.publish(alex_package("h-1"))
    card = page.locator('.card[data-handoff-id="h-1"]')

    desktop.failing_accepts = 1
    await card.locator(".accept").click()
    await expect(card.locator(".refused")).to_have_text(
        "The IVR could not give you this call; try again.")
    await expect(card.locator(".accept")).to_have_text("Accept")
    await expect(card.locator(".accept")).to_be_enabled()

    await card.locator(".accept").click()
    await expect(card.locator(".accepted")).to_have_text("Accepted by Dana")
    await expect(card.locator(".refused")).to_be_hidden()
    assert desktop.accepted == [("h-1", "Dana"), ("h-1", "Dana")]
    assert errors == []


@needs_chromium
async def test_unknown_token_is_refused_with_a_message(desktop, browser):
    from playwright.async_api import expect

    errors: list[str] = []
    page = await open_desktop(browser, desktop, "not-a-token", errors)
    await expect(page.locator("#sign-in-error")).to_have_text(
        "That token is not valid. Check it with your supervisor and try again.")
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("#desk")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0


@needs_chromium
async def test_caller_words_are_shown_as_text_never_as_markup(desktop, browser):
    from playwright.async_api import expect

    errors: list[str] = []
    page = await open_desktop(browser, desktop, "tok-1", errors)
    await expect(page.locator("#link")).to_have_text("Live")

    hostile = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    package = alex_package("h-unknown-caller")
    package["customer"] = None  # an unknown caller: no CRM record
    package["intent"] = None
    package["call"]["caller_number"] = None
    package["summary"] = f"Unknown caller said: {hostile}"
    package["transcript"] = [{"turn": 1, "speaker": "caller", "text": hostile,
                              "at": package["created_at"]}]
    await desktop.hub.publish(validated_dict(package))

    card = page.locator('.card[data-handoff-id="h-unknown-caller"]')
    await expect(card.locator(".summary")).to_have_text(package["summary"])
    await expect(card.locator(".caller-name")).to_have_text("Unknown caller")
    await expect(card.locator(".caller-number")).to_have_text("number withheld")
    await expect(card.locator(".intent")).to_have_text("not recognised")
    await expect(card.locator(".crm")).to_contain_text("No CRM record")
    await card.locator(".transcript summary").click()
    await expect(card.locator(".lines .text")).to_have_text(hostile)
    assert await card.locator("script, img").count() == 0
    assert await page.evaluate("window.pwned") is None
    assert errors == []


async def test_pending_api_needs_an_agent_token(desktop):
    await desktop.hub.publish(alex_package("h-1"))
    async with httpx.AsyncClient(base_url=desktop.url) as client:
        assert (await client.get("/desktop/api/pending")).status_code == 401
        wrong = await client.get("/desktop/api/pending",
                                 headers={"Authorization": "Bearer tok-9"})
        assert wrong.status_code == 401
        ok = await client.get("/desktop/api/pending", headers={"Authorization": "Bearer tok-1"})
    assert ok.status_code == 200
    [transfer] = ok.json()["transfers"]
    assert transfer["handoff_id"] == "h-1"
    assert transfer["accepted_by"] is None
    assert transfer["outcome"] == "pending"
    assert transfer["package"]["customer"]["name"] == "Alex Morgan"


async def test_page_and_assets_are_served_with_a_strict_policy(desktop):
    async with httpx.AsyncClient(base_url=desktop.url) as client:
        page = await client.get("/desktop")
        script = await client.get("/desktop/static/desktop.js")
        missing = await client.get("/desktop/static/../desktop.py")
    assert page.status_code == 200 and "<title>Agent desktop</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text
    assert missing.status_code == 404


async def test_second_accept_of_a_transfer_is_refused():
    accepted = []

    async def on_accept(handoff_id, agent):
        accepted.append((handoff_id, agent))

    hub = DesktopHub(tokens=TOKENS, on_accept=on_accept)
    await hub.publish(alex_package("h-1"))
    await hub.accept("h-1", "Dana")
    with pytest.raises(AcceptRefused, match="Already accepted by Dana"):
        await hub.accept("h-1", "Sam")
    with pytest.raises(AcceptRefused, match="no longer on the desktop"):
        await hub.accept("h-unknown", "Sam")
    assert accepted == [("h-1", "Dana")]
    assert hub.pending()[0]["accepted_by"] == "Dana"


async def test_a_transfer_that_ended_cannot_be_accepted():
    hub = DesktopHub(tokens=TOKENS)
    await hub.publish(alex_package("h-1"))
    await hub.update("h-1", "abandoned")  # the caller hung up while waiting
    with pytest.raises(AcceptRefused, match="ended"):
        await hub.accept("h-1", "Dana")
    assert hub.pending() == []
    with pytest.raises(ValueError, match="expected one of"):
        await hub.update("h-1", "answered")


async def test_failed_on_accept_leaves_the_transfer_for_another_agent():
    calls = []

    async def on_accept(handoff_id, agent):
        calls.append(agent)
        if agent == "Dana":
            raise ConnectionError("agent leg could not be placed")

    hub = DesktopHub(tokens=TOKENS, on_accept=on_accept)
    await hub.publish(alex_package("h-1"))
    with pytest.raises(AcceptRefused, match="could not give you this call"):
        await hub.accept("h-1", "Dana")
    await hub.accept("h-1", "Sam")
    assert calls == ["Dana", "Sam"]
    assert hub.pending()[0]["accepted_by"] == "Sam"


async def test_history_drops_ended_transfers_first():
    hub = DesktopHub(tokens=TOKENS, history=2)
    await hub.publish(alex_package("h-1"))
    await hub.publish(alex_package("h-2"))
    await hub.update("h-2", "connected")
    await hub.publish(alex_package("h-3"))  # over the limit: h-2 has ended, so it goes
    assert [t["handoff_id"] for t in hub.pending()] == ["h-1", "h-3"]


def test_hub_refuses_a_configuration_without_tokens():
    with pytest.raises(ValueError, match="at least one token"):
        DesktopHub(tokens={})
    with pytest.raises(ValueError, match="non-empty strings"):
        DesktopHub(tokens={"tok-1": ""})
