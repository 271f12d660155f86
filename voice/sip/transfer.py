"""Warm transfer over SIP: hold the caller, ring an agent, brief them, connect the two.

When the turn manager routes a caller to a human (``state.route``), the call's "please hold"
reply finishes, the handoff package is built from the call state and the CRM, stored, shown on the
agent desktop and pushed to the webhooks, and the caller hears hold music. Agents are rung in
order with the handoff id in ``X-IVR-Handoff-Id`` and ``User-to-User``; the one who answers hears
a spoken briefing (the summary) that the caller does not, then the legs are joined: bridged on
the IVR's conference bridge, or by REFER with Replaces so the IVR leaves the media path.
No answer, busy or a rejection moves on to the next agent; when none is left the caller is told
and offered a callback (written to the CRM) or to keep waiting. A caller who hangs up during any
of it cancels the agent leg and the package is marked abandoned. The outcome, the attempts, the
disposition and the summary are written whatever happens.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from handoff.aftercall import disposition_for, write_after_call
from handoff.package import TranscriptLine, build_package
from voice.sip.endpoint import CallLeg, LegEventKind
from voice.sip.players import LoopPlayer, OncePlayer, hold_music
from voice.turns import CallerTurn, CallInfo, Reply, TurnHandler

if TYPE_CHECKING:
    from handoff.crm import CrmStore
    from handoff.desktop import DesktopHub
    from handoff.settings import HandoffSettings
    from handoff.store import HandoffStore
    from handoff.webhooks import WebhookPusher
    from voice.sip.endpoint import SipEngine
    from voice.sip.inbound import InboundCall

TRANSFER_MESSAGE_WAIT_S = 20.0  # the "please hold" reply must have finished by then
OFFER = ("I'm sorry, none of our colleagues could take your call just now. Would you like us to "
         "call you back, or would you rather keep waiting? You can also press 1 for a callback, "
         "or 2 to keep waiting.")
CALLBACK_DONE = ("Done: a colleague will call you back at this number within the next business "
                 "hours. Thank you for calling. Goodbye.")
CALLBACK_FAILED = ("I'm sorry, I couldn't book the callback: our system didn't answer. Please "
                   "call again later. Goodbye.")
NO_CALLER_ID = ("I can't book a callback without your number. I'll keep trying a colleague "
                "for you.")
_WANTS_CALLBACK = re.compile(r"\b(call ?back|call me back|ring me back|callback|call me)\b")
_WANTS_WAIT = re.compile(r"\b(wait|hold|keep|stay|try again|another|next)\b")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _failure(code: int) -> str:
    """An agent leg's final status as a transfer attempt result."""
    if code in (486, 600):
        return "busy"
    if code in (408, 480, 487, 0):
        return "no-answer"
    return "rejected"


class InterceptingHandler:
    """The call's turn handler, with a place for the transfer to take the next turn (the
    callback-or-wait question) before the turn manager does."""

    def __init__(self, inner: TurnHandler) -> None:
        self.inner = inner
        self.intercept: Callable[[str], Awaitable[Reply | None]] | None = None

    @property
    def state(self):
        return getattr(self.inner, "state", None)

    async def start_call(self, call: CallInfo) -> Reply | None:
        return await self.inner.start_call(call)

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        if self.intercept is not None:
            reply = await self.intercept(turn.text)
            if reply is not None:
                return reply
        return await self.inner.handle_turn(turn)

    async def handle_dtmf(self, digits: str) -> Reply | None:
        if self.intercept is not None and digits in ("1", "2"):
            return await self.intercept("callback" if digits == "1" else "wait")
        return await self.inner.handle_dtmf(digits)

    async def end_call(self, reason: str) -> None:
        await self.inner.end_call(reason)


class TransferService:
    """The process-wide side of warm transfers: agents, package store, desktop, webhooks."""

    def __init__(self, settings: HandoffSettings, engine: SipEngine, store: HandoffStore,
                 crm: CrmStore, *, hub: DesktopHub | None = None,
                 pusher: WebhookPusher | None = None, summarizer=None) -> None:
        self.settings = settings
        self.summarizer = summarizer  # handoff.summary.LlmSummarizer, when an LLM URL is set
        self.engine = engine
        self.store = store
        self.crm = crm
        self.hub = hub
        self.pusher = pusher
        self.transfers: dict[str, WarmTransfer] = {}  # call id -> its transfer

    async def start(self, call: InboundCall) -> None:
        transfer = WarmTransfer(self, call)
        self.transfers[call.call_id] = transfer
        await transfer.run()

    async def call_ended(self, call: InboundCall) -> None:
        """After-call work: final outcome, disposition and summary into the CRM case."""
        transfer = self.transfers.pop(call.call_id, None)
        if transfer is None or transfer.handoff_id is None:
            return
        await transfer.finish()


class WarmTransfer:
    def __init__(self, service: TransferService, call: InboundCall) -> None:
        self.service = service
        self.call = call
        self.handoff_id: str | None = None
        self.summary = ""
        self.outcome = "pending"
        self.agent_leg: CallLeg | None = None
        self.next_agent = 0
        self._tasks: set[asyncio.Task] = set()  # background work of this transfer, kept alive

    # -- the transfer ------------------------------------------------------------------------------

    async def run(self) -> None:
        call, session = self.call, self.call.session
        deadline = time.monotonic() + TRANSFER_MESSAGE_WAIT_S
        while (session.bot_speaking or session.replies_in_flight) and \
                time.monotonic() < deadline and not call.leg.disconnected.is_set():
            await asyncio.sleep(0.05)
        if call.leg.disconnected.is_set():
            return
        await self._publish()
        await self._try_agents()

    async def _publish(self) -> None:
        svc, call = self.service, self.call
        state = call.handler.state
        package = await asyncio.to_thread(
            build_package, state, svc.crm, self._transcript(),
            sip_call_id=call.record.sip_call_id, called_number=call.record.called_number,
            started_at=_iso(call.record.started_at))
        if svc.summarizer is not None:  # a capable LLM may rewrite it, from the same facts only
            rewrite = await svc.summarizer.apply(package)
            logger.info(f"call {call.call_id}: LLM summary "
                        f"{'accepted' if rewrite.accepted else 'rejected'}")
        data = package.to_dict()
        self.handoff_id, self.summary = data["handoff_id"], data["summary"]
        call.record.context["handoff_id"] = self.handoff_id
        await asyncio.to_thread(svc.store.save, package)
        logger.info(f"call {call.call_id}: warm transfer {self.handoff_id} to "
                    f"{state.route!r} ({state.escalation_reason})")
        if svc.hub is not None:
            await svc.hub.publish(data)
        if svc.pusher is not None and svc.pusher.urls:
            self._keep(svc.pusher.push_in_background(data))

    async def _try_agents(self) -> None:
        call, svc = self.call, self.service
        port = call.leg.port
        call.hold(LoopPlayer(hold_music(port.rate), port.frame_bytes))
        agents = svc.settings.agent_uris
        result = "failed"
        while self.next_agent < len(agents):
            uri = agents[self.next_agent]
            self.next_agent += 1
            result = await self._ring(uri)
            if call.leg.disconnected.is_set():
                await self._set_outcome("abandoned")
                return
            if result == "connected":
                return
            await self._set_outcome("pending", uri, result)
        await self._set_outcome(result if agents else "failed")
        await self._offer_callback()

    async def _ring(self, uri: str) -> str:
        call, svc = self.call, self.service
        headers = {"X-IVR-Handoff-Id": self.handoff_id,
                   "User-to-User": f"{self.handoff_id.encode().hex()};encoding=hex"}
        logger.info(f"call {call.call_id}: ringing agent {uri}")
        try:
            leg = await svc.engine.dial(uri, headers)
        except RuntimeError as error:
            logger.warning(f"call {call.call_id}: agent {uri}: {error}")
            return "failed"
        self.agent_leg = leg
        deadline = time.monotonic() + svc.settings.ring_timeout_s
        while True:
            if call.leg.disconnected.is_set():
                await leg.hangup()  # CANCEL while ringing, BYE if it had just answered
                return "abandoned"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await leg.hangup()
                await self._wait(leg.disconnected, 3.0)
                return "no-answer"
            try:
                event = await asyncio.wait_for(leg.events.get(), min(0.2, remaining))
            except (TimeoutError, asyncio.TimeoutError):
                continue
            if event.kind == LegEventKind.DISCONNECTED:
                logger.info(f"call {call.call_id}: agent {uri} answered {event.code} "
                            f"{event.reason}")
                return _failure(event.code)
            if event.kind == LegEventKind.MEDIA:
                return await self._brief_and_connect(uri, leg)

    async def _brief_and_connect(self, uri: str, leg: CallLeg) -> str:
        call, svc = self.call, self.service
        session = call.session
        briefing = f"Warm transfer from the voice assistant. {self.summary} Connecting you now."
        pcm = await session.engines.synthesize(briefing, leg.port.rate)
        player = OncePlayer(pcm, leg.port.frame_bytes)
        leg.port.source = player
        limit = time.monotonic() + len(pcm) / 2 / leg.port.rate + 5.0
        while not player.finished.is_set() and time.monotonic() < limit:
            if call.leg.disconnected.is_set() or leg.disconnected.is_set():
                break
            await asyncio.sleep(0.05)
        if call.leg.disconnected.is_set():
            await leg.hangup()
            return "abandoned"
        if leg.disconnected.is_set():
            return "rejected"  # the agent hung up during the briefing
        await asyncio.sleep(0.3)  # the agent's jitter buffer plays the briefing's tail
        leg.port.source = None
        referred = svc.settings.transfer_mode == "refer" and await self._refer(leg)
        if not referred:
            await svc.engine.bridge(call.leg, leg)
        call.end_reason = "transferred"
        await self._set_outcome("connected", uri, "connected")
        logger.info(f"call {call.call_id}: connected to agent {uri} "
                    f"({'REFER: the IVR has left the media path' if referred else 'bridged'})")
        if referred:
            await call.leg.hangup()  # RFC 5589: the transferor ends its dialog
        else:
            self._keep(asyncio.create_task(self._follow(leg), name=f"call-{call.call_id}-agent"))
        return "connected"

    def _keep(self, task: asyncio.Task) -> None:
        """The event loop holds tasks weakly: keep a reference until each is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refer(self, leg: CallLeg, timeout_s: float = 10.0) -> bool:
        """REFER with Replaces to the caller's side; True once it reports success (2xx).
        Anything else (refused, no NOTIFY in time) leaves both legs up for the bridge."""
        call = self.call
        call.refer_done.clear()
        try:
            await call.leg.refer_replaces(leg)
        except RuntimeError as error:
            logger.warning(f"call {call.call_id}: REFER not sent ({error}); bridging instead")
            return False
        try:
            await asyncio.wait_for(call.refer_done.wait(), timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            logger.warning(f"call {call.call_id}: no answer to REFER; bridging instead")
            return False
        code, reason = call.refer_status or (0, "")
        if 200 <= code < 300:
            return True
        logger.warning(f"call {call.call_id}: REFER failed ({code} {reason}); bridging instead")
        return False

    async def _follow(self, leg: CallLeg) -> None:
        """Once connected, whoever hangs up first ends the other leg too."""
        call = self.call
        gone = [asyncio.create_task(leg.disconnected.wait()),
                asyncio.create_task(call.leg.disconnected.wait())]
        await asyncio.wait(gone, return_when=asyncio.FIRST_COMPLETED)
        for task in gone:
            task.cancel()
        if leg.disconnected.is_set() and not call.leg.disconnected.is_set():
            logger.info(f"call {call.call_id}: the agent hung up; ending the caller's leg")
            call.end_reason = "transferred-agent-hangup"
            await call.leg.hangup()
        elif not leg.disconnected.is_set():
            await leg.hangup()

    # -- no agent ----------------------------------------------------------------------------------

    async def _offer_callback(self) -> None:
        call = self.call
        call.unhold()
        call.handler.intercept = self._answer_offer
        await call.session.say(OFFER)

    async def _answer_offer(self, text: str) -> Reply | None:
        lowered = text.lower()
        call, svc = self.call, self.service
        if _WANTS_CALLBACK.search(lowered):
            call.handler.intercept = None
            number = call.record.caller_number
            if not number:
                self._keep(asyncio.create_task(self._retry(), name=f"call-{call.call_id}-retry"))
                return Reply(text=NO_CALLER_ID)
            state = call.handler.state
            try:
                await asyncio.to_thread(
                    svc.crm.schedule_callback, number, "next business hours",
                    getattr(state, "customer_id", None))
            except Exception as error:
                logger.error(f"call {call.call_id}: callback not booked: {error}")
                return Reply(text=CALLBACK_FAILED, end_call=True)
            await self._set_outcome("callback")
            return Reply(text=CALLBACK_DONE, end_call=True)
        if _WANTS_WAIT.search(lowered):
            call.handler.intercept = None
            if self.next_agent >= len(svc.settings.agent_uris):
                self.next_agent = 0  # start the queue again
            self._keep(asyncio.create_task(self._retry(), name=f"call-{call.call_id}-retry"))
            return Reply(text="Of course. Please hold while I try again.")
        return Reply(text="Sorry, would you like a callback, or to keep waiting? Press 1 for a "
                          "callback or 2 to keep waiting.")

    async def _retry(self) -> None:
        session = self.call.session
        await asyncio.sleep(0.5)
        while session.bot_speaking or session.replies_in_flight:
            await asyncio.sleep(0.05)
        await self._set_outcome("pending")
        await self._try_agents()

    # -- records -----------------------------------------------------------------------------------

    async def _set_outcome(self, outcome: str, agent_uri: str | None = None,
                           attempt: str | None = None) -> None:
        svc = self.service
        self.outcome = outcome
        try:
            await asyncio.to_thread(svc.store.update_transfer, self.handoff_id, outcome,
                                    agent_uri=agent_uri, attempt_result=attempt)
        except Exception as error:  # recorded in the log; the call goes on
            logger.error(f"handoff {self.handoff_id}: transfer update failed: {error}")
        if svc.hub is not None:
            try:
                await svc.hub.update(self.handoff_id, outcome)
            except (KeyError, ValueError) as error:
                logger.warning(f"handoff {self.handoff_id}: desktop update: {error}")

    async def finish(self) -> None:
        """The caller's call is over: settle the outcome and write the after-call record."""
        call, svc = self.call, self.service
        if self.agent_leg is not None and not self.agent_leg.disconnected.is_set():
            await self.agent_leg.hangup()
        if self.outcome == "pending":
            await self._set_outcome("abandoned")
        elif self.outcome in ("no-answer", "busy", "rejected", "failed") and \
                call.record.end_reason in ("caller-hangup", "cancelled"):
            await self._set_outcome("abandoned")
        state = call.handler.state
        try:
            record = await asyncio.to_thread(
                write_after_call, svc.crm, call_id=call.call_id,
                customer_id=getattr(state, "customer_id", None),
                disposition=disposition_for(self.outcome), summary=self.summary,
                handoff_id=self.handoff_id, subject=f"Phone call: {state.route or 'transfer'}")
            call.record.context["after_call"] = {"case_id": record.case_id,
                                                 "disposition": str(record.disposition)}
        except Exception as error:
            logger.error(f"call {call.call_id}: after-call record failed: {error}")
        call.record.context["transfer_outcome"] = self.outcome

    def _transcript(self) -> list[TranscriptLine]:
        """The turn manager's transcript (redacted, timestamped): only it routes to humans."""
        return list(self.call.handler.inner.transcript)

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except (TimeoutError, asyncio.TimeoutError):
            pass
