"""Cross-call ASR batching: turns from different calls that end together share one forward pass.

Utterances that arrive within ``asr.batch_window_ms`` of the oldest waiting one are encoded and
decoded as one CTranslate2 batch. Only utterances with the same encoder window (``window_frames``)
share a batch: padding a 10 s turn to a 15 s window changed 3 of 25 fixture transcripts (2 s and
4 s turns among them: '4 queen of clothes' became '4. Queen of Cloves'), while batches of one
window size gave the unbatched text and scores for all of them. So the window of a batch is its
longest utterance's, and it is every member's own.

Scheduling, in order of precedence:

- a batch is dispatched as soon as it is full (``asr.max_batch``);
- otherwise when the oldest member has waited ``batch_window_ms``;
- and never later than the earliest member deadline less the recent batch run time, so no
  utterance is held past its deadline (by default arrival + ``budget.asr_ms``) for company.

The oldest waiting utterance always leads the next batch (FIFO across calls; a call has one turn
in flight at a time), and utterances of other window sizes wait their turn rather than be padded.
Under load, turns that arrive while a batch runs form the next one. A batch of one goes through
``WhisperTranscriber.transcribe`` itself.

Our own scheduler rather than faster-whisper's ``BatchedInferencePipeline``: that batches the VAD
chunks of one recording in 30 s windows, not requests from different callers, and ignores our
window sizing. Ray Serve's ``@serve.batch`` batches across requests but has no per-request
deadline and would put a Ray runtime in every host's inference process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel

from voice.app.settings import AsrSettings
from voice.asr import Transcript, WhisperTranscriber, is_primed, max_length, window_frames
from voice.audio import ASR_SAMPLE_RATE

RUN_TIME_SMOOTHING = 0.3  # weight of the newest batch in the expected run time


class DispatchReason(StrEnum):
    FULL = "full"  # max_batch utterances of one window were waiting
    WINDOW = "window"  # the oldest had waited batch_window_ms
    DEADLINE = "deadline"  # waiting longer would have run an utterance past its deadline


@dataclass(frozen=True)
class BatchRecord:
    """One forward pass, kept for the bench and the tests."""

    size: int
    window_frames: int
    reason: DispatchReason
    waited_ms: float  # the oldest member, arrival to dispatch
    run_ms: float
    dispatched_at: float  # time.monotonic()
    earliest_deadline: float  # time.monotonic()
    reruns: int  # members decoded again alone (see _decode_batch)


@dataclass
class _Request:
    samples: np.ndarray
    n_frames: int
    arrival: float  # time.monotonic()
    deadline: float  # time.monotonic()
    started: float  # time.perf_counter(), for Transcript.elapsed_ms
    future: asyncio.Future[Transcript] = field(repr=False)
    hint: str | None = None  # ASR prompt; only turns with the same prompt share a pass


class BatchingTranscriber:
    """Shares one Whisper model between calls, batching turns that arrive together.

    Use it from one event loop; ``transcribe`` never blocks it (inference runs in
    ``asr.workers`` threads, one batch each). Close it with ``aclose``.
    """

    def __init__(self, model: WhisperModel, settings: AsrSettings, *, budget_ms: float) -> None:
        if settings.batch_window_ms >= budget_ms:
            raise ValueError(f"asr.batch_window_ms ({settings.batch_window_ms:g}) must be below "
                             f"the ASR budget ({budget_ms:g} ms)")
        self.single = WhisperTranscriber(model, settings)
        self.settings = settings
        self.max_batch = settings.max_batch or 16  # None is the tier's per-device choice
        self.budget_s = budget_ms / 1000
        self.window_s = settings.batch_window_ms / 1000
        self.batches: deque[BatchRecord] = deque(maxlen=10_000)
        self.batch_sizes: Counter[int] = Counter()
        self._pending: list[_Request] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.workers)
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="asr-batch")
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._expected_run_s = 0.0
        self._closed = False

    async def transcribe(self, samples16k: np.ndarray, *, deadline: float | None = None,
                         hint: str | None = None) -> Transcript:
        """Transcribe one voiced turn (int16 at 16 kHz), as ``WhisperTranscriber.transcribe``
        would, batched with other calls' turns. ``deadline`` (``time.monotonic()`` seconds,
        default now + the ASR budget) bounds how long it waits for others. ``elapsed_ms`` of the
        result counts from this call: queueing, batching and inference."""
        if self._closed:
            raise RuntimeError("the batching transcriber is closed")
        if samples16k.ndim != 1 or samples16k.dtype != np.int16 or not len(samples16k):
            raise ValueError("ASR input must be non-empty mono int16 samples at "
                             f"{ASR_SAMPLE_RATE} Hz")
        loop = asyncio.get_running_loop()
        if self._dispatcher is None:
            self._dispatcher = loop.create_task(self._dispatch_loop(), name="asr-batch-dispatch")
        now = time.monotonic()
        request = _Request(samples16k, window_frames(len(samples16k) / ASR_SAMPLE_RATE), now,
                           now + self.budget_s if deadline is None else deadline,
                           time.perf_counter(), loop.create_future(), hint)
        self._pending.append(request)
        self._wakeup.set()
        return await request.future

    async def aclose(self) -> None:
        """Stop dispatching; waiting turns get an error, running batches are abandoned."""
        self._closed = True
        tasks = [t for t in (self._dispatcher, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for request in self._pending:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the batching transcriber closed"))
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- scheduling (event loop) ---------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await self._slots.acquire()  # a free runner first: turns arriving meanwhile batch
            try:
                group, reason = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._execute(group, reason),
                                       name=f"asr-batch-{len(self.batches) + len(self._running)}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect(self) -> tuple[list[_Request], DispatchReason]:
        """Wait until the oldest turn's batch is due, then take it out of the queue."""
        while True:
            self._pending = [r for r in self._pending if not r.future.done()]  # hung up
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            head = self._pending[0]
            group = [r for r in self._pending
                     if r.n_frames == head.n_frames and r.hint == head.hint]
            group = group[: self.max_batch]
            if len(group) == self.max_batch:
                reason = DispatchReason.FULL
                break
            window_end = head.arrival + self.window_s
            latest = min(r.deadline for r in group) - self._expected_run_s
            due = min(window_end, latest)
            now = time.monotonic()
            if due <= now:
                reason = DispatchReason.DEADLINE if latest < window_end else DispatchReason.WINDOW
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), due - now)
        taken = {id(r) for r in group}
        self._pending = [r for r in self._pending if id(r) not in taken]
        return group, reason

    async def _execute(self, group: list[_Request], reason: DispatchReason) -> None:
        dispatched = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
            run_started = time.perf_counter()
            try:
                transcripts, reruns = await loop.run_in_executor(
                    self._pool, self._decode_batch, [r.samples for r in group], group[0].hint)
            except asyncio.CancelledError:  # aclose: nobody is left waiting
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(
                            RuntimeError("the batching transcriber closed"))
                raise
            except Exception as error:  # noqa: BLE001 - the model failed: every member learns why
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(error)
                return
            run_s = time.perf_counter() - run_started
            self._expected_run_s += RUN_TIME_SMOOTHING * (run_s - self._expected_run_s)
            self.batch_sizes[len(group)] += 1
            self.batches.append(BatchRecord(
                size=len(group), window_frames=group[0].n_frames, reason=reason,
                waited_ms=(dispatched - group[0].arrival) * 1000, run_ms=run_s * 1000,
                dispatched_at=dispatched, earliest_deadline=min(r.deadline for r in group),
                reruns=reruns))
            done = time.perf_counter()
            for request, transcript in zip(group, transcripts, strict=True):
                if not request.future.done():
                    request.future.set_result(
                        replace(transcript, elapsed_ms=(done - request.started) * 1000))
        finally:
            self._slots.release()

    # -- inference (worker thread) -------------------------------------------------------------

    def _decode_batch(self, batch: list[np.ndarray], hint: str | None = None
                      ) -> tuple[list[Transcript], int]:
        """Transcripts of same-window, same-hint turns from one encoder and one decoder pass.

        The decoder runs to the largest member's ``max_length``. Greedy decoding is causal, so a
        member that ended well within its own cap decoded exactly as alone; one that came near its
        own cap (a repetition loop, a very fast talker) is decoded again alone so that its cap,
        text and score match ``WhisperTranscriber`` exactly.
        """
        single = self.single
        if len(batch) == 1:
            return [single.transcribe(batch[0], ASR_SAMPLE_RATE, hint=hint)], 0
        started = time.perf_counter()
        prepared = [single.encoder_window(samples) for samples in batch]
        windows = np.stack([window for _, window in prepared])
        model = single.model.model
        encoded = model.encode(ctranslate2.StorageView.from_array(windows), to_cpu=False)
        languages = single.languages(encoded)
        prompts = [single.prompt(language, hint) for language in languages]
        caps = [max_length(len(p), audio_s) for p, (audio_s, _) in zip(prompts, prepared,
                                                                        strict=True)]
        results = model.generate(encoded, prompts, max_length=max(caps),
                                 **single.generate_options())
        no_speech = single.unprimed_no_speech(encoded, languages, [a for a, _ in prepared]) \
            if is_primed(hint) else [None] * len(batch)
        transcripts, reruns = [], 0
        for samples, (audio_s, _), language, cap, result, unprimed in zip(
                batch, prepared, languages, caps, results, no_speech, strict=True):
            # CTranslate2 stopped Whisper at max_length // 2 new tokens here (tiny.en, measured);
            # rerun with a margin rather than rely on that count.
            if cap < max(caps) and len(result.sequences_ids[0]) >= cap // 2 - 2:
                transcripts.append(single.transcribe(samples, ASR_SAMPLE_RATE, hint=hint))
                reruns += 1
            else:
                transcripts.append(single.transcript(result, language, audio_s, started,
                                                     unprimed))
        return transcripts, reruns
