"""One call: its pipeline, its turn records, and the state its stages share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.workers.runner import WorkerRunner

from intents.dialogue.simple import EchoTurnHandler
from intents.dialogue.turns import CallInfo, TurnHandler
from voice.app.settings import IvrSettings
from voice.asr import Transcript
from voice.engines import VoiceEngines, shared_engines
from voice.inference.client import InferenceUnavailable
from voice.inference.outage import TierOutage
from voice.pipeline.frames import SayFrame
from voice.pipeline.playout import Interrupted, PlayoutBuffer, PlayoutEvent, PlayoutEventKind
from voice.pipeline.records import LadderStep, TurnRecord
from voice.pipeline.speculation import SpeculativeReply
from voice.pipeline.stages import ListenStage, PlayoutStage, RespondStage, SpeakStage

TurnCallback = Callable[[TurnRecord], None]


class CallSession:
    """Owns one call's pipeline; the transport feeds ``push_audio`` and reads ``pull_audio``."""

    def __init__(self, settings: IvrSettings, transport_rate: int, *,
                 handler: TurnHandler | None = None, call_info: CallInfo | None = None,
                 on_turn: TurnCallback | None = None, fast: bool = False,
                 engines: VoiceEngines | None = None) -> None:
        if transport_rate not in (8000, 16000):
            raise ValueError(f"transport rate {transport_rate} Hz: use 8000 or 16000")
        self.settings = settings
        self.transport_rate = transport_rate
        self.call_info = call_info or CallInfo(call_id=uuid.uuid4().hex[:12])
        self.call_id = self.call_info.call_id
        self.handler: TurnHandler = handler or EchoTurnHandler(settings.call.greeting)
        self.on_turn = on_turn
        self.fast = fast
        self.engines = engines or shared_engines(settings)
        self.silero_session = self.engines.silero_session
        self.playout = PlayoutBuffer(transport_rate, settings.audio.frame_ms)
        self.last_interrupted: Interrupted | None = None
        self.hangup_after_reply: int | None = None
        self._in_flight: set[int] = set()  # replies started, not yet all synthesized
        self._said_something = asyncio.Event()  # a reply ended: wait_quiet looks again
        self.hangup_requested = asyncio.Event()
        self.transfer_after_reply: tuple[int, str] | None = None  # (reply id, queue)
        self._transfer_route: asyncio.Future[str] | None = None
        self.turns: dict[int, TurnRecord] = {}
        self._emitted: set[int] = set()
        self._heard: dict[int, list[str]] = {}  # reply id -> sentences played in full
        self._asr_downgraded = False
        self._pending_ladder: list[str] = []  # steps that fired between turns
        self.frames_processed = 0
        self._frame_event = asyncio.Event()

        self.tier = TierOutage(self, self.engines, settings)  # the inference tier's outages
        self.speculation = SpeculativeReply(
            self.handler if settings.turn.speculative_reply else None,
            self._synthesize_speculatively, self.call_id)
        self.listen = ListenStage(self)
        self.respond = RespondStage(self)
        self.pipeline = Pipeline([self.listen, self.respond, SpeakStage(self),
                                  PlayoutStage(self)])
        self.worker = PipelineWorker(
            self.pipeline,
            params=PipelineParams(audio_in_sample_rate=transport_rate,
                                  audio_out_sample_rate=transport_rate),
            idle_timeout_secs=None, enable_rtvi=False, enable_turn_tracking=False,
            name=f"call-{self.call_id}")
        self._runner_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(self.worker)
        self._runner_task = asyncio.create_task(runner.run(),
                                                name=f"call-{self.call_id}-pipeline")

    async def push_audio(self, pcm: bytes) -> None:
        """One transport frame of caller audio (int16 at the transport rate)."""
        await self.worker.queue_frame(InputAudioRawFrame(
            audio=pcm, sample_rate=self.transport_rate, num_channels=1))

    async def push_frame(self, frame: Frame) -> None:
        await self.worker.queue_frame(frame)

    async def say(self, text: str, *, end_call: bool = False) -> None:
        """Say ``text`` outside a caller turn (replacing any reply in progress)."""
        await self.worker.queue_frame(SayFrame(text=text, end_call=end_call))

    async def say_now(self, text: str, *, transfer_to: str | None = None) -> None:
        """Say ``text`` now, even while listen waits on ASR (the frame enters after listen)."""
        await self.respond.queue_frame(SayFrame(text=text, transfer_to=transfer_to))

    async def end(self, reason: str = "caller-hangup") -> None:
        """The caller's audio ended: finish the pipeline, then write every turn record."""
        await self.worker.queue_frame(EndFrame())
        if self._runner_task is not None:
            await self._runner_task
        self.speculation.close()
        await self.handler.end_call(reason)
        for index in sorted(self.turns):
            self._emit(index)

    # -- transport side --------------------------------------------------------------------------

    def pull_audio(self) -> bytes:
        """One frame of reply audio for the transport (silence when we say nothing)."""
        pcm, events = self.playout.pull()
        self._on_playout_events(events)
        return pcm

    def pull_audio_threadsafe(self) -> bytes:
        """``pull_audio`` for a transport clocked on any thread (PJSIP's media thread): takes
        the frame without blocking and hands the playout events to the loop."""
        pcm, events = self.playout.pull()
        if events and self._loop is not None and self._on_loop_thread():
            self._on_playout_events(events)
        elif events and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._on_playout_events, events)
            except RuntimeError:  # the loop is closed: the call is over
                pass
        return pcm

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:  # no loop on this thread: PJSIP's clock
            return False

    def _on_playout_events(self, events: list[PlayoutEvent]) -> None:
        for event in events:
            self._on_playout(event)
        self._said_something.set()

    # -- replies on their way (respond starts them, speak finishes synthesizing them) ------------

    def reply_started(self, reply_id: int) -> None:
        self._in_flight.add(reply_id)

    def reply_synthesized(self, reply_id: int) -> None:
        self._in_flight.discard(reply_id)
        self._said_something.set()

    @property
    def bot_speaking(self) -> bool:
        return self.playout.playing

    @property
    def caller_speaking(self) -> bool:
        return self.listen.in_turn

    @property
    def busy(self) -> bool:
        """Someone is talking or a reply is on its way: the line is not idle."""
        return self.bot_speaking or self.caller_speaking or bool(self._in_flight)

    @property
    def reply_pending(self) -> bool:
        """A turn still awaits its reply's first words, or a reply is still being synthesized."""
        unanswered = any(r.times.first_text is None and not self.is_written(r.index)
                         for r in self.turns.values())
        return unanswered or bool(self._in_flight)

    @property
    def settled(self) -> bool:
        """Nothing said, being said or to be written: a simulated caller may hang up."""
        return not self.bot_speaking and not self.caller_speaking \
            and len(self._emitted) == len(self.turns) and not self.tier.waiting

    async def asr_settled(self) -> None:
        await self.listen.asr_settled()

    async def wait_quiet(self) -> None:
        """Until no reply is playing or on its way. Woken by what ends a reply (its last
        sentence synthesized, played or cut); the timeout only re-checks, in case the playout
        buffer drained without a reply event (a pull on another thread just then)."""
        while self.bot_speaking or self._in_flight:
            self._said_something.clear()
            try:
                await asyncio.wait_for(self._said_something.wait(), 1.0)
            except TimeoutError:
                pass

    def _transfer_future(self) -> asyncio.Future[str]:
        if self._transfer_route is None:
            self._transfer_route = asyncio.get_running_loop().create_future()
        return self._transfer_route

    async def transfer_requested(self) -> str:
        """The queue the caller is to be handed to, once the reply that said so was heard (or
        cut short by the caller: the decision stands)."""
        return await self._transfer_future()

    def _transfer_now(self) -> None:
        route = self.transfer_after_reply[1]
        self.transfer_after_reply = None
        if not self._transfer_future().done():
            self._transfer_future().set_result(route)

    def on_caller_frame_processed(self) -> None:
        self.frames_processed += 1
        self._frame_event.set()

    async def wait_frames_processed(self, count: int) -> None:
        while self.frames_processed < count:
            self._frame_event.clear()
            await self._frame_event.wait()
    # -- models ------------------------------------------------------------------------------------

    async def transcribe(self, audio16, hint: str | None = None) -> Transcript:
        """``hint``: the words the caller is likely to say (ASR's prompt), or None."""
        fallback = self.settings.budget.asr_fallback
        transcriber = self.engines.fallback(fallback) if self._asr_downgraded and fallback \
            else None
        transcript = await self.tier.run(
            "asr", lambda: self.engines.transcribe(audio16, transcriber, hint=hint))
        if transcript is None:  # the inference tier stayed down: the caller was handed over
            return Transcript(text="", language="", no_speech_prob=0.0, avg_logprob=0.0,
                              audio_s=len(audio16) / 16000, elapsed_ms=0.0,
                              dropped="inference tier unavailable")
        return transcript

    async def synthesize(self, text: str) -> bytes:
        pcm = await self.tier.run("tts", lambda: self.engines.synthesize(text,
                                                                         self.transport_rate))
        return pcm or b""

    async def _synthesize_speculatively(self, text: str) -> bytes | None:
        """A clause that may never be played: an unavailable tier is not an outage to announce
        (the confirmed reply will meet it and say so)."""
        try:
            return await self.engines.synthesize(text, self.transport_rate)
        except InferenceUnavailable:
            return None

    def downgrade_asr(self) -> None:
        if not self._asr_downgraded:
            logger.warning(f"{self.call_id}: ASR over budget, switching to the fallback model")
            self._asr_downgraded = True
            self.note_ladder(LadderStep.SMALLER_ASR.value)

    def note_ladder(self, step: str) -> None:
        """A ladder step taken before the turn's record exists: the next record gets it."""
        self._pending_ladder.append(step)

    # -- turn records ------------------------------------------------------------------------------

    def add_turn(self, record: TurnRecord) -> None:
        record.ladder.extend(self._pending_ladder)
        self._pending_ladder = []
        self.turns[record.index] = record

    def turn(self, index: int) -> TurnRecord:
        return self.turns[abs(index)]

    def turn_done(self, index: int) -> None:
        self._emit(index)

    def is_written(self, index: int) -> bool:
        """The turn's record is final and was handed to ``on_turn``."""
        return index in self._emitted

    def _on_playout(self, event: PlayoutEvent) -> None:
        record = self.turns.get(abs(event.turn_index)) if event.turn_index else None
        if event.kind == PlayoutEventKind.FIRST_SAMPLE:
            if record is not None and record.times.first_sample is None:
                record.times.first_sample = event.at
        elif event.kind == PlayoutEventKind.SENTENCE_PLAYED:
            self._heard.setdefault(event.reply_id, []).append(event.sentence)
        elif event.kind == PlayoutEventKind.REPLY_PLAYED:
            if record is not None and event.turn_index > 0:
                self._emit(record.index)
            if self.hangup_after_reply == event.reply_id:
                self.hangup_requested.set()
            if self.transfer_after_reply and self.transfer_after_reply[0] == event.reply_id:
                self._transfer_now()

    def on_interrupted(self, interrupted: Interrupted | None, unheard: set[int]) -> None:
        """Barge-in: the reply playing was cut, and replies queued behind it were dropped."""
        self._in_flight.clear()
        self._said_something.set()
        for index in unheard:
            if index > 0 and index in self.turns:
                self.turns[index].reply_interrupted = True
                self._emit(index)
        if self.transfer_after_reply is not None:  # "please hold" talked over: still transfer
            self._transfer_now()
        if interrupted is None:
            return
        self.last_interrupted = interrupted
        record = self.turns.get(abs(interrupted.turn_index)) if interrupted.turn_index else None
        if record is not None:
            record.reply_interrupted = True
            record.reply_heard = " ".join(self._heard.get(interrupted.reply_id, []))
            self._emit(record.index)

    def _emit(self, index: int) -> None:
        if index in self._emitted or index not in self.turns:
            return
        record = self.turns[index]
        self._emitted.add(index)
        record.compute_stages(self.settings.budget)
        if self.on_turn is not None:
            self.on_turn(record)
