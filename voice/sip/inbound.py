"""One admitted SIP call from ring to record: answer, run its pipeline, end, write everything.

The call's audio crosses from PJSIP's clock thread through the leg's ``BridgePort``: caller
frames are awaited here and pushed into the call's pipeline; our reply frames are pulled by the
port straight from the session's playout buffer. Every way a call can end (the caller hangs up,
the flow says goodbye, silence, the duration limit, shutdown, a failure) goes through ``run``'s
``finally``, so the call row and every turn are written whatever happened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import InputDTMFFrame

from voice.callstore import CallRecord, CallStore
from voice.records import TurnRecord
from voice.session import CallSession
from voice.settings import IvrSettings
from voice.sip.endpoint import CallLeg, LegEvent, LegEventKind
from voice.turns import CallInfo, TurnHandler

MEDIA_TIMEOUT_S = 5.0  # 200 OK sent, no audio path after this: the call is ended
GOODBYE_GRACE_S = 12.0  # a goodbye the caller talks over still ends the call after this
TAIL_S = 0.4  # after our last sample, the far end's jitter buffer still has to play it


class InboundCall:
    """Runs one inbound call; ``run`` returns once the call is over and written."""

    def __init__(self, leg: CallLeg, settings: IvrSettings, handler: TurnHandler,
                 store: CallStore, *, shutdown: asyncio.Event,
                 transfer: Callable[[InboundCall], Awaitable[None]] | None = None,
                 on_finished: Callable[[InboundCall], Awaitable[None]] | None = None) -> None:
        self.leg = leg
        self.settings = settings
        self.handler = handler
        self.store = store
        self.shutdown = shutdown
        self.transfer = transfer  # run when the flow routes the caller to a human
        self.on_finished = on_finished  # after-call work, before the record is final
        self.transferring = False  # on hold or with an agent: the caller is not listened to
        invite = leg.invite
        self.record = CallRecord(
            id=uuid.uuid4().hex[:16], started_at=time.time(),
            sip_call_id=invite.sip_call_id if invite else None,
            caller_number=invite.caller_number if invite else None,
            called_number=invite.called_number if invite else None,
            source=invite.source if invite else None,
            context={"x_headers": invite.x_headers if invite else {},
                     "caller_name": invite.caller_name if invite else None,
                     "handler": settings.call.handler})
        self.session: CallSession | None = None
        self.end_reason: str | None = None  # set by whoever ends the call from our side
        self.dtmf_methods: list[str] = []  # how each key arrived (never which key)
        self.hold_events = 0
        self._writes: set[asyncio.Task] = set()
        self.on_turn_hooks: list[Callable[[dict], None]] = []  # metrics, live views
        self._last_activity = time.monotonic()
        self.done = asyncio.Event()
        self.refer_done = asyncio.Event()  # the far end reported how our REFER ended
        self.refer_status: tuple[int, str] | None = None

    @property
    def call_id(self) -> str:
        return self.record.id

    # -- the call ------------------------------------------------------------------------------------

    async def run(self) -> None:
        logger.info(f"call {self.call_id}: INVITE {self.record.sip_call_id} from "
                    f"{self.record.caller_number} ({self.record.source}) to "
                    f"{self.record.called_number}")
        await self._write_call()
        reason = "error"
        try:
            reason = await self._run()
        except asyncio.CancelledError:
            reason = "shutdown"
            await self._hangup()
        except Exception as error:
            logger.exception(f"call {self.call_id}: failed: {error}")
            reason = "error"
            await self._hangup(500)
        finally:
            await self._finish(reason)

    async def _run(self) -> str:
        ring_s = self.settings.sip.answer_delay_ms / 1000
        if ring_s and await self._disconnected_within(ring_s):
            return "cancelled"
        if self.leg.disconnected.is_set():
            return "cancelled"
        await self.leg.answer(200)
        rate = await self._wait_media()
        if rate is None:
            if self.leg.disconnected.is_set():
                return "cancelled" if self.record.answered_at is None else "caller-hangup"
            await self._hangup()
            return "no-media"
        self.record.answered_at = time.time()
        self.record.codec = self.leg.codec
        await self._write_call()
        logger.info(f"call {self.call_id}: answered ({self.leg.codec}, {rate} Hz)")
        call = CallInfo(call_id=self.call_id, caller_number=self.record.caller_number,
                        called_number=self.record.called_number)
        self.session = CallSession(self.settings, rate, handler=self.handler, call_info=call,
                                   on_turn=self._on_turn)
        await self.session.start()
        self.leg.port.source = self.session.pull_audio_threadsafe
        return await self._converse()

    def hold(self, player: Callable[[], bytes | None]) -> None:
        """The caller hears ``player`` (hold music) and is not listened to."""
        self.transferring = True
        self.leg.port.source = player

    def unhold(self) -> None:
        self.transferring = False
        self._last_activity = time.monotonic()
        self.leg.port.source = self.session.pull_audio_threadsafe

    async def _converse(self) -> str:
        session = self.session
        feed = asyncio.create_task(self._feed(), name=f"call-{self.call_id}-feed")
        events = asyncio.create_task(self._events(), name=f"call-{self.call_id}-events")
        ending = asyncio.create_task(session.hangup_requested.wait(),
                                     name=f"call-{self.call_id}-hangup")
        gone = asyncio.create_task(self.leg.disconnected.wait(), name=f"call-{self.call_id}-bye")
        stop = asyncio.create_task(self.shutdown.wait(), name=f"call-{self.call_id}-shutdown")
        watchdog = asyncio.create_task(self._watchdog(), name=f"call-{self.call_id}-watchdog")
        routed = asyncio.create_task(self._watch_route(), name=f"call-{self.call_id}-route")
        waiting = {ending, gone, stop}
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                return self.end_reason or ("ivr-hangup" if self.leg.hangup_by_us
                                           else "caller-hangup")
            if ending in done:
                await asyncio.sleep(TAIL_S)
                await self._hangup()
                return self.end_reason or "ivr-hangup"
            await self._hangup()  # shutdown: the grace period is over
            return "shutdown"
        finally:
            for task in (feed, events, ending, gone, stop, watchdog, routed):
                task.cancel()
            await asyncio.gather(feed, events, ending, gone, stop, watchdog, routed,
                                 return_exceptions=True)

    async def _feed(self) -> None:
        """Caller audio from PJSIP's thread into the pipeline, frame by frame."""
        port, session = self.leg.port, self.session
        while True:
            frames = await port.receive()
            if self.transferring:
                continue  # on hold: the caller's line noise must not become turns
            for pcm in frames:
                await session.push_audio(pcm)

    async def _watch_route(self) -> None:
        """Start the warm transfer once the flow has routed the caller to a human queue."""
        if self.transfer is None:
            return
        while getattr(getattr(self.handler, "state", None), "route", None) is None:
            await asyncio.sleep(0.1)
        await self.transfer(self)

    async def _events(self) -> None:
        while True:
            event: LegEvent = await self.leg.events.get()
            if event.kind == LegEventKind.DTMF:
                self._last_activity = time.monotonic()
                self.dtmf_methods.append(event.method)
                logger.info(f"call {self.call_id}: DTMF ({event.method})")  # never the digit
                try:
                    button = KeypadEntry(event.digit)
                except ValueError:
                    continue
                await self.session.push_frame(InputDTMFFrame(button=button))
            elif event.kind == LegEventKind.TRANSFER:
                self.refer_status = (event.code, event.reason)
                if event.method == "final" or event.code >= 200:
                    self.refer_done.set()
            elif event.kind == LegEventKind.HOLD:
                self.hold_events += 1
                logger.info(f"call {self.call_id}: held by the caller")
            elif event.kind == LegEventKind.UNHOLD:
                self._last_activity = time.monotonic()
                logger.info(f"call {self.call_id}: resumed")

    async def _watchdog(self) -> None:
        """Duration and silence limits: a polite goodbye, then BYE once it has been played."""
        sip = self.settings.sip
        answered = time.monotonic()
        hang_up_at: float | None = None  # set once a goodbye has been said
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            session = self.session
            if session.bot_speaking or session.listen.segmenter.in_turn \
                    or session.replies_in_flight:
                self._last_activity = now
            if hang_up_at is not None:
                if now > hang_up_at:  # the goodbye was talked over or never ended: end anyway
                    session.hangup_requested.set()
                continue
            if self.transferring:
                continue  # on hold or with an agent: the IVR's limits no longer apply
            if now - answered > sip.max_call_s:
                self.end_reason = "max-duration"
                hang_up_at = now + GOODBYE_GRACE_S
                logger.info(f"call {self.call_id}: duration limit reached")
                await session.say(sip.goodbye_max_duration, end_call=True)
            elif now - self._last_activity > sip.max_silence_s:
                self.end_reason = "silence-timeout"
                hang_up_at = now + GOODBYE_GRACE_S
                logger.info(f"call {self.call_id}: caller silent, saying goodbye")
                await session.say(sip.goodbye_silence, end_call=True)

    # -- ending ---------------------------------------------------------------------------------------

    async def _hangup(self, code: int = 0) -> None:
        if not self.leg.disconnected.is_set():
            try:
                await self.leg.hangup(code)
                await asyncio.wait_for(self.leg.disconnected.wait(), 5.0)
            except (RuntimeError, TimeoutError, asyncio.TimeoutError) as error:
                logger.warning(f"call {self.call_id}: hangup: {error}")

    async def _finish(self, reason: str) -> None:
        self.record.end_reason = reason
        if self.session is not None:
            self.leg.port.source = None
            try:
                await asyncio.wait_for(self.session.end(reason), 15.0)
            except Exception as error:  # the records below are written all the same
                logger.error(f"call {self.call_id}: pipeline did not end cleanly: {error}")
                for index in sorted(self.session.turns):
                    self.session.turn_done(index)
        else:
            await self.handler.end_call(reason)
        self.record.ended_at = time.time()
        self.record.context.update({
            "dtmf_events": len(self.dtmf_methods), "hold_events": self.hold_events,
            "dtmf_methods": sorted(set(self.dtmf_methods)),
            "frames": self.leg.port.stats() if self.leg.port else {},
            "sip_end_code": self.leg.end_code, "sip_end_reason": self.leg.end_reason})
        if self.on_finished is not None:
            try:
                await self.on_finished(self)
            except Exception as error:  # the call record below is written all the same
                logger.exception(f"call {self.call_id}: after-call work failed: {error}")
        menu_version = getattr(getattr(self.handler, "state", None), "menu_version", None)
        if menu_version:
            self.record.context["menu_version"] = menu_version
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._write_call()
        turns = len(self.session.turns) if self.session else 0
        logger.info(f"call {self.call_id}: ended ({reason}) after "
                    f"{self.record.ended_at - self.record.started_at:.1f} s, {turns} turns")
        self.done.set()

    # -- helpers --------------------------------------------------------------------------------------

    def _on_turn(self, record: TurnRecord) -> None:
        self._last_activity = time.monotonic()
        turn = record.to_dict()
        for hook in self.on_turn_hooks:
            hook(turn)
        task = asyncio.create_task(asyncio.to_thread(self.store.save_turn, self.call_id, turn))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_call(self) -> None:
        await asyncio.to_thread(self.store.save_call, self.record)

    async def _disconnected_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.leg.disconnected.wait(), seconds)
            return True
        except (TimeoutError, asyncio.TimeoutError):
            return False

    async def _wait_media(self) -> int | None:
        deadline = time.monotonic() + MEDIA_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.leg.port is not None:
                return self.leg.port.rate
            if self.leg.disconnected.is_set():
                return None
            try:
                event = await asyncio.wait_for(self.leg.events.get(),
                                               max(0.01, deadline - time.monotonic()))
            except (TimeoutError, asyncio.TimeoutError):
                break
            if event.kind == LegEventKind.MEDIA:
                return event.rate
            if event.kind == LegEventKind.DISCONNECTED:
                return None
        return None
