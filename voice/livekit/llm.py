"""The turn manager as a LiveKit Agents LLM.

LiveKit's ``AgentSession`` asks its LLM for a reply to the chat context after each user turn.
This adapter answers with the IVR's ``TurnHandler`` (normally the turn manager: intent, flow,
slots, read-back, CRM tools, escalation), so a LiveKit agent speaks exactly what a SIP caller
of ``ivr serve`` would hear. Nothing here calls a language model unless the turn manager itself
is configured to (``call.llm_phrasing`` / ``call.llm_answers``).

The turn manager holds the call's state, so one adapter serves one call, and each user message is
handled once (a second request for the same message, e.g. after a tool round, answers nothing).
What must happen after a turn's reply has been heard (hang up, transfer to a queue) is handed
to ``on_reply``; the agent (``voice.livekit.agent``) acts on it once the speech has played out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from livekit.agents import llm, utils
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)

from intents.dialogue.turns import CallerTurn, CallInfo, Expect, Reply, TurnHandler


class TurnManagerLLM(llm.LLM):
    """One call's ``TurnHandler`` behind LiveKit's LLM interface."""

    def __init__(self, handler: TurnHandler, call: CallInfo,
                 on_reply: Callable[[Reply], Any] | None = None) -> None:
        super().__init__()
        self.handler = handler
        self.call = call
        self.on_reply = on_reply
        self.turns = 0
        self.expecting: tuple[Expect, int | None] = (Expect.ANYTHING, None)  # for end of turn
        self._started = False
        self._handled: set[str] = set()  # chat message ids already answered
        self._lock = asyncio.Lock()  # the turn manager takes one turn at a time

    @property
    def model(self) -> str:
        return type(self.handler).__name__

    @property
    def provider(self) -> str:
        return "voice-ivr"

    async def start(self) -> Reply | None:
        """Start the call once; the greeting, if the handler has one."""
        async with self._lock:
            return await self._start()

    async def _start(self) -> Reply | None:
        if self._started:
            return None
        self._started = True
        return self._heard(await self.handler.start_call(self.call))

    async def turn(self, text: str) -> Reply | None:
        """Answer one caller turn."""
        async with self._lock:
            await self._start()
            self.turns += 1
            reply = self._heard(await self.handler.handle_turn(
                CallerTurn(call_id=self.call.call_id, index=self.turns, text=text)))
        if reply is not None and self.on_reply is not None:
            self.on_reply(reply)  # spoken through the session's LLM node: the agent follows up
        return reply

    async def dtmf(self, digits: str) -> Reply | None:
        """Answer keyed digits (LiveKit SIP delivers them as ``sip_dtmf_received``)."""
        async with self._lock:
            await self._start()
            return self._heard(await self.handler.handle_dtmf(digits))

    def _heard(self, reply: Reply | None) -> Reply | None:
        """Keep what the flow now expects the caller to say (a reply of None changes nothing)."""
        if reply is not None:
            self.expecting = (reply.expect, reply.expect_length)
        return reply

    async def end(self, reason: str) -> None:
        await self.handler.end_call(reason)

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[llm.Tool] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
             parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
             tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
             extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN) -> llm.LLMStream:
        return _TurnStream(self, chat_ctx=chat_ctx, tools=tools or [],
                           conn_options=conn_options)

    def unanswered(self, chat_ctx: llm.ChatContext) -> tuple[str, str] | None:
        """(id, text) of the caller's latest message, if it ends the context and is new."""
        items = chat_ctx.items
        last = items[-1] if items else None
        if not isinstance(last, llm.ChatMessage) or last.role != "user" or \
                last.id in self._handled:
            return None
        self._handled.add(last.id)
        return last.id, (last.text_content or "").strip()


class _TurnStream(llm.LLMStream):
    async def _run(self) -> None:
        adapter: TurnManagerLLM = self._llm  # type: ignore[assignment]
        message = adapter.unanswered(self._chat_ctx)
        if message is None:
            return
        request_id, text = message
        reply = await adapter.turn(text) if text else None
        if reply is None:
            return
        if reply.text is not None:
            self._send(request_id, reply.text)
            return
        sent = False
        try:
            async for piece in reply.stream:
                if piece:
                    self._send(request_id, piece)
                    sent = True
        except Exception:  # noqa: BLE001 - a failed stream is spoken as its fallback
            if sent or not reply.fallback_text:
                raise
            self._send(request_id, reply.fallback_text)

    def _send(self, request_id: str, text: str) -> None:
        self._event_ch.send_nowait(llm.ChatChunk(
            id=request_id or utils.shortuuid(),
            delta=llm.ChoiceDelta(role="assistant", content=text)))
