"""Regenerate docs/agent-desktop.png: the agent desktop with a warm transfer on it.

    .venv/bin/python docs/make_screenshot.py [--out docs/agent-desktop.png] [--width 1280]

Serves the desktop router on a loopback port, publishes a sample call (the demo CRM's caller
asking about a late order) and a second transfer that another agent already took, signs in as
Dana in headless Debian Chromium (/usr/bin/chromium) and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from playwright.async_api import async_playwright, expect

from handoff.desktop import DesktopHub, desktop_router
from handoff.package import validated_dict

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _at(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def sample_package(now: datetime) -> dict:
    start = now - timedelta(seconds=95)
    lines = [
        ("ivr", "Thanks for calling. How can I help you today?"),
        ("caller", "Hi, I'm calling about my order, it still hasn't arrived."),
        ("ivr", "I can check that. What's the order number?"),
        ("caller", "It's 4 5 6 7 1 2."),
        ("ivr", "Order 456712 shipped with UPS and is due on March 16."),
        ("caller", "The 16th? It was promised for the 12th. I need it this week."),
        ("ivr", "I'm sorry about the delay. Would you like me to check delivery options?"),
        ("caller", "No, I'd like to talk to a person please."),
        ("ivr", "Of course. I'm connecting you with a colleague now, who will have the details."),
    ]
    return {
        "schema_version": "1",
        "handoff_id": "h-20260314-0007",
        "created_at": _at(now, -40),
        "call": {"call_id": "c-0007", "sip_call_id": "a84b4c76e66710@10.0.0.5",
                 "caller_number": "+15550000001", "called_number": "+15550001000",
                 "started_at": _at(start, 0), "menu_version": "support-1"},
        "customer": {
            "id": 1, "name": "Alex Morgan", "phone": "+15550000001", "tier": "gold",
            "language": "en",
            "accounts": [{"number": "90000001", "balance_cents": 12450}],
            "recent_orders": [
                {"number": "456712", "status": "shipped", "carrier": "UPS", "eta": "2026-03-16"},
                {"number": "455980", "status": "delivered", "carrier": "FedEx",
                 "eta": "2026-02-27"},
            ],
            "recent_charges": [
                {"account_number": "90000001", "amount_cents": 8999,
                 "description": "Order 456712", "charged_on": "2026-03-10"},
                {"account_number": "90000001", "amount_cents": 2450,
                 "description": "Order 455980", "charged_on": "2026-02-24"},
            ],
            "open_cases": [{"id": 1042, "subject": "Order 456712 later than promised",
                            "status": "open", "created_at": "2026-03-13T09:12:00+00:00"}],
        },
        "intent": {"label": "order_status", "confidence": 0.91,
                   "alternatives": [{"label": "delivery_change", "confidence": 0.05},
                                    {"label": "billing", "confidence": 0.02}]},
        "slots": {"order_number": "456712"},
        "actions": [
            {"tool": "lookup_customer", "arguments": {"phone": "+15550000001"}, "ok": True,
             "result": {"id": 1}, "error": None, "at": _at(start, 2)},
            {"tool": "lookup_order", "arguments": {"number": "456712"}, "ok": True,
             "result": {"status": "shipped"}, "error": None, "at": _at(start, 31)},
            {"tool": "delivery_options", "arguments": {"order": "456712"}, "ok": False,
             "result": None, "error": "carrier API timed out", "at": _at(start, 52)},
        ],
        "sentiment": {"trend": [0.2, 0.0, -0.3, -0.5], "latest": -0.5, "label": "concerned"},
        "escalation": {"reason": "caller asked for a person", "queue": "orders",
                       "signals": {"explicit_request": True, "sentiment": -0.5}},
        "transcript": [{"turn": i // 2 + 1, "speaker": who, "text": text,
                        "at": _at(start, 6 * i)} for i, (who, text) in enumerate(lines)],
        "summary": "Alex Morgan (gold, verified by calling number) asks about order 456712: "
                   "shipped with UPS, now due 16 March, promised for the 12th. The IVR read "
                   "the tracking status; checking delivery options failed. Wants a person; "
                   "sounds concerned.",
        "summary_source": "facts",
        "transfer": {"outcome": "pending", "agent_uri": None, "attempts": [],
                     "updated_at": _at(now, -40)},
    }


def taken_package(now: datetime) -> dict:
    """An unknown caller another agent already took."""
    return {
        "schema_version": "1", "handoff_id": "h-20260314-0006", "created_at": _at(now, -300),
        "call": {"call_id": "c-0006", "sip_call_id": None, "caller_number": "+15550000042",
                 "called_number": "+15550001000", "started_at": _at(now, -420),
                 "menu_version": "support-1"},
        "customer": None,
        "intent": {"label": "billing_dispute", "confidence": 0.78, "alternatives": []},
        "slots": {}, "actions": [],
        "sentiment": {"trend": [-0.2, -0.6], "latest": -0.6, "label": "frustrated"},
        "escalation": {"reason": "billing dispute", "queue": "billing", "signals": {}},
        "transcript": [{"turn": 1, "speaker": "caller",
                        "text": "I was charged twice for the same thing.",
                        "at": _at(now, -400)}],
        "summary": "Unidentified caller disputes a double charge; no account found for "
                   "+15550000042. Sounds frustrated.",
        "summary_source": "facts",
        "transfer": {"outcome": "pending", "agent_uri": None, "attempts": [],
                     "updated_at": _at(now, -300)},
    }


async def make_screenshot(out: Path, width: int, package_path: Path | None = None) -> None:
    hub = DesktopHub(tokens={"tok-1": "Dana", "tok-2": "Sam"})
    app = FastAPI()
    app.include_router(desktop_router(hub))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/desktop"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="screenshot-server")
    try:
        while not server.started:
            if serving.done():
                raise RuntimeError("uvicorn stopped before it served the desktop")
            await asyncio.sleep(0.01)
        now = datetime.now(UTC)
        await hub.publish(validated_dict(taken_package(now)))
        await hub.accept("h-20260314-0006", "Sam")
        await hub.update("h-20260314-0006", "connected")
        shown = sample_package(now)
        if package_path is not None:  # a real package (the demo call's), shown as it arrived
            shown = json.loads(Path(package_path).read_text())
            shown.pop("deliveries", None)
            shown["transfer"].update(outcome="pending", attempts=[])
        await hub.publish(validated_dict(shown))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": width, "height": 800})
            await page.goto(url)
            await page.fill("#token", "tok-1")
            await page.click("#sign-in button[type=submit]")
            card = page.locator(f'.card[data-handoff-id="{shown["handoff_id"]}"]')
            await expect(card).to_be_visible()
            await card.locator(".transcript summary").click()
            await page.screenshot(path=str(out), full_page=True)
            await browser.close()
    finally:
        await hub.aclose()
        server.should_exit = True
        await serving
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "agent-desktop.png")
    parser.add_argument("--package", type=Path, help="a handoff package JSON to show (e.g. "
                        "out/demo_handoff.json from `ivr demo`) instead of the built-in sample")
    parser.add_argument("--width", type=int, default=1280,
                        help="browser width in CSS pixels (try 1024 or 760 to check the layout)")
    args = parser.parse_args()
    asyncio.run(make_screenshot(args.out, args.width, args.package))
    print(args.out)


if __name__ == "__main__":
    main()
