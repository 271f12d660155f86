"""The SIP transport's side of the call core: a caller's ``CallLine``, and the ``AgentLine``
warm transfers dial agents through.

Both wrap ``CallLeg`` (``voice.transports.sip.endpoint``): commands go to the PJSIP endpoint thread,
events come back on the leg's queue, audio crosses through the leg's ``BridgePort``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loguru import logger

from voice.app.settings import SipSettings
from voice.transports.base import AudioSource, LineEvent, LineEventKind, LineInfo
from voice.transports.players import OncePlayer
from voice.transports.sip.endpoint import CallLeg, LegEvent, LegEventKind, SipEngine

MEDIA_TIMEOUT_S = 5.0  # 200 OK sent, no audio path after this: the call is ended
_EVENTS = {LegEventKind.DTMF: LineEventKind.DTMF, LegEventKind.HOLD: LineEventKind.HOLD,
           LegEventKind.UNHOLD: LineEventKind.UNHOLD,
           LegEventKind.TRANSFER: LineEventKind.TRANSFER}


def _failure(code: int) -> str:
    """An agent leg's final status as a transfer attempt result."""
    if code in (486, 600):
        return "busy"
    if code in (408, 480, 487, 0):
        return "no-answer"
    return "rejected"


class SipCallLine:
    """An inbound SIP call as a ``CallLine``."""

    def __init__(self, leg: CallLeg, settings: SipSettings) -> None:
        self.leg = leg
        self.settings = settings
        invite = leg.invite
        self.info = LineInfo(
            transport="sip", external_id=invite.sip_call_id if invite else None,
            caller_number=invite.caller_number if invite else None,
            caller_name=invite.caller_name if invite else None,
            called_number=invite.called_number if invite else None,
            source=invite.source if invite else None,
            context={"x_headers": invite.x_headers if invite else {}})
        self.ended = leg.disconnected
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self.refer_done = asyncio.Event()  # the far end reported how our REFER ended
        self.refer_status: tuple[int, str] | None = None

    @property
    def ended_by_us(self) -> bool:
        return self.leg.hangup_by_us

    @property
    def codec(self) -> str | None:
        return self.leg.codec

    async def answer(self) -> int | None:
        ring_s = self.settings.answer_delay_ms / 1000
        if ring_s and await _within(self.ended, ring_s):
            return None
        if self.ended.is_set():
            return None
        await self.leg.answer(200)
        return await self._wait_media()

    async def _wait_media(self) -> int | None:
        deadline = time.monotonic() + MEDIA_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.leg.port is not None:
                return self.leg.port.rate
            if self.ended.is_set():
                return None
            try:
                event = await asyncio.wait_for(self.leg.events.get(),
                                               max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if event.kind == LegEventKind.MEDIA:
                return event.rate
            if event.kind == LegEventKind.DISCONNECTED:
                return None
            self._pass_on(event)
        return None

    async def receive(self) -> list[bytes]:
        return await self.leg.port.receive()

    def play_from(self, source: AudioSource | None) -> None:
        if self.leg.port is not None:
            self.leg.port.source = source

    async def next_event(self) -> LineEvent:
        while self._events.empty():
            self._pass_on(await self.leg.events.get())
        return self._events.get_nowait()

    def _pass_on(self, event: LegEvent) -> None:
        kind = _EVENTS.get(event.kind)
        if kind == LineEventKind.TRANSFER:
            self.refer_status = (event.code, event.reason)
            if event.method == "final" or event.code >= 200:
                self.refer_done.set()
        if kind is not None:
            self._events.put_nowait(LineEvent(kind, digit=event.digit, method=event.method,
                                              code=event.code, reason=event.reason))

    async def hangup(self, code: int = 0) -> None:
        if self.ended.is_set():
            return
        try:
            await self.leg.hangup(code)
            await asyncio.wait_for(self.ended.wait(), 5.0)
        except (RuntimeError, TimeoutError) as error:
            logger.warning(f"sip: hangup {self.leg}: {error}")

    def end_details(self) -> dict[str, Any]:
        return {"frames": self.leg.port.stats() if self.leg.port else {},
                "sip_end_code": self.leg.end_code, "sip_end_reason": self.leg.end_reason}


class SipAgentLeg:
    """An outbound call to an agent (``handoff.transfer.AgentLeg``)."""

    def __init__(self, leg: CallLeg) -> None:
        self.leg = leg
        self.ended = leg.disconnected

    @property
    def rate(self) -> int:
        return self.leg.port.rate if self.leg.port is not None else 8000

    async def wait_answer(self, timeout_s: float, caller_gone: asyncio.Event) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            if caller_gone.is_set():
                await self.leg.hangup()  # CANCEL while ringing, BYE if it had just answered
                return "abandoned"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self.leg.hangup()
                await _within(self.ended, 3.0)
                return "no-answer"
            try:
                event = await asyncio.wait_for(self.leg.events.get(), min(0.2, remaining))
            except TimeoutError:
                continue
            if event.kind == LegEventKind.DISCONNECTED:
                return _failure(event.code)
            if event.kind == LegEventKind.MEDIA:
                return "answered"

    async def play(self, pcm: bytes) -> None:
        port = self.leg.port
        player = OncePlayer(pcm, port.frame_bytes)
        port.source = player
        limit = time.monotonic() + len(pcm) / 2 / port.rate + 5.0
        # PJSIP's clock thread sets ``finished``: look every 50 ms rather than cross threads.
        while not player.finished.is_set() and time.monotonic() < limit \
                and not self.ended.is_set():
            await asyncio.sleep(0.05)

    async def hangup(self) -> None:
        await self.leg.hangup()


class SipAgentLine:
    """Warm transfers over SIP (``handoff.transfer.AgentLine``)."""

    def __init__(self, engine: SipEngine) -> None:
        self.engine = engine

    async def dial(self, uri: str, headers: dict[str, str]) -> SipAgentLeg:
        return SipAgentLeg(await self.engine.dial(uri, headers))

    async def bridge(self, caller: SipCallLine, agent: SipAgentLeg) -> None:
        agent.leg.port.source = None
        await self.engine.bridge(caller.leg, agent.leg)

    async def refer(self, caller: SipCallLine, agent: SipAgentLeg, timeout_s: float) -> bool:
        """REFER with Replaces to the caller's side; True once it reports success (2xx).
        Anything else (refused, no NOTIFY in time) leaves both legs up for the bridge."""
        caller.refer_done.clear()
        agent.leg.port.source = None
        try:
            await caller.leg.refer_replaces(agent.leg)
        except RuntimeError as error:
            logger.warning(f"sip: REFER not sent ({error}); bridging instead")
            return False
        if not await _within(caller.refer_done, timeout_s):
            logger.warning("sip: no answer to REFER; bridging instead")
            return False
        code, reason = caller.refer_status or (0, "")
        if 200 <= code < 300:
            return True
        logger.warning(f"sip: REFER failed ({code} {reason}); bridging instead")
        return False


async def _within(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False
