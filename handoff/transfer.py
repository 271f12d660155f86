"""Warm transfer: hold the caller, ring agents in order, brief the one who answers, connect.

Written against two protocols, so it knows no transport:

- ``AgentLine`` dials agents and joins legs. The SIP transport implements it (PJSIP: INVITE with
  the handoff id in ``X-IVR-Handoff-Id`` and ``User-to-User``; bridge on the conference bridge,
  or REFER with Replaces so the IVR leaves the media path).
- ``TransferringCall`` is the caller's call as the call core offers it: hold and unhold, say,
  synthesize, the dialogue state and transcript, and an event for the caller hanging up.

The call core starts a transfer when a reply that carries ``transfer_to`` has been heard (an
event, not a poll). The package is published first (``HandoffPublisher``), the caller hears hold
music, agents are rung; no answer, busy or a rejection moves to the next; when none is left the
caller is offered a callback (``handoff.callback``). A caller who hangs up at any point cancels
the agent leg and the package is marked abandoned. The outcome and the after-call record are
written whatever happens (``finish``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from loguru import logger

from handoff.callback import CallbackOffer
from handoff.package import TranscriptLine
from handoff.publish import CallFacts, HandoffPublisher
from intents.dialogue.state import CallState

FAILED_RESULTS = ("no-answer", "busy", "rejected", "failed")


class AgentLeg(Protocol):
    """One outbound call to an agent."""

    ended: asyncio.Event
    rate: int

    async def wait_answer(self, timeout_s: float, caller_gone: asyncio.Event) -> str:
        """'answered' once media flows; else 'busy', 'no-answer', 'rejected' or 'abandoned'
        (the caller left while it rang: the leg is cancelled)."""

    async def play(self, pcm: bytes) -> None:
        """Play ``pcm`` to the agent only; returns when played or when either side is gone."""

    async def hangup(self) -> None:
        """CANCEL while ringing, BYE once up."""


class AgentLine(Protocol):
    """What a transport offers warm transfers."""

    async def dial(self, uri: str, headers: dict[str, str]) -> AgentLeg:
        """Ring an agent; raises RuntimeError when it cannot be dialled at all."""

    async def bridge(self, caller: Any, agent: AgentLeg) -> None:
        """Join the caller's line and the agent's leg; the IVR stops hearing both."""

    async def refer(self, caller: Any, agent: AgentLeg, timeout_s: float) -> bool:
        """Ask the caller's side to replace us with the agent; True once it reports success."""


class TransferringCall(Protocol):
    """The caller's call, as the call core offers it to a transfer."""

    facts: CallFacts
    line: Any  # the transport's CallLine, handed back to AgentLine.bridge/refer
    state: CallState
    transcript: list[TranscriptLine]
    caller_gone: asyncio.Event
    context: dict[str, Any]  # the call record's context

    def hold(self) -> None: ...
    def unhold(self) -> None: ...
    async def say(self, text: str, *, end_call: bool = False) -> None: ...
    async def wait_quiet(self) -> None: ...
    async def synthesize(self, text: str, rate: int) -> bytes: ...
    def set_end_reason(self, reason: str) -> None: ...
    def intercept(self, answer: Any) -> None: ...
    async def hangup(self) -> None: ...


class WarmTransfer:
    """One caller's transfer, from "please hold" to the after-call record."""

    def __init__(self, call: TransferringCall, line: AgentLine, publisher: HandoffPublisher,
                 agents: list[str], *, mode: str = "bridge", ring_timeout_s: float = 20.0
                 ) -> None:
        self.call = call
        self.line = line
        self.publisher = publisher
        self.agents = list(agents)
        self.mode = mode
        self.ring_timeout_s = ring_timeout_s
        self.handoff_id: str | None = None
        self.summary = ""
        self.briefing = ""
        self.outcome = "pending"
        self.agent_leg: AgentLeg | None = None
        self.next_agent = 0
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        call = self.call
        if call.caller_gone.is_set():
            return
        published = await self.publisher.publish(call.state, list(call.transcript), call.facts)
        self.handoff_id, self.summary = published.handoff_id, published.summary
        self.briefing = published.briefing
        call.context["handoff_id"] = self.handoff_id
        await self._try_agents()

    async def _try_agents(self) -> None:
        call = self.call
        call.hold()
        result = "failed"
        while self.next_agent < len(self.agents):
            uri = self.agents[self.next_agent]
            self.next_agent += 1
            result = await self._ring(uri)
            if call.caller_gone.is_set():
                await self._set_outcome("abandoned")
                return
            if result == "connected":
                return
            await self._set_outcome("pending", uri, result)
        await self._set_outcome(result if self.agents else "failed")
        await self._offer_callback()

    async def _ring(self, uri: str) -> str:
        call = self.call
        headers = {"X-IVR-Handoff-Id": self.handoff_id,
                   "User-to-User": f"{self.handoff_id.encode().hex()};encoding=hex"}
        logger.info(f"call {call.facts.call_id}: ringing agent {uri}")
        try:
            leg = await self.line.dial(uri, headers)
        except RuntimeError as error:
            logger.warning(f"call {call.facts.call_id}: agent {uri}: {error}")
            return "failed"
        self.agent_leg = leg
        result = await leg.wait_answer(self.ring_timeout_s, call.caller_gone)
        if result != "answered":
            logger.info(f"call {call.facts.call_id}: agent {uri}: {result}")
            return result
        return await self._brief_and_connect(uri, leg)

    async def _brief_and_connect(self, uri: str, leg: AgentLeg) -> str:
        call = self.call
        briefing = f"Warm transfer from the voice assistant. {self.briefing} Connecting you now."
        await leg.play(await call.synthesize(briefing, leg.rate))
        if call.caller_gone.is_set():
            await leg.hangup()
            return "abandoned"
        if leg.ended.is_set():
            return "rejected"  # the agent hung up during the briefing
        await asyncio.sleep(0.3)  # the agent's jitter buffer plays the briefing's tail
        referred = self.mode == "refer" and await self.line.refer(call.line, leg, 10.0)
        if not referred:
            await self.line.bridge(call.line, leg)
        call.set_end_reason("transferred")
        await self._set_outcome("connected", uri, "connected")
        logger.info(f"call {call.facts.call_id}: connected to agent {uri} "
                    f"({'REFER: the IVR has left the media path' if referred else 'bridged'})")
        if referred:
            await call.hangup()  # RFC 5589: the transferor ends its dialog
        else:
            self._keep(asyncio.create_task(self._follow(leg),
                                           name=f"call-{call.facts.call_id}-agent"))
        return "connected"

    async def _follow(self, leg: AgentLeg) -> None:
        """Once connected, whoever hangs up first ends the other leg too."""
        call = self.call
        gone = [asyncio.create_task(leg.ended.wait()),
                asyncio.create_task(call.caller_gone.wait())]
        await asyncio.wait(gone, return_when=asyncio.FIRST_COMPLETED)
        for task in gone:
            task.cancel()
        if leg.ended.is_set() and not call.caller_gone.is_set():
            logger.info(f"call {call.facts.call_id}: the agent hung up; ending the caller's leg")
            call.set_end_reason("transferred-agent-hangup")
            await call.hangup()
        elif not leg.ended.is_set():
            await leg.hangup()

    # -- no agent ----------------------------------------------------------------------------------

    async def _offer_callback(self) -> None:
        call = self.call
        call.unhold()
        offer = CallbackOffer(self.call.facts.caller_number, self._book_callback, self._retry)
        call.intercept(offer)
        await call.say(offer.question)

    async def _book_callback(self) -> bool:
        number = self.call.facts.caller_number
        try:
            await self.publisher.schedule_callback(number, self.call.state.customer_id)
        except Exception as error:  # noqa: BLE001
            logger.error(f"call {self.call.facts.call_id}: callback not booked: {error}")
            return False
        await self._set_outcome("callback")
        return True

    def _retry(self, restart_queue: bool) -> None:
        if restart_queue and self.next_agent >= len(self.agents):
            self.next_agent = 0
        self._keep(asyncio.create_task(self._try_again(),
                                       name=f"call-{self.call.facts.call_id}-retry"))

    async def _try_again(self) -> None:
        await self.call.wait_quiet()
        await self._set_outcome("pending")
        await self._try_agents()

    # -- records -----------------------------------------------------------------------------------

    def _keep(self, task: asyncio.Task) -> None:
        """The event loop holds tasks weakly: keep a reference until each is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_outcome(self, outcome: str, agent_uri: str | None = None,
                           attempt: str | None = None) -> None:
        self.outcome = outcome
        await self.publisher.set_outcome(self.handoff_id, outcome, agent_uri, attempt)

    async def finish(self, end_reason: str | None) -> None:
        """The caller's call is over: settle the outcome and write the after-call record."""
        if self.handoff_id is None:
            return
        if self.agent_leg is not None and not self.agent_leg.ended.is_set():
            await self.agent_leg.hangup()
        caller_left = end_reason in ("caller-hangup", "cancelled")
        if self.outcome == "pending" or (self.outcome in FAILED_RESULTS and caller_left):
            await self._set_outcome("abandoned")
        after = await self.publisher.after_call(
            call_id=self.call.facts.call_id, handoff_id=self.handoff_id, outcome=self.outcome,
            summary=self.summary, state=self.call.state)
        if after is not None:
            self.call.context["after_call"] = after
        self.call.context["transfer_outcome"] = self.outcome
        for task in list(self._tasks):
            task.cancel()
