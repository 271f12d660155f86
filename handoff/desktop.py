"""The agent desktop: a web page where agents see warm transfers live and accept one.

An agent signs in with a token, the page opens a WebSocket, and every handoff package the IVR
publishes appears on every signed-in agent's page as a card (summary, caller, intent, CRM
record, actions, transcript). The first agent to press Accept takes the transfer; the others
see it as taken. Transfer outcomes (connected, no-answer, abandoned ...) follow live.

The hub holds the state and the connections; :func:`desktop_router` is the HTTP face
(``GET /desktop``, ``GET /desktop/ws``, ``GET /desktop/api/pending``). The page itself is
plain HTML, CSS and JavaScript under ``handoff/static/``: no framework, no external asset,
and package text is rendered with ``textContent`` only because callers' words end up in it.

WebSocket messages, server to page (JSON):

- ``{"type": "hello", "agent": name}`` once, after sign-in;
- ``{"type": "transfer", "transfer": state}`` for a new transfer, and once per held transfer
  on connect (oldest first);
- ``{"type": "state", "transfer": state}`` when a transfer is accepted or its outcome changes;
- ``{"type": "refused", "handoff_id": id, "reason": text}`` to the agent whose accept failed.

where ``state`` is ``{"handoff_id", "accepted_by", "outcome", "disposition", "package"}``
(``package`` only in ``transfer`` messages). Page to server: ``{"type": "accept", "handoff_id":
id}``, and once the agent has the caller, their one-click verdict on the escalation:
``{"type": "disposition", "handoff_id": id, "disposition": "needed-human" |
"could-have-been-served"}`` (stored with the handoff through ``on_disposition``).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter, Header, HTTPException, WebSocket
from fastapi.responses import HTMLResponse, Response

log = logging.getLogger(__name__)

#: Transfer outcomes of the handoff package (``transfer.outcome``).
OUTCOMES = ("pending", "connected", "no-answer", "busy", "rejected", "abandoned", "callback",
            "failed")
#: Outcomes after which no agent can take the call any more. After no-answer, busy or rejected
#: the caller may still be offered the next agent, so those stay open.
CLOSED_OUTCOMES = frozenset({"connected", "abandoned", "callback", "failed"})

#: WebSocket close code for an unknown token (4000-4999 are for applications; 4401 echoes 401).
CLOSE_UNKNOWN_TOKEN = 4401
CLOSE_GOING_AWAY = 1001

AcceptCallback = Callable[[str, str], Awaitable[None]]
DispositionCallback = Callable[[str, str, str], Awaitable[None]]
#: An agent's verdict after a transfer (``handoff.store.DISPOSITIONS``).
DISPOSITIONS = ("needed-human", "could-have-been-served")


class AcceptRefused(Exception):
    """An accept that cannot be honoured; ``reason`` is shown to the agent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Transfer:
    package: dict[str, Any]
    accepted_by: str | None = None
    disposition: str | None = None

    @property
    def handoff_id(self) -> str:
        return self.package["handoff_id"]

    @property
    def outcome(self) -> str:
        return (self.package.get("transfer") or {}).get("outcome") or "pending"

    @property
    def closed(self) -> bool:
        return self.outcome in CLOSED_OUTCOMES

    def state(self, with_package: bool) -> dict[str, Any]:
        state: dict[str, Any] = {"handoff_id": self.handoff_id, "accepted_by": self.accepted_by,
                                 "outcome": self.outcome, "disposition": self.disposition}
        if with_package:
            state["package"] = self.package
        return state


@dataclass(eq=False)
class _Agent:
    """One signed-in page. Messages go through a queue so that one writer task sends them in
    order (a snapshot is never overtaken by a later update) and a stalled page cannot hold up
    a publish."""

    name: str
    outbox: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(256))


class DesktopHub:
    """Warm transfers on their way to agents, and the agents' pages that show them.

    All methods run on the event loop that serves the router.

    Args:
        tokens: agent sign-in tokens, each mapped to the agent's display name. At least one;
            a token is a secret, so give each agent their own and keep them out of logs.
        on_accept: awaited as ``on_accept(handoff_id, agent_name)`` when an agent accepts a
            transfer, once every page shows it taken; if it raises, the accept is undone (the
            transfer is free again for any agent) and the agent sees that it failed. ``None``
            when nothing needs to happen (a desktop used only for context, tests).
        history: how many transfers the hub keeps to show agents who connect later. Closed
            ones (connected, abandoned ...) are dropped first; a larger number shows more of
            the day on a reload and sends more on every connect.
        on_disposition: awaited as ``on_disposition(handoff_id, agent, disposition)`` when an
            agent gives their verdict after a transfer (the IVR stores it with the handoff);
            if it raises, the verdict is not shown as recorded and the agent is told.
    """

    def __init__(self, tokens: Mapping[str, str], on_accept: AcceptCallback | None = None,
                 history: int = 50,
                 on_disposition: DispositionCallback | None = None) -> None:
        if not tokens:
            raise ValueError("DesktopHub(tokens=...): give at least one token -> agent name, "
                             "e.g. {'a-long-random-token': 'Dana'}")
        for token, name in tokens.items():
            if not isinstance(token, str) or not token or not isinstance(name, str) or not name:
                raise ValueError("DesktopHub(tokens=...): tokens and agent names must be "
                                 "non-empty strings")
        if history < 1:
            raise ValueError(f"DesktopHub(history={history}): keep at least 1 transfer")
        self._tokens = dict(tokens)
        self._on_accept = on_accept
        self._on_disposition = on_disposition
        self._history = history
        self._transfers: dict[str, _Transfer] = {}  # insertion order = publish order
        self._agents: set[_Agent] = set()

    # -- the IVR side ---------------------------------------------------------------------

    async def publish(self, package: dict[str, Any]) -> None:
        """Show a handoff package to every signed-in agent, and to those who sign in later.

        Publishing a package whose ``handoff_id`` is already held replaces it (a refreshed
        package) and keeps who accepted it.
        """
        handoff_id = package.get("handoff_id") if isinstance(package, dict) else None
        if not isinstance(handoff_id, str) or not handoff_id:
            raise ValueError("publish(package): a handoff package with a 'handoff_id' string "
                             "is required")
        # A JSON round trip: our own copy (the caller may keep mutating theirs) and an early
        # error for anything the page could not receive.
        held = json.loads(json.dumps(package))
        previous = self._transfers.pop(handoff_id, None)
        transfer = _Transfer(held, previous.accepted_by if previous else None,
                             previous.disposition if previous else None)
        self._transfers[handoff_id] = transfer
        self._trim()
        self._broadcast({"type": "transfer", "transfer": transfer.state(with_package=True)})

    async def update(self, handoff_id: str, outcome: str) -> None:
        """Record a transfer outcome (connected, no-answer, abandoned ...) and show it."""
        if outcome not in OUTCOMES:
            raise ValueError(f"update(outcome={outcome!r}): expected one of {', '.join(OUTCOMES)}")
        transfer = self._transfers.get(handoff_id)
        if transfer is None:
            raise KeyError(f"update: no transfer {handoff_id!r} on the desktop (never published,"
                           " or dropped from its history)")
        record = transfer.package.setdefault("transfer", {})
        record["outcome"] = outcome
        record["updated_at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._broadcast({"type": "state", "transfer": transfer.state(with_package=False)})

    def holds(self, handoff_id: str) -> bool:
        """Whether the hub holds this transfer (published, not yet dropped from history)."""
        return handoff_id in self._transfers

    def pending(self) -> list[dict[str, Any]]:
        """Transfers no agent can be connected to yet or still (outcome not closed), oldest
        first, each as ``{"handoff_id", "accepted_by", "outcome", "package"}``."""
        return [copy.deepcopy(t.state(with_package=True))
                for t in self._transfers.values() if not t.closed]

    async def aclose(self) -> None:
        """Close every agent's connection (the pages reconnect to the next server)."""
        for agent in list(self._agents):
            self._drop(agent)

    # -- the agents' side -----------------------------------------------------------------

    def agent_for(self, token: str | None) -> str | None:
        """The agent name for a sign-in token, or ``None``. Compared in constant time."""
        if not token:
            return None
        found = None
        for known, name in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found

    async def accept(self, handoff_id: str, agent: str) -> None:
        """Give a transfer to an agent; raises :class:`AcceptRefused` if it cannot be theirs."""
        transfer = self._transfers.get(handoff_id)
        if transfer is None:
            raise AcceptRefused("This transfer is no longer on the desktop.")
        if transfer.accepted_by is not None:
            raise AcceptRefused(f"Already accepted by {transfer.accepted_by}.")
        if transfer.closed:
            raise AcceptRefused(f"This transfer has ended ({transfer.outcome}).")
        # Taken, and shown as taken, before the callback is awaited: placing the agent's call
        # can take seconds, and a second accept meanwhile must be refused.
        transfer.accepted_by = agent
        self._broadcast({"type": "state", "transfer": transfer.state(with_package=False)})
        if self._on_accept is None:
            return
        try:
            await self._on_accept(handoff_id, agent)
        except Exception as exc:  # the callback is the IVR's; the agent must still hear
            log.exception("on_accept(%s, %s) failed", handoff_id, agent)
            transfer.accepted_by = None
            self._broadcast({"type": "state", "transfer": transfer.state(with_package=False)})
            raise AcceptRefused("The IVR could not give you this call; try again.") from exc

    async def dispose(self, handoff_id: str, agent: str, disposition: str) -> None:
        """An agent's verdict on a transfer they had: was a human needed? Raises
        :class:`AcceptRefused` when it cannot be theirs to give."""
        if disposition not in DISPOSITIONS:
            raise AcceptRefused("Unknown disposition.")
        transfer = self._transfers.get(handoff_id)
        if transfer is None:
            raise AcceptRefused("This transfer is no longer on the desktop.")
        if transfer.accepted_by not in (None, agent):
            raise AcceptRefused(f"{transfer.accepted_by} took this call; it is theirs to rate.")
        if transfer.accepted_by is None and transfer.outcome != "connected":
            raise AcceptRefused("Rate a transfer once you have the caller.")
        if self._on_disposition is not None:
            try:
                await self._on_disposition(handoff_id, agent, disposition)
            except Exception as exc:  # the callback is the IVR's; the agent must still hear
                log.exception("on_disposition(%s, %s) failed", handoff_id, agent)
                raise AcceptRefused("Your answer could not be saved; try again.") from exc
        transfer.disposition = disposition
        self._broadcast({"type": "state", "transfer": transfer.state(with_package=False)})

    async def serve(self, websocket: WebSocket) -> None:
        """Run one agent's page connection until it closes."""
        await websocket.accept()
        name = self.agent_for(websocket.query_params.get("token"))
        if name is None:
            await websocket.close(CLOSE_UNKNOWN_TOKEN, "Unknown agent token")
            return
        agent = _Agent(name)
        self._send(agent, {"type": "hello", "agent": name})
        for transfer in self._transfers.values():
            self._send(agent, {"type": "transfer", "transfer": transfer.state(with_package=True)})
        self._agents.add(agent)
        writer = asyncio.create_task(self._write(agent, websocket), name=f"desktop-writer-{name}")
        try:
            while (message := await websocket.receive())["type"] != "websocket.disconnect":
                await self._handle(agent, message.get("text") or "")
        finally:
            self._agents.discard(agent)
            writer.cancel()
            # A writer that failed (the page went away mid-send) has nothing more to say.
            await asyncio.gather(writer, return_exceptions=True)

    async def _handle(self, agent: _Agent, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or message.get("type") not in ("accept", "disposition") \
                or not isinstance(message.get("handoff_id"), str):
            self._send(agent, {"type": "refused", "handoff_id": None,
                               "reason": "The desktop did not understand that request."})
            return
        handoff_id = message["handoff_id"]
        try:
            if message["type"] == "accept":
                await self.accept(handoff_id, agent.name)
            else:
                await self.dispose(handoff_id, agent.name, str(message.get("disposition")))
        except AcceptRefused as refused:
            self._send(agent, {"type": "refused", "handoff_id": handoff_id,
                               "reason": refused.reason})

    async def _write(self, agent: _Agent, websocket: WebSocket) -> None:
        while (text := await agent.outbox.get()) is not None:
            await websocket.send_text(text)
        await websocket.close(CLOSE_GOING_AWAY, "Desktop closing")

    def _broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for agent in list(self._agents):
            self._send(agent, text)

    def _send(self, agent: _Agent, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        try:
            agent.outbox.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("desktop: agent %s is not reading; dropping their connection", agent.name)
            self._drop(agent)

    def _drop(self, agent: _Agent) -> None:
        """Stop sending to an agent and have their writer close the socket (the page
        reconnects and gets a fresh snapshot)."""
        self._agents.discard(agent)
        while not agent.outbox.empty():
            agent.outbox.get_nowait()
        agent.outbox.put_nowait(None)

    def _trim(self) -> None:
        while len(self._transfers) > self._history:
            oldest_closed = next((k for k, t in self._transfers.items() if t.closed), None)
            del self._transfers[oldest_closed or next(iter(self._transfers))]


def _static(name: str) -> bytes:
    return resources.files("handoff").joinpath("static", name).read_bytes()


# The page loads only its own files, talks only to its own origin, and cannot be framed.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def desktop_router(hub: DesktopHub) -> APIRouter:
    """The agent desktop's routes: the page, its two assets, the WebSocket and the pending API."""
    router = APIRouter()
    page = _static("desktop.html")
    assets = {"desktop.css": ("text/css; charset=utf-8", _static("desktop.css")),
              "desktop.js": ("text/javascript; charset=utf-8", _static("desktop.js"))}
    security = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"}

    @router.get("/desktop", response_class=HTMLResponse, include_in_schema=False)
    async def desktop_page() -> Response:
        return HTMLResponse(page, headers={**security, "Cache-Control": "no-cache"})

    @router.get("/desktop/static/{name}", include_in_schema=False)
    async def desktop_asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "no such desktop asset")
        media_type, body = assets[name]
        return Response(body, media_type=media_type,
                        headers={**security, "Cache-Control": "no-cache"})

    @router.websocket("/desktop/ws")
    async def desktop_socket(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    @router.get("/desktop/api/pending")
    async def desktop_pending(authorization: str | None = Header(default=None)
                              ) -> dict[str, Any]:
        """Transfers still open, oldest first (``Authorization: Bearer <agent token>``)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or hub.agent_for(token.strip()) is None:
            raise HTTPException(401, "an agent token is required: Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        return {"transfers": hub.pending()}

    return router
