"""One call from answer to record, for every transport: the call core.

A transport hands over a ``CallLine`` (``voice.transports.base``); ``Call.run`` answers it, runs
the call's pipeline, feeds it the caller's audio and keys, keeps the limits (duration, silence)
with a spoken goodbye, hands the caller to a warm transfer when a reply that carries
``transfer_to`` has been heard, and on every way out (the caller hangs up, the flow says goodbye,
a limit, shutdown, a failure) writes the call row and every turn.

Reply audio never passes through here: the line takes each frame straight from the session's
playout buffer (``play_from``), on whatever thread clocks it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import InputDTMFFrame

from handoff.publish import CallFacts
from intents.dialogue.turns import CallerTurn, CallInfo, Reply, TurnHandler
from voice.app.callstore import CallRecord, CallStore
from voice.app.journey import flow_node, summarize, turn_intent
from voice.app.settings import IvrSettings
from voice.pipeline.records import TurnRecord
from voice.pipeline.session import CallSession
from voice.transports.base import CallLine, LineEventKind
from voice.transports.players import LoopPlayer, hold_music

if TYPE_CHECKING:
    from handoff.transfer import WarmTransfer
    from voice.app.tracing import CallTrace, Tracing

GOODBYE_GRACE_S = 12.0  # a goodbye the caller talks over still ends the call after this
TAIL_S = 0.4  # after our last sample, the far end's jitter buffer still has to play it
QUIET_SETTLE_S = 0.3  # a reply just returned by the handler reaches the pipeline within this

TransferFactory = Callable[["Call"], "WarmTransfer"]


class _Routed:
    """The call's turn handler, with a place for a transfer's own short dialogue (the
    callback-or-wait question) to answer before the turn manager does."""

    def __init__(self, inner: TurnHandler) -> None:
        self.inner = inner
        self.offer: Any = None  # handoff.callback.CallbackOffer while it is being asked
        self.trace: CallTrace | None = None  # the turn's span is current while it is answered

    async def start_call(self, call: CallInfo) -> Reply | None:
        return await self.inner.start_call(call)

    async def handle_turn(self, turn: CallerTurn) -> Reply | None:
        if self.offer is not None and not self.offer.done:
            return await self.offer.answer(turn.text)
        if self.trace is None:
            return await self.inner.handle_turn(turn)
        with self.trace.turn(turn.index):
            return await self.inner.handle_turn(turn)

    async def preview_turn(self, turn: CallerTurn) -> str | None:
        """What ``handle_turn`` would answer, without side effects (see ``TurnHandler``)."""
        preview = getattr(self.inner, "preview_turn", None)
        if preview is None or (self.offer is not None and not self.offer.done):
            return None
        return await preview(turn)

    @property
    def speech_hint(self) -> str | None:
        """The ASR prompt while the caller may say anything (see ``TurnHandler``)."""
        return getattr(self.inner, "speech_hint", None)

    async def handle_dtmf(self, digits: str) -> Reply | None:
        if self.offer is not None and not self.offer.done:
            reply = await self.offer.keyed(digits)
            if reply is not None:
                return reply
        if self.trace is None:
            return await self.inner.handle_dtmf(digits)
        with self.trace.keyed():
            return await self.inner.handle_dtmf(digits)

    async def end_call(self, reason: str) -> None:
        await self.inner.end_call(reason)


class Call:
    """Runs one call; ``run`` returns once the call is over and written.

    Also what a warm transfer sees of the call (``handoff.transfer.TransferringCall``).
    """

    def __init__(self, line: CallLine, settings: IvrSettings, handler: TurnHandler,
                 store: CallStore | None, *, shutdown: asyncio.Event,
                 transfer: TransferFactory | None = None, realtime: bool = True,
                 on_turn: Callable[[TurnRecord], None] | None = None,
                 call_id: str | None = None, tracing: Tracing | None = None) -> None:
        self.line = line
        self.settings = settings
        self.handler = _Routed(handler)
        self.store = store
        self.shutdown = shutdown
        self.make_transfer = transfer
        self.realtime = realtime
        self.transfer: WarmTransfer | None = None
        self.transferring = False  # on hold or with an agent: the caller is not listened to
        info = line.info
        self.record = CallRecord(
            id=call_id or uuid.uuid4().hex[:16], started_at=time.time(), transport=info.transport,
            sip_call_id=info.external_id, caller_number=info.caller_number,
            called_number=info.called_number, source=info.source,
            context={**info.context, "caller_name": info.caller_name,
                     "handler": settings.call.handler})
        # The flow bundle the call runs on, to its end, whatever is promoted meanwhile.
        flow_version = getattr(getattr(handler, "state", None), "flow_version", None)
        if flow_version:
            self.record.context["flow_version"] = flow_version
        self.session: CallSession | None = None
        self.rate: int | None = None
        self.end_reason: str | None = None  # set by whoever ends the call from our side
        self.dtmf_methods: list[str] = []  # how each key arrived (never which key)
        self.hold_events = 0
        self.on_turn_hooks: list[Callable[[dict], None]] = []  # metrics, live views
        self.on_turn_record = on_turn  # the record itself (simulate, tests)
        self.done = asyncio.Event()
        self._writes: set[asyncio.Task] = set()
        self._last_activity = time.monotonic()
        self._handed_over_at: float | None = None  # when the warm transfer started
        self.trace: CallTrace | None = tracing.call(self) if tracing is not None else None
        self.handler.trace = self.trace

    @property
    def call_id(self) -> str:
        return self.record.id

    # -- the call ----------------------------------------------------------------------------------

    async def run(self) -> None:
        info = self.line.info
        logger.info(f"call {self.call_id}: {info.transport} call {info.external_id!r} from "
                    f"{info.caller_number} ({info.source}) to {info.called_number}")
        if self.trace is not None:
            await asyncio.to_thread(self.trace.link_journey, self.store)
        await self._write_call()
        reason = "error"
        try:
            reason = await self._run()
        except asyncio.CancelledError:
            reason = "shutdown"
            await self.line.hangup()
        except Exception as error:  # noqa: BLE001
            logger.exception(f"call {self.call_id}: failed: {error}")
            reason = "error"
            await self.line.hangup(500)
        finally:
            await self._finish(reason)

    async def _run(self) -> str:
        rate = await self.line.answer()
        if rate is None:
            if self.line.ended.is_set():
                return "cancelled"
            await self.line.hangup()
            return "no-media"
        self.rate = rate
        self.record.answered_at = time.time()
        self.record.codec = self.line.codec
        await self._write_call()
        logger.info(f"call {self.call_id}: answered ({self.line.codec}, {rate} Hz)")
        info = CallInfo(call_id=self.call_id, caller_number=self.record.caller_number,
                        called_number=self.record.called_number)
        self.session = CallSession(self.settings, rate, handler=self.handler, call_info=info,
                                   on_turn=self._on_turn, fast=not self.realtime)
        await self.session.start()
        attach = getattr(self.line, "attach", None)  # a line that paces itself on the pipeline
        if attach is not None:
            attach(self.session)
        self.line.play_from(self.session.pull_audio_threadsafe)
        return await self._converse()

    async def _converse(self) -> str:
        session = self.session
        name = f"call-{self.call_id}"
        background = [asyncio.create_task(self._feed(), name=f"{name}-feed"),
                      asyncio.create_task(self._events(), name=f"{name}-events"),
                      asyncio.create_task(self._watchdog(), name=f"{name}-watchdog"),
                      asyncio.create_task(self._hand_over(), name=f"{name}-transfer")]
        ending = asyncio.create_task(session.hangup_requested.wait(), name=f"{name}-hangup")
        gone = asyncio.create_task(self.line.ended.wait(), name=f"{name}-gone")
        stop = asyncio.create_task(self.shutdown.wait(), name=f"{name}-shutdown")
        waiting = [ending, gone, stop]
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                return self.end_reason or ("ivr-hangup" if self.line.ended_by_us
                                           else "caller-hangup")
            if ending in done:
                if self.realtime:
                    await asyncio.sleep(TAIL_S)
                await self.line.hangup()
                return self.end_reason or "ivr-hangup"
            await self.line.hangup()  # shutdown: the grace period is over
            return "shutdown"
        finally:
            tasks = background + waiting
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _feed(self) -> None:
        """Caller audio from the transport into the pipeline, frame by frame."""
        line, session = self.line, self.session
        while True:
            frames = await line.receive()
            if self.transferring:
                continue  # on hold: the caller's line noise must not become turns
            for pcm in frames:
                await session.push_audio(pcm)

    async def _events(self) -> None:
        while True:
            event = await self.line.next_event()
            if event.kind == LineEventKind.DTMF:
                self._last_activity = time.monotonic()
                self.dtmf_methods.append(event.method)
                logger.info(f"call {self.call_id}: DTMF ({event.method})")  # never the digit
                try:
                    button = KeypadEntry(event.digit)
                except ValueError:
                    continue
                await self.session.push_frame(InputDTMFFrame(button=button))
            elif event.kind == LineEventKind.HOLD:
                self.hold_events += 1
                logger.info(f"call {self.call_id}: held by the caller")
            elif event.kind == LineEventKind.UNHOLD:
                self._last_activity = time.monotonic()
                logger.info(f"call {self.call_id}: resumed")

    async def _hand_over(self) -> None:
        """Start the warm transfer once a reply routing the caller to a human was heard."""
        route = await self.session.transfer_requested()
        if self.make_transfer is None:
            logger.warning(f"call {self.call_id}: routed to {route!r} but no transfer is set up")
            return
        self._handed_over_at = time.time()
        self.transfer = self.make_transfer(self)
        if self.trace is not None:
            self.trace.transfer_started(route)
        await self.transfer.run()

    async def _watchdog(self) -> None:
        """Duration and silence limits: a polite goodbye, then the hang-up once it has played."""
        limits = self.settings.call
        answered = time.monotonic()
        hang_up_at: float | None = None  # set once a goodbye has been said
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            session = self.session
            if session.busy:
                self._last_activity = now
            if hang_up_at is not None:
                if now > hang_up_at:  # the goodbye was talked over or never ended: end anyway
                    session.hangup_requested.set()
                continue
            if self.transferring:
                continue  # on hold or with an agent: the IVR's limits no longer apply
            if now - answered > limits.max_call_s:
                self.end_reason = "max-duration"
                hang_up_at = now + GOODBYE_GRACE_S
                logger.info(f"call {self.call_id}: duration limit reached")
                await session.say(limits.goodbye_max_duration, end_call=True)
            elif now - self._last_activity > limits.max_silence_s:
                self.end_reason = "silence-timeout"
                hang_up_at = now + GOODBYE_GRACE_S
                logger.info(f"call {self.call_id}: caller silent, saying goodbye")
                await session.say(limits.goodbye_silence, end_call=True)

    # -- what a warm transfer uses (handoff.transfer.TransferringCall) -----------------------------

    @property
    def facts(self) -> CallFacts:
        r = self.record
        return CallFacts(call_id=r.id, external_id=r.sip_call_id, caller_number=r.caller_number,
                         called_number=r.called_number, started_at=r.started_at)

    @property
    def state(self) -> Any:
        return getattr(self.handler.inner, "state", None)

    @property
    def transcript(self) -> list:
        return list(getattr(self.handler.inner, "transcript", []))

    @property
    def caller_gone(self) -> asyncio.Event:
        return self.line.ended

    @property
    def context(self) -> dict[str, Any]:
        return self.record.context

    def hold(self) -> None:
        """The caller hears hold music and is not listened to."""
        self.transferring = True
        frame_bytes = self.rate * self.settings.audio.frame_ms // 1000 * 2
        self.line.play_from(LoopPlayer(hold_music(self.rate), frame_bytes))

    def unhold(self) -> None:
        self.transferring = False
        self._last_activity = time.monotonic()
        self.line.play_from(self.session.pull_audio_threadsafe)

    async def say(self, text: str, *, end_call: bool = False) -> None:
        await self.session.say(text, end_call=end_call)

    async def wait_quiet(self) -> None:
        """Until nothing is being said or about to be (a reply just returned included)."""
        await asyncio.sleep(QUIET_SETTLE_S)
        await self.session.wait_quiet()

    async def synthesize(self, text: str, rate: int) -> bytes:
        return await self.session.engines.synthesize(text, rate)

    def set_end_reason(self, reason: str) -> None:
        self.end_reason = reason

    def intercept(self, offer: Any) -> None:
        self.handler.offer = offer

    async def hangup(self) -> None:
        await self.line.hangup()

    # -- ending ------------------------------------------------------------------------------------

    async def _finish(self, reason: str) -> None:
        self.record.end_reason = reason
        if self.session is not None:
            self.line.play_from(None)
            try:
                await asyncio.wait_for(self.session.end(reason), 15.0)
            except Exception as error:  # noqa: BLE001 - the records below are written all the same
                logger.error(f"call {self.call_id}: pipeline did not end cleanly: {error}")
                for index in sorted(self.session.turns):
                    self.session.turn_done(index)
        else:
            await self.handler.end_call(reason)
        self.record.ended_at = time.time()
        self.record.context.update({
            "dtmf_events": len(self.dtmf_methods), "hold_events": self.hold_events,
            "dtmf_methods": sorted(set(self.dtmf_methods)), **self.line.end_details()})
        if self.transfer is not None:
            try:
                await self.transfer.finish(reason)
            except Exception as error:  # noqa: BLE001
                # the call record below is written all the same
                logger.exception(f"call {self.call_id}: after-call work failed: {error}")
        inference = self.session.tier.record() if self.session is not None else None
        if inference:
            self.record.context["inference"] = inference
        menu_version = getattr(self.state, "menu_version", None)
        if menu_version:
            self.record.context["menu_version"] = menu_version
        answered = self.record.answered_at
        ivr_s = None if answered is None else \
            (self._handed_over_at or self.record.ended_at) - answered
        journey = summarize(self.state, reason,
                            transfer_outcome=self.record.context.get("transfer_outcome"),
                            ivr_s=ivr_s)
        self.record.context["journey"] = journey
        if self.trace is not None:
            self.trace.finish(journey)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._write_call()
        turns = len(self.session.turns) if self.session else 0
        logger.info(f"call {self.call_id}: ended ({reason}) after "
                    f"{self.record.ended_at - self.record.started_at:.1f} s, {turns} turns")
        self.done.set()

    # -- records -----------------------------------------------------------------------------------

    def _on_turn(self, record: TurnRecord) -> None:
        self._last_activity = time.monotonic()
        if self.on_turn_record is not None:
            self.on_turn_record(record)
        turn = record.to_dict()
        if "flow_version" in self.record.context:
            turn["flow_version"] = self.record.context["flow_version"]
        state = self.state
        if state is not None:  # what the flow made of the turn: the report's funnel and traces
            intent = turn_intent(state, record.index)
            if intent is not None:
                turn["intent"], turn["confidence"] = intent
            turn["journey_stage"] = flow_node(state, record.index)
        if self.trace is not None:
            self.trace.turn_done(record)
        for hook in self.on_turn_hooks:
            hook(turn)
        if self.store is None:
            return
        task = asyncio.create_task(asyncio.to_thread(self.store.save_turn, self.call_id, turn))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_call(self) -> None:
        if self.store is not None:
            await asyncio.to_thread(self.store.save_call, self.record)
